"""Loaders on the project's formats and on the real public files in ../shared/data."""

from __future__ import annotations

import json

import pytest

from assistant.chunking import Chunker, embedded_text
from assistant.readers import load_paths
from assistant.types import untitled_name

from .conftest import CORPUS, SHARED_DATA

PDQ_CAR_T = SHARED_DATA / "nci_pdq_hp/md/types-childhood-cancers-hp-stem-cell-transplant-car-t-cell-therapy.md"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                  reason="../shared/data is absent on this machine")


def test_starter_corpus_loads_cleanly():
    docs, errors = load_paths([CORPUS])
    assert errors == []
    assert len(docs) >= 40
    kinds = {d.kind for d in docs}
    assert kinds == {"guideline", "research"}
    for doc in docs:
        assert doc.title and doc.source and (doc.url or doc.pmid or doc.doi), doc.id
        assert all(text for _, text in doc.sections)


@needs_shared
def test_pdq_summary_is_cleaned():
    [doc], errors = load_paths([PDQ_CAR_T])
    assert errors == []
    assert doc.kind == "guideline" and doc.year == 2024
    assert "Health Professional Version" in doc.title
    assert doc.url.startswith("https://www.cancer.gov/")
    text = doc.text
    for residue in ("[[", "](http", "#cit/", "Permission to Use", "PUBMED Abstract",
                    "Latest Updates to This Summary"):
        assert residue not in text
    sections = [title for title, _ in doc.sections]
    assert any("Cytokine release syndrome" in s for s in sections)
    assert not any("References" in s for s in sections)
    assert "tocilizumab" in text


@needs_shared
def test_pubmedqa_and_bioasq_become_research_documents(tmp_path):
    pqa = json.loads((SHARED_DATA / "pubmedqa/ori_pqal.json").read_text())
    sample = dict(list(pqa.items())[:5])
    (tmp_path / "pqa.json").write_text(json.dumps(sample))
    docs, errors = load_paths([tmp_path / "pqa.json"])
    assert errors == [] and len(docs) == 5
    pmid, item = next(iter(sample.items()))
    doc = next(d for d in docs if d.pmid == pmid)
    assert doc.id == f"pmid:{pmid}" and doc.kind == "research"
    assert item["CONTEXTS"][0] in doc.text
    assert item["LONG_ANSWER"] not in doc.text  # the gold answer stays out of the corpus

    batch = next((SHARED_DATA / "bioasq_taskb_golden_mirage").glob("Task11B*/11B1_golden.json"))
    docs, errors = load_paths([batch])
    assert errors == [] and docs
    questions = json.loads(batch.read_text())["questions"]
    pmids = {s["document"].rsplit("/", 1)[-1] for q in questions for s in q["snippets"]}
    assert {d.pmid for d in docs} == pmids
    assert all(d.kind == "research" and d.id.startswith("pmid:") for d in docs)


@needs_shared
def test_a_document_without_title_is_embedded_without_a_header(starter_assistant):
    """A BioASQ document with no title snippet is listed as "PubMed article <PMID>", but
    that name says nothing about its passages, so they are embedded as their text alone;
    a titled document keeps its title and section in front of every passage."""
    batch = next((SHARED_DATA / "bioasq_taskb_golden_mirage").glob("Task11B*/11B1_golden.json"))
    docs, _ = load_paths([batch])
    settings = starter_assistant.settings
    chunker = Chunker(starter_assistant.embedder.count_tokens, settings.chunk_tokens,
                      settings.chunk_overlap)
    untitled = next(d for d in docs if d.title == untitled_name(d.pmid))
    titled = next(d for d in docs if d.title != untitled_name(d.pmid))
    for passage in chunker.chunk(untitled):
        assert embedded_text(untitled.title, passage.section, passage.text) == passage.text
    for passage in chunker.chunk(titled):
        text = embedded_text(titled.title, passage.section, passage.text)
        assert text == f"{titled.title} — {passage.section}\n{passage.text}"
