"""Knowing when not to answer (assistant/scope.py), with the real embedder and the starter
index: the question's subject must be in the evidence it found."""

from __future__ import annotations

import pytest

from assistant.types import NO_EVIDENCE
from tests.test_answer import SEED_QUESTION, check_invariants


def declined(answer) -> bool:
    return (answer.abstained and not answer.references and not answer.statements()
            and answer.guidelines.notice == NO_EVIDENCE == answer.research.notice)


@pytest.mark.parametrize("question, named", [
    # Another species: the corpus is about people, whatever the drug and disease.
    ("What dose of cyclophosphamide is used for a dog with lymphoma?", "dog"),
    ("CAR T cells for a cat with B-cell lymphoma?", "cat"),
    # Something the corpus never mentions, asked with words it knows well.
    ("Does zongertinib improve response in relapsed B-cell acute lymphoblastic leukaemia?",
     "zongertinib"),
    ("Is tisagenlecleucel covered by UnitedHealthcare for adults?", "UnitedHealthcare"),
])
def test_out_of_scope_question_is_declined_and_says_what_is_missing(starter_assistant,
                                                                     question, named):
    answer = starter_assistant.ask(question)
    check_invariants(answer)
    assert declined(answer), answer.to_text()
    assert any(named in note for note in answer.notes), answer.notes
    assert NO_EVIDENCE in answer.to_text() and named in answer.to_text()


def test_administrative_task_is_declined(starter_assistant):
    answer = starter_assistant.ask("Which CPT code do I bill for a CAR T-cell infusion?")
    check_invariants(answer)
    assert declined(answer)
    assert any("billing" in note for note in answer.notes)


@pytest.mark.parametrize("question", [
    SEED_QUESTION,
    "How is cytokine release syndrome managed?",
    "Which CAR T-cell products are approved for multiple myeloma?",
    "CAR T for relapsed B-ALL in kids?",  # shorthand: "kids" is written "children" there
    "How is CRS in Mr Smith managed?",  # a named patient is not the subject
])
def test_in_scope_questions_are_answered(starter_assistant, question):
    answer = starter_assistant.ask(question)
    check_invariants(answer)
    assert not answer.abstained and answer.references, answer.notes


def test_a_cat_scan_is_not_a_cat(starter_assistant):
    answer = starter_assistant.ask("Is a CAT scan needed before CAR T-cell infusion?")
    assert not any("people" in note for note in answer.notes)


def test_the_judge_weighs_rare_words_and_names_the_missing_ones(starter_assistant):
    """The judge on its own: the evidence of a real retrieval, its words looked for."""
    judge = starter_assistant.scope
    query, _ = starter_assistant.search_query("Tocilizumab for cytokine release syndrome?", [])
    _, found = starter_assistant.retriever.retrieve(query)
    scope = judge.judge(query.text, found, starter_assistant.index.documents)
    assert scope.in_scope and scope.reason is None and scope.coverage > 0.9
    held = {word: held for word, _, held in scope.terms}
    assert held["Tocilizumab"] and held["cytokine"]
    # The same evidence for a question that adds a word the corpus never uses.
    other = judge.judge("Tocilizumab or frobnicillin for cytokine release syndrome?", found,
                        starter_assistant.index.documents)
    assert not other.in_scope and other.reason == "unknown"
    assert other.missing[0] == "frobnicillin"
    assert other.note() == "The indexed evidence does not mention frobnicillin."
    # No evidence at all.
    none = judge.judge("Tocilizumab?", {"guideline": [], "research": []},
                       starter_assistant.index.documents)
    assert not none.in_scope and none.reason == "no evidence"


def test_a_framing_verb_is_not_the_subject_and_a_negation_is_no_new_name(starter_assistant):
    judge = starter_assistant.scope
    # "happen" is rare in a corpus of abstracts, but the subject is Merkel cell carcinoma.
    words = [typed for typed, _, _ in judge.judge(
        "Merkel cell carcinoma: when do most recurrences happen?", {}, {}).terms]
    assert "Merkel" in words and "happen" not in words
    # "afebrile" is "febrile" negated: not a name the corpus lacks.
    assert judge.share.get(judge.stem("febrile")[0], 0) > 0
    assert not judge.never_used("afebrile", 0.0) and not judge.never_used("nonfebrile", 0.0)
    assert judge.never_used("frobnicillin", 0.0) and judge.never_used("Aetnacare", 0.0)
