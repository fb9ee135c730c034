"""Abbreviation senses read from the question's context, with the real embedder.

The ambiguous abbreviations are ones the benchmark corpus (NCI PDQ summaries plus PubMed
abstracts) defines in more than one sense (`Abbreviations.mine` over indexes/benchmark:
CRS, MS, PE, TBI, SCT, HR, RT, PR, HD, ...); the passages below are written for the test,
two per sense, each defining the abbreviation the way the literature does.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from assistant.abbreviations import Abbreviations, expand, mine

SENSE_PASSAGES = {
    ("CRS", "cytokine release syndrome"): [
        "After CAR T-cell infusion, cytokine release syndrome (CRS) presents with fever and "
        "hypotension; tocilizumab is given for grade 2 or higher.",
        "Cytokine release syndrome (CRS) after bispecific antibodies is graded by the ASTCT "
        "consensus and treated with tocilizumab and corticosteroids.",
    ],
    ("CRS", "chronic rhinosinusitis"): [
        "Patients with chronic rhinosinusitis (CRS) and nasal polyps had recurrence after "
        "endoscopic sinus surgery despite topical steroids.",
        "Olfactory loss in chronic rhinosinusitis (CRS) improved after sinus surgery and "
        "nasal irrigation.",
    ],
    ("MS", "multiple sclerosis"): [
        "Relapses of multiple sclerosis (MS) are treated with high-dose methylprednisolone; "
        "disease-modifying therapy reduces new demyelinating lesions.",
        "In multiple sclerosis (MS), natalizumab lowered the annual relapse rate and MRI "
        "lesion activity.",
    ],
    ("MS", "mass spectrometry"): [
        "Serum proteins were identified by liquid chromatography and mass spectrometry (MS) "
        "after tryptic digestion.",
        "Metabolites were quantified by mass spectrometry (MS) with isotope-labelled "
        "internal standards.",
    ],
    ("PE", "pulmonary embolism"): [
        "Pulmonary embolism (PE) in patients with cancer is treated with low-molecular-weight "
        "heparin or a direct oral anticoagulant.",
        "CT pulmonary angiography confirmed pulmonary embolism (PE) in patients with dyspnoea "
        "and deep vein thrombosis.",
    ],
    ("PE", "preeclampsia"): [
        "Women with preeclampsia (PE) had hypertension and proteinuria after 20 weeks of "
        "gestation; aspirin lowered the risk in the next pregnancy.",
        "Placental growth factor predicted preeclampsia (PE) in the second trimester of "
        "pregnancy.",
    ],
    ("TBI", "total body irradiation"): [
        "Conditioning with total body irradiation (TBI) and cyclophosphamide before "
        "allogeneic transplant for acute lymphoblastic leukemia improved survival.",
        "Total body irradiation (TBI) in myeloablative conditioning causes late effects such "
        "as cataracts and growth failure.",
    ],
    ("TBI", "traumatic brain injury"): [
        "Helmet use reduced traumatic brain injury (TBI) in cyclists after road accidents.",
        "Young adults with traumatic brain injury (TBI) after a fall had cognitive deficits "
        "at one year; concussion clinics followed them.",
    ],
    ("SCT", "stem cell transplant"): [
        "High-dose melphalan followed by autologous stem cell transplant (SCT) remains "
        "standard for fit patients with multiple myeloma.",
        "Allogeneic stem cell transplant (SCT) in first remission of acute myeloid leukemia "
        "lowers relapse.",
    ],
    ("SCT", "scratch collapse test"): [
        "The scratch collapse test (SCT) for carpal tunnel syndrome was compared with nerve "
        "conduction studies of the median nerve.",
        "Sensitivity of the scratch collapse test (SCT) for cubital tunnel syndrome at the "
        "elbow was low.",
    ],
    ("ALL", "acute lymphoblastic leukemia"): [
        "Children with acute lymphoblastic leukemia (ALL) receive induction with vincristine, "
        "a corticosteroid and asparaginase.",
        "Minimal residual disease after induction predicts relapse in acute lymphoblastic "
        "leukemia (ALL).",
    ],
}

# (question, abbreviation, the sense its context fits or None: not spelled out)
READINGS = [
    ("How is CRS managed after CAR T cells?", "CRS", "cytokine release syndrome"),
    ("Tocilizumab dose for grade 3 CRS with bispecifics?", "CRS", "cytokine release syndrome"),
    ("Recurrence of CRS with nasal polyps after sinus surgery?", "CRS", "chronic rhinosinusitis"),
    ("Best treatment for an MS relapse with new demyelinating lesions?", "MS",
     "multiple sclerosis"),
    ("Which MS method quantifies serum metabolites?", "MS", "mass spectrometry"),
    ("Anticoagulant for PE in a patient with cancer?", "PE", "pulmonary embolism"),
    ("Does aspirin prevent PE in the next pregnancy?", "PE", "preeclampsia"),
    ("TBI conditioning before allogeneic transplant for ALL?", "TBI", "total body irradiation"),
    ("Does helmet use prevent TBI in cyclists?", "TBI", "traumatic brain injury"),
    ("Autologous SCT for myeloma in fit patients?", "SCT", "stem cell transplant"),
    ("SCT accuracy for carpal tunnel syndrome?", "SCT", "scratch collapse test"),
    ("Induction for ALL in children?", "ALL", "acute lymphoblastic leukemia"),
]


@pytest.fixture(scope="module")
def embedder(starter_assistant):
    return starter_assistant.embedder


@pytest.fixture(scope="module")
def senses(embedder):
    passages = [SimpleNamespace(text=text, doc_id=f"{short}-{long}-{n}")
                for (short, long), texts in SENSE_PASSAGES.items()
                for n, text in enumerate(texts)]
    vectors = embedder.embed([p.text for p in passages])
    return Abbreviations.mine(passages, vectors)


def test_every_sense_is_mined_with_where_it_is_defined(senses):
    for (short, long), texts in SENSE_PASSAGES.items():
        sense = next(s for s in senses.senses[short] if s.long == long)
        assert len(sense.rows) == len(texts) and len(sense.docs) == len(texts)


@pytest.mark.parametrize("question, short, meant", READINGS)
def test_the_sense_that_fits_the_context_is_spelled_out(senses, embedder, question, short,
                                                       meant):
    reading = senses.read(question, embedder.embed)
    assert reading.senses.get(short) == meant, (question, reading)
    assert reading.spell_out(question).count(f"{short} ({meant})") == 1
    # The documents of the other senses are not evidence for this question.
    for (other_short, long), texts in SENSE_PASSAGES.items():
        docs = {f"{other_short}-{long}-{n}" for n in range(len(texts))}
        if other_short == short and long != meant:
            assert docs <= reading.other_sense_docs
        elif other_short == short:
            assert not docs & reading.other_sense_docs


def test_no_context_that_fits_leaves_the_abbreviation_as_typed(senses, embedder):
    # "MS" with nothing about either sense: neither is clearly meant (the embedder's own
    # favourite reading of the bare letters is not context).
    reading = senses.read("MS: what is new this year?", embedder.embed)
    assert "MS" not in reading.senses and "MS" in reading.unclear
    assert reading.spell_out("MS: what is new this year?") == "MS: what is new this year?"
    assert not reading.other_sense_docs
    # "PE in women" could be either: pregnancy or embolism.
    reading = senses.read("PE in women?", embedder.embed)
    assert reading.senses == {} and reading.unclear == ("PE",)


def test_a_sense_already_written_out_is_kept(senses, embedder):
    question = "Is PE (pulmonary embolism) more common during chemotherapy?"
    assert senses.read(question, embedder.embed).senses["PE"] == "pulmonary embolism"


def test_long_forms_that_do_not_account_for_the_letters_are_rejected():
    found = mine([
        "Visits by antenatal clinic attenders (ANC) rose.",  # no N or C initial
        "Fluids were given IM or intravenously (IV).",  # IV: intravenously, not "im or ..."
        "Immune effector cell–associated neurotoxicity syndrome (ICANS) follows CRS.",
        "Relapse in hairy cell leukemia (HCL) was treated again.",
    ])
    assert found == {"IV": "intravenously",
                     "ICANS": "immune effector cell associated neurotoxicity syndrome",
                     "HCL": "hairy cell leukemia"}


BENCHMARK = Path(os.environ.get("ASSISTANT_BENCHMARK_INDEX", "indexes/benchmark"))


@pytest.mark.skipif(not (BENCHMARK / "CURRENT").exists(),
                    reason="the benchmark index is built by scripts/build_benchmark_corpus.py")
def test_benchmark_corpus_abbreviations_take_the_sense_of_their_context():
    from assistant import Assistant

    assistant = Assistant.open(BENCHMARK)
    # (question, abbreviation, sense its context fits, a sense it must never take)
    cases = [
        ("How is CRS managed after CAR T cells?", "CRS", "cytokine release syndrome",
         "chronic rhinosinusitis"),
        ("CRS after sinus surgery: recurrence rates?", "CRS", "chronic rhinosinusitis",
         "cytokine release syndrome"),
        ("TBI conditioning before allogeneic transplant for ALL", "TBI",
         "total body irradiation", "traumatic brain injury"),
        ("Outcomes after TBI in young adults with helmet use", "TBI", "traumatic brain injury",
         "total body irradiation"),
        ("SCT for myeloma", "SCT", "stem cell transplant", "scratch collapse test"),
        ("Is RT indicated after lumpectomy?", "RT", None, "reverse transcriptase"),
        ("HD in children: ABVD?", "HD", None, "huntington s disease"),
        ("PCI in limited-stage small cell lung cancer in complete response?", "PCI",
         None, "percutaneous coronary intervention"),
        # The corpus's only CPT is cognitive processing therapy; a billing code is not it.
        ("CPT code for port placement", "CPT", None, "cognitive processing therapy"),
    ]
    for question, short, meant, never in cases:
        reading = assistant.abbreviations.read(question, assistant.embedder.embed)
        taken = reading.senses.get(short)
        assert taken != never, (question, reading)
        if meant:
            assert taken == meant, (question, reading)


def test_a_numbered_stage_or_grade_is_not_an_abbreviation(senses, embedder):
    """"IV" is intravenous in the corpus; "stage IV" and "grade III" number things."""
    words = {"IV": "intravenous", "CRS": "cytokine release syndrome"}
    assert expand("stage IV classic Hodgkin; IV iron; grade III CRS; phase IIIb", words) == (
        "stage IV classic Hodgkin; IV (intravenous) iron; grade III CRS (cytokine release "
        "syndrome); phase IIIb")


def test_a_common_abbreviation_the_corpus_never_defines_is_spelled_out_for_bm25_too(
        senses, embedder):
    """The PDQ summaries write "hairy cell leukemia" and never define "HCL"."""
    reading = senses.read("1L treatment for HCL?", embedder.embed)
    assert reading.senses["HCL"] == "hairy cell leukemia"
    assert reading.written == ("hairy cell leukemia",)
    # A sense the corpus defines wins over the common one.
    assert senses.read("Anticoagulant for PE in a patient with cancer?",
                       embedder.embed).written == ()


def test_hcl_is_searched_as_hairy_cell_leukemia_by_both_retrievers(starter_assistant):
    query, _ = starter_assistant.search_query("first-line treatment for HCL?", [])
    assert "HCL (hairy cell leukemia)" in query.text
    assert "hairy cell leukemia" in query.lexical
