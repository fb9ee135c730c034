"""Evaluation: gold-set loaders on real samples, metrics on hand-worked examples, and a
full small evaluation run (real embedder, real FAISS, real baselines) with its report."""

from __future__ import annotations

import json
import math
import re

import pytest

from assistant.cli import main
from assistant.eval import evaluate, load_gold, write_report
from assistant.eval import metrics as m
from assistant.eval.gold import detect_format
from tests.conftest import CORPUS, ROOT, SHARED_DATA

GOLD = ROOT / "eval" / "gold" / "starter.jsonl"
PUBMEDQA = SHARED_DATA / "pubmedqa" / "ori_pqal.json"
BIOASQ = SHARED_DATA / "bioasq_taskb_golden_mirage"
MEDQUAD = SHARED_DATA / "medquad" / "medquad_answered.jsonl.gz"


def needs(path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (../shared/data "
                              "is not beside this checkout); public-format loader not tested")


# --- loaders -----------------------------------------------------------------------

def test_own_gold_set_is_complete_and_points_at_corpus_documents():
    items = load_gold(GOLD)
    ids = {re.search(r"^id:\s*(\S+)", p.read_text(), re.M).group(1)
           for p in CORPUS.rglob("*.md") if p.name != "README.md"}
    answerable = [i for i in items if not i.expect_abstain]
    assert len(answerable) >= 30
    assert sum(bool(i.history) for i in items) >= 5  # conversations with follow-ups
    assert sum(i.expect_abstain for i in items) >= 5  # out-of-scope questions
    for item in answerable:
        assert item.gold_answers and item.gold_doc_ids
        assert set(item.gold_doc_ids) <= ids, item.id
    assert all(not i.gold_doc_ids for i in items if i.expect_abstain)


def test_own_jsonl_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "What is CRS?"}\n{"id": "b", "question": ""}\n')
    with pytest.raises(ValueError, match="line 2"):
        load_gold(bad)
    with pytest.raises(ValueError, match="cannot tell the format"):
        detect_format(tmp_path / "questions.txt")


@needs(PUBMEDQA)
def test_pubmedqa_loader():
    data = json.loads(PUBMEDQA.read_text())
    items = load_gold(PUBMEDQA, limit=5)
    assert len(items) == 5
    pmid, first = next(iter(data.items()))
    assert items[0].id == f"pubmedqa:{pmid}" and items[0].question == first["QUESTION"]
    assert items[0].gold_doc_ids == [f"pmid:{pmid}"]
    assert items[0].gold_answers == [first["LONG_ANSWER"]]
    assert {i.type for i in items} <= {"yes", "no", "maybe"}


@needs(BIOASQ)
def test_bioasq_loader_file_and_folder():
    file = sorted(BIOASQ.rglob("*_golden.json"))[0]
    raw = json.loads(file.read_text())["questions"][0]
    item = load_gold(file, limit=1)[0]
    assert item.question == raw["body"] and item.type == raw["type"]
    assert item.gold_answers == raw["ideal_answer"]
    assert item.gold_doc_ids[0] == "pmid:" + raw["documents"][0].rsplit("/", 1)[-1]
    assert len(load_gold(BIOASQ)) == 2310  # 7B-11B, as SOURCE.md counts them


@needs(MEDQUAD)
def test_medquad_loader():
    items = load_gold(MEDQUAD, limit=40)
    assert len(items) == 40 and all(i.gold_answers and i.type for i in items)
    cancer = [i for i in items if i.source == "1_CancerGov_QA"]
    assert cancer and all(i.gold_doc_ids[0].startswith("https://www.cancer.gov/")
                          and "/hp/" in i.gold_doc_ids[0] for i in cancer)


# --- metrics, worked by hand ---------------------------------------------------------

def test_retrieval_metrics():
    ranking, gold = ["a", "x", "b", "y"], {"a", "b", "c"}
    assert m.recall_at_k(ranking, gold, 1) == pytest.approx(1 / 3)
    assert m.recall_at_k(ranking, gold, 3) == pytest.approx(2 / 3)
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3) + 1/log2(4) = 2.1309
    assert m.ndcg_at_k(ranking, gold, 10) == pytest.approx(1.5 / 2.1309, abs=1e-4)
    assert m.mrr_at_k(["x", "y", "b"], gold, 10) == pytest.approx(1 / 3)
    assert m.mrr_at_k(["x", "b"], gold, 1) == 0.0
    assert math.isnan(m.recall_at_k(ranking, set(), 5))


def test_answer_metrics():
    # LCS "the cat on the mat" = 5 of 6 tokens each way: P = R = F = 5/6.
    # Bigrams shared: the-cat, on-the, the-mat = 3 of 5 each way: F = 0.6.
    scores = m.rouge("the cat sat on the mat", ["the cat was on the mat"])
    assert scores["rougeL_f1"] == pytest.approx(5 / 6)
    assert scores["rouge2_f1"] == pytest.approx(0.6)
    assert m.rouge("", ["anything"])["rougeL_f1"] == 0.0
    # Articles and punctuation dropped: [cat, sat] vs [cat, sat, down]: P 1, R 2/3, F1 0.8.
    assert m.token_f1("The cat sat.", ["a cat sat down", "dog"]) == pytest.approx(0.8)
    assert m.containment("CRS is graded by hypotension.", "CRS is graded by fever") == 0.8
    assert m.statement_support(["CRS is graded by hypotension."], [["CRS is graded by fever"]]) == [True]
    assert m.statement_support(["Tocilizumab blocks IL-6."], [["CRS is graded by fever"]]) == [False]
    assert m.percentile([1, 2, 3, 4], 50) == 2.5


