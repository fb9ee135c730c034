"""Where sentences begin and end in passages cut out of real documents, and what is fit
to quote (assistant/sentences.py)."""

from __future__ import annotations

import pytest

from assistant.sentences import passage_sentences, problems, quotable, split_sentences
from tests.conftest import SHARED_DATA


def test_list_items_are_rejoined_with_their_lead_in():
    text = ("Hairy cell leukemia usually presents with:\n\n- Splenomegaly.\n- Varying degrees\n"
            "of leukopenia (occasionally leukocytosis).\n- Pancytopenia.\n\n"
            "Lymphadenopathy is absent, except with multiply recurrent progressive disease.")
    assert split_sentences(text) == [
        "Hairy cell leukemia usually presents with: splenomegaly; varying degrees of "
        "leukopenia (occasionally leukocytosis); and pancytopenia.",
        "Lymphadenopathy is absent, except with multiply recurrent progressive disease."]


def test_long_list_items_stand_alone_and_markers_go():
    text = ("Two trials compared the regimens:\n"
            "- The first trial randomly assigned 400 patients with stage III disease to either "
            "arm and found no difference in overall survival at 5 years of follow-up.\n"
            "- A second trial found a higher response rate with the combination.")
    sentences = split_sentences(text)
    assert sentences[1].startswith("The first trial") and sentences[2].startswith("A second")
    assert all(not s.startswith("-") for s in sentences)


def test_source_markers_are_removed_and_do_not_hide_a_boundary():
    text = ("Both triterpenoids and polysaccharides cause cell growth arrest.[21-30] Studies of "
            "the pathway were small.[Level of evidence B1] The effect was modest in people.")
    assert split_sentences(text) == [
        "Both triterpenoids and polysaccharides cause cell growth arrest.",
        "Studies of the pathway were small.", "The effect was modest in people."]


def test_abstract_section_labels_are_not_quoted():
    assert split_sentences("SIONS: Postoperative factor XIa inhibition was effective. "
                           "RESULTS: Bleeding was rare in 300 patients.") == [
        "Postoperative factor XIa inhibition was effective.", "Bleeding was rare in 300 patients."]


def test_a_passage_cut_inside_a_sentence_loses_the_fragment_at_each_end():
    before = ("Standard treatment for stage I disease is surgery. For patients who cannot have "
              "surgery, the cur")
    text = ("rent standard treatment is radiation therapy. Response rates were 80% in one "
            "series of 40 patients. Survival at 5 years was 19.9% vs.")
    after = "Survival at 5 years was 19.9% vs. 12.4% with observation alone."
    assert passage_sentences(text, before, after) == [
        "Response rates were 80% in one series of 40 patients."]
    # Without neighbours (the first passage of its section) the first sentence is whole.
    assert passage_sentences("Response rates were 80% in one series of 40 patients.") == [
        "Response rates were 80% in one series of 40 patients."]


def test_overlap_that_starts_after_an_abbreviation_is_not_a_sentence_start():
    before = "The complete response rate was higher with the combination (83% vs. 97%"
    text = "97%; P = .238). Toxicity was similar in both arms of the trial."
    assert passage_sentences(text, before) == ["Toxicity was similar in both arms of the trial."]


@pytest.mark.parametrize("sentence, problem", [
    ("rent standard treatment is radiation therapy for most patients.", "starts inside"),
    # A BioASQ snippet that itself starts inside a word.
    ("trophies, resulting in early loss of ambulation between the ages of 7 and 13.",
     "starts inside"),
    ("The trimester of the pregnancy.", "words"),
    ("- In general, surgery is the first treatment for these patients.", "list marker"),
    ("<br><b>METHODS</b> Patients were randomly assigned to two arms.", "HTML"),
    ("For more information, see the Treatment of Stage I Disease section.", "cross-reference"),
    ("The overall response rate in the larger trial was 19.9% vs.", "ends mid-phrase"),
    ("Survival was longer with the combination (hazard ratio 0.6.", "unbalanced"),
    ("These data are not available in these sources for adult patients.", "about the document"),
    ("Figure 1 depicts bilateral renal tumors in a patient with the syndrome.",
     "about the document"),
])
def test_problems_name_what_is_wrong(sentence, problem):
    assert any(problem in p for p in problems(sentence)), problems(sentence)
    assert not quotable(sentence)


def test_a_plain_clinical_sentence_is_quotable():
    assert quotable("Cladribine produces complete remission in most patients with hairy cell leukemia.")
    assert quotable("mTOR inhibitors were active in 30% of patients (n = 40).")


PDQ = SHARED_DATA / "nci_pdq_hp" / "md"


@pytest.mark.skipif(not PDQ.exists(), reason=f"{PDQ} is absent")
def test_every_sentence_a_real_summary_yields_is_whole(starter_assistant):
    # Chunked as ingest chunks it, neighbours as the index gives them.
    from assistant.chunking import Chunker
    from assistant.readers import load_paths

    (doc,), errors = load_paths([PDQ / "types-leukemia-hp-hairy-cell-treatment-pdq.md"])
    settings = starter_assistant.settings
    chunker = Chunker(starter_assistant.embedder.count_tokens, settings.chunk_tokens,
                      settings.chunk_overlap)
    passages = chunker.chunk(doc)
    by_id = {p.id: p for p in passages}
    quoted = []
    for p in passages:
        n = int(p.id.rpartition("#")[2])
        near = [by_id.get(f"{doc.id}#{n + d}") for d in (-1, 1)]
        before, after = (q.text if q and q.section == p.section else None for q in near)
        for s in passage_sentences(p.text, before, after):
            if quotable(s):
                quoted.append(s)
                flat = " ".join(p.text.split())
                at = flat.find(s[:40])
                assert at <= 0 or not flat[at - 1].isalnum(), s
    assert len(quoted) > 50
    assert all(s[0].isupper() or s[0].isdigit() or s[0] in "\"'(" for s in quoted)


def test_sentences_about_the_study_only_are_not_answers():
    from assistant.sentence_scoring import about_the_study_only

    question = "options for recurrent thymic carcinoma?"
    assert about_the_study_only("A multi-institutional retrospective outcome analysis of 186 "
                                "patients with thymic carcinoma has been reported.", question)
    assert about_the_study_only("We aimed to evaluate the effect of drug X on survival in "
                                "elderly patients.", "Does X improve survival?")
    assert not about_the_study_only("Survival improved significantly with X in 40 patients.",
                                    "Does X improve survival?")
    # Unless the question asks about the studies themselves.
    assert not about_the_study_only("We aimed to evaluate the effect of drug X on survival in "
                                    "elderly patients.", "How was the trial of X designed?")
