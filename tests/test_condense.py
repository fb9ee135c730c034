"""Reading the question: shorthand, vignettes and follow-ups (condense.py), on their own
and through the assistant over the starter index (real embedder and FAISS index)."""

from __future__ import annotations

import pytest

from assistant.assistant import as_turns
from assistant.condense import condense, conversation_topic, spell_shorthand
from assistant.types import Turn
from tests.test_answer import check_invariants


def test_clinical_shorthand_is_written_out():
    assert spell_shorthand("1L tx for HCL?") == "first-line treatment for HCL?"
    assert spell_shorthand("newly dx Merkel cell ca, no mets") == (
        "newly diagnosed Merkel cell cancer, no metastases")
    # Only whole words: "CA-125", "Tx" inside a word and "pts" in "ptsd" are left alone.
    assert spell_shorthand("CA-125 in ptsd trials") == "CA-125 in ptsd trials"


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


def test_vignette_is_searched_with_its_shorthand_written_out(starter_assistant):
    vignette = starter_assistant.ask(
        "9yo boy, B-ALL, second relapse, WBC 12, Hb 9.1, plt 40. Is tisagenlecleucel an "
        "option? Pt has hx of CNS relapse.")
    plain = starter_assistant.ask(
        "Is tisagenlecleucel an option for a child with B-ALL in second relapse?")
    for answer in (vignette, plain):
        check_invariants(answer)
        assert not answer.abstained
    assert "patient has history of CNS" in vignette.standalone_query
    # Both forms find tisagenlecleucel evidence.
    for answer in (vignette, plain):
        assert any("tisagenlecleucel" in p.text.lower()
                   for r in answer.references for p in r.passages)


def test_follow_up_leans_towards_what_the_previous_answer_cited(starter_assistant):
    first = starter_assistant.ask("What is the role of CAR T cells in B-cell acute "
                                  "lymphoblastic leukaemia?")
    cited = {r.doc_id for r in first.references}
    query, _ = starter_assistant.search_query("And the toxicities?", as_turns([first]))
    assert query.cited_docs == cited and query.focus
    retriever = starter_assistant.retriever
    found = retriever.candidates(query, depth=40)
    with_prior = retriever.fuse(found, 8)
    without = retriever.fuse(found, 8, starter_assistant.settings.with_overrides(cited_prior=0.0))

    def share_cited(hits):
        kept = [h for hs in hits.values() for h in hs]
        return sum(h.passage.doc_id in cited for h in kept) / len(kept)

    # A prior, not a cage: more of the cited documents, not only them.
    assert share_cited(with_prior) >= share_cited(without)
    assert share_cited(with_prior) < 1.0


def test_a_vignettes_subject_is_its_question_and_its_disease_not_its_opening():
    vignette = "35F BRCA2 carrier, no family history of early ovarian cancer. When should she have RRSO?"
    first = Turn(question=vignette, standalone_query=vignette)
    # "it" is what the case's question is about; "her", the case's patient.
    searched = condense("Does it also cut her breast ca risk?", [first])
    assert searched.text.startswith("cut breast cancer risk — ")
    assert "RRSO" in searched.text and "BRCA2" in searched.text
    assert "35F" not in searched.text and "When" not in searched.text
    merkel = ("58F, newly diagnosed Merkel cell cancer of the cheek, 1.5 cm, clinically N0. "
              "Is SLNB indicated?")
    topic = conversation_topic([Turn(question=merkel, standalone_query=merkel)])
    assert "Merkel" in topic and not {"58F", "1.5", "cm", "newly"} & set(topic.split())
    # A laboratory value and its name are case details, not the subject.
    myeloma = "61M, new multiple myeloma, creatinine 2.8, fit. Transplant first line?"
    topic = conversation_topic([Turn(question=myeloma, standalone_query=myeloma)])
    assert topic.startswith("multiple myeloma") and "Transplant first line" in topic
    assert "creatinine" not in topic and "61M" not in topic


def test_contractions_leave_no_stray_letters():
    first = Turn(question="1L tx for ED-SCLC?", standalone_query="first-line treatment for ED-SCLC?")
    searched = condense("PCI still indicated if he's in CR?", [first])
    assert " s " not in f" {searched.text} " and "PCI" in searched.text


def test_whom_the_question_is_about():
    from assistant.condense import conversation_population, population_of

    assert population_of("58F, Merkel cell cancer, N0. SLNB?") == "adult"
    assert population_of("9yo boy, B-ALL, second relapse") == "child"
    assert population_of("18-mo-old, simple febrile seizure") == "child"
    assert population_of("Would you give it to a 14-year-old?") == "child"
    assert population_of("BRCA2 carrier, CD4 count 250, stage T2N0, HR 108") is None
    first = Turn(question="61M, CML in chronic phase, MR4.5 for 5 years.")
    assert conversation_population("Wants to stop TKI. Reasonable?", [first]) == "adult"
    assert conversation_population("What about in children?", [first]) == "child"


def test_an_adults_question_leans_away_from_documents_written_for_children(starter_assistant):
    query, _ = starter_assistant.search_query(
        "34M with B-ALL relapsing after chemotherapy: is CAR T-cell therapy an option?", [])
    assert query.population == "adult"
    retriever = starter_assistant.retriever
    found = retriever.candidates(query, depth=40)
    with_prior = retriever.fuse(found, 8)
    without = retriever.fuse(found, 8, starter_assistant.settings.with_overrides(
        population_prior=0.0))

    def children_share(hits):
        kept = [h for hs in hits.values() for h in hs]
        return sum(retriever.written_for(h.passage.doc_id) == "child" for h in kept) / len(kept)

    assert children_share(without) > 0  # the starter corpus has childhood ALL documents
    assert children_share(with_prior) < children_share(without)


def test_a_treatment_question_leans_towards_treatment_sections(starter_assistant):
    from assistant.sentence_scoring import treatment_section

    query, _ = starter_assistant.search_query("How is cytokine release syndrome managed?", [])
    assert query.asked == "treatment"
    retriever, settings = starter_assistant.retriever, starter_assistant.settings
    found = retriever.candidates(query, depth=40)
    with_prior = {h.passage.id: h for hs in retriever.fuse(found, 40).values() for h in hs}
    without = {h.passage.id: h for hs in retriever.fuse(found, 40, settings.with_overrides(
        asked_section_prior=0.0)).values() for h in hs}
    raised = {pid for pid in with_prior.keys() & without.keys()
              if with_prior[pid].fusion - without[pid].fusion > 1e-9}
    assert raised  # the starter corpus has sections on managing toxicities
    assert all(treatment_section(with_prior[pid].passage.section) for pid in raised)
    assert all(abs(with_prior[pid].fusion - without[pid].fusion
                   - settings.asked_section_prior) < 1e-6 for pid in raised)
