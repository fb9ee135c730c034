"""Reading the question: shorthand, vignettes and follow-ups (condense.py), on their own
and through the assistant over the starter index (real embedder and FAISS index)."""

from __future__ import annotations

import pytest

from assistant.condense import (
    condense,
    conversation_topic,
    reduce_vignette,
    spell_shorthand,
)
from assistant.types import Turn
from tests.test_answer import check_invariants


def test_clinical_shorthand_is_written_out():
    assert spell_shorthand("1L tx for HCL?") == "first-line treatment for HCL?"
    assert spell_shorthand("newly dx Merkel cell ca, no mets") == (
        "newly diagnosed Merkel cell cancer, no metastases")
    # Only whole words: "CA-125", "Tx" inside a word and "pts" in "ptsd" are left alone.
    assert spell_shorthand("CA-125 in ptsd trials") == "CA-125 in ptsd trials"


@pytest.mark.parametrize("vignette, kept, dropped", [
    ("61M, new multiple myeloma, creatinine 2.8, fit and working. Is autologous transplant "
     "still first line, and which induction?",
     ["Is autologous transplant still first line, and which induction?", "multiple myeloma"],
     ["61M", "creatinine", "2.8"]),
    ("45M, new APL, WBC 3 x10^9/L. Induction?", ["Induction?", "APL"], ["WBC", "45M", "10^9"]),
    ("67F, ECOG 1, cr 1.9, newly dx DLBCL stage III, IPI 3. R-CHOP x6 or something else?",
     ["R-CHOP x6 or something else?", "DLBCL stage III"], ["ECOG", "IPI", "1.9", "67F"]),
    ("18-mo-old, stage I favorable-histology Wilms, tumor 400 g, after nephrectomy. "
     "Does he need chemo?", ["child", "Wilms", "nephrectomy", "chemotherapy"], ["400", "18-mo"]),
])
def test_a_vignette_is_searched_by_its_question_and_clinical_entities(vignette, kept, dropped):
    searched = condense(vignette, []).text
    for words in kept:
        assert words in searched, searched
    for words in dropped:
        assert words not in searched, searched


def test_a_plain_question_is_not_a_vignette():
    assert reduce_vignette("What is the role of CAR T cells in solid tumours?") is None
    # Two sentences, but no case details to drop.
    assert reduce_vignette("CAR T cells work in leukaemia. Do they work in sarcoma?") is None


def test_follow_up_topics():
    first = Turn(question="1L tx for HCL?", standalone_query="first-line treatment for HCL?")
    # An ellipsis keeps the previous question's disease ...
    assert condense("second line?", [first]).text == "second line — first-line HCL"
    # ... a pronoun stands for its head.
    seed = Turn(question="What is the role of CAR T cells in solid tumours?",
                standalone_query="What is the role of CAR (chimeric antigen receptor) T cells "
                                 "in solid tumours?")
    assert conversation_topic([seed], "What about its toxicities?") == "CAR T cells"
    # A third turn keeps the conversation's subject from the first.
    second = Turn(question="second line?", standalone_query="second line — first-line HCL")
    searched = condense("what if she is pregnant?", [first, second])
    assert searched.text.startswith("pregnant — ") and "HCL" in searched.text
    assert searched.focus == "pregnant"


def test_follow_up_without_evidence_of_its_own_takes_the_conversation(starter_assistant):
    first = starter_assistant.ask("What is the role of CAR T cells in B-cell acute "
                                  "lymphoblastic leukaemia?")
    # Three words of its own, no pronoun, but they find nothing by themselves.
    follow = starter_assistant.ask("Which toxicities should I watch for?", history=[first])
    check_invariants(follow)
    assert "CAR" in follow.standalone_query and "toxicities" in follow.standalone_query


def test_vignette_and_its_plain_rewrite_find_the_same_evidence(starter_assistant):
    vignette = starter_assistant.ask(
        "9yo boy, B-ALL, second relapse, WBC 12, Hb 9.1, plt 40. Is tisagenlecleucel an option?")
    plain = starter_assistant.ask(
        "Is tisagenlecleucel an option for a child with B-ALL in second relapse?")
    for answer in (vignette, plain):
        check_invariants(answer)
        assert not answer.abstained
    assert "WBC" not in vignette.standalone_query and "9.1" not in vignette.standalone_query
    assert "child" in vignette.standalone_query
    assert {r.doc_id for r in plain.references} <= {r.doc_id for r in vignette.references}