def test_citation_and_shape_checks_on_real_answers(starter_assistant):
    answer = starter_assistant.ask("How is cytokine release syndrome managed?")
    assert answer.references
    docs = {p.id: p.doc_id for p in starter_assistant.index.passages}
    cited = {p.passage_id for r in answer.references for p in r.passages}
    assert m.citation_errors(answer, cited, docs) == []
    assert m.shape_errors(answer) == []
    missing = next(iter(cited))
    assert any("was not retrieved" in e for e in m.citation_errors(answer, cited - {missing}, docs))
    answer.references[0].passages[0].passage_id = "no-such-passage"
    assert m.citation_errors(answer, cited, docs)
    off_topic = starter_assistant.ask("What is the capital of Australia?")
    assert off_topic.abstained and m.shape_errors(off_topic) == []


# --- a full small run ------------------------------------------------------------------

def test_full_small_evaluation_writes_every_report_file(starter_assistant, tmp_path):
    items = load_gold(GOLD)
    chosen = [items[0], items[1],
              next(i for i in items if i.history), next(i for i in items if i.expect_abstain)]
    result = evaluate(starter_assistant, chosen, baselines=True, progress=False, name="small")
    out = write_report(result, tmp_path / "small")
    for name in ("report.json", "report.md", "recall_at_k.png", "latency.png", "per_type.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "report.json").read_text())
    assert data["methods"] == ["assistant", "bm25", "dense", "rrf", "best passage",
                               "lead sentences of 3 best"]
    assert len(data["questions"]) == 4 and data["git"]["commit"]
    follow_up = next(q for q in data["questions"] if q["history"])
    assert follow_up["standalone_query"] != follow_up["question"]
    assert set(data["summary"]["assistant"]) >= {"recall@10", "ndcg@10", "mrr@10", "rougeL_f1",
                                                 "citation_validity", "answer_shape",
                                                 "latency_p50_ms", "abstention_out_of_scope"}
    assert data["summary"]["assistant"]["citation_validity"] == 1.0
    assert data["summary"]["assistant"]["answer_shape"] == 1.0
    assert data["summary"]["assistant"]["abstention_out_of_scope"] == 1.0
    assert data["summary"]["assistant"]["well_formed"] == 1.0
    # The follow-up repeats nothing its conversation already showed.
    assert follow_up["repeated"] == 0
    for baseline in ("best passage", "lead sentences of 3 best"):
        assert data["summary"][baseline]["rouge2_f1"] > 0 and data["summary"][baseline]["body_words"] > 0
    report = (out / "report.md").read_text()
    for heading in ("## Summary", "assistant / best baseline", "## Definitions",
                    "## Worst questions", "## Settings", "## Index", "Git commit"):
        assert heading in report


def test_eval_command(starter_index, tmp_path, capsys):
    questions = tmp_path / "two.jsonl"
    questions.write_text("\n".join(GOLD.read_text().splitlines()[:2]) + "\n")
    out = tmp_path / "cli"
    assert main(["eval", "--questions", str(questions), "--index", str(starter_index),
                 "--out", str(out), "--limit", "1", "--quiet"]) == 0
    assert "| assistant |" in capsys.readouterr().out
    assert len(json.loads((out / "report.json").read_text())["questions"]) == 1


def test_source_citation_markers_are_not_quoted():
    # Found by the PubMedQA run: a BioASQ snippet's own "[3]" quoted into an answer read as
    # a citation of a reference [3] that the answer does not have (citation validity < 1).
    from assistant.sentences import quotable as _quotable

    assert not _quotable("Receptive vocabulary was preserved to a degree similar to skills [3].")
    assert not _quotable("Receptive vocabulary was preserved to a degree similar to skills [2, 5].")
    assert _quotable("Receptive vocabulary was preserved to a degree similar to reading skills.")


def test_eval_compares_another_index(starter_index, tmp_path, capsys):
    # The same corpus and embedder in a copy: the variant must score exactly as the
    # assistant does, reported as its own method with its own ratio to the baselines.
    import shutil

    copy = tmp_path / "starter-copy"
    shutil.copytree(starter_index, copy)
    questions = tmp_path / "three.jsonl"
    questions.write_text("\n".join(GOLD.read_text().splitlines()[:3]) + "\n")
    out = tmp_path / "compare"
    assert main(["eval", "--questions", str(questions), "--index", str(starter_index),
                 "--compare-index", str(copy), "--baselines", "--out", str(out),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| assistant@starter-copy |" in printed
    assert "**assistant@starter-copy / best baseline**" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["methods"] == ["assistant", "assistant@starter-copy", "bm25", "dense", "rrf",
                               "best passage", "lead sentences of 3 best"]
    for key in ("recall@10", "ndcg@10", "rougeL_f1"):
        assert data["summary"]["assistant@starter-copy"][key] == data["summary"]["assistant"][key]
