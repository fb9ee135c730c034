"""The training recipes on a few real examples. scripts/train_embedder.py trains and saves
a model that the assistant loads by path, an index built with it refuses the default
embedder, and `assistant eval --compare-index` scores the assistant over it.
scripts/train_reranker.py trains a cross-encoder that the assistant uses when the
settings name it (reordering, not replacing, what retrieval found), `assistant eval
--compare-reranker` scores it, and a missing model is a clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from assistant import Assistant, Settings
from assistant.cli import main
from assistant.index import IndexMismatchError, ingest
from tests.conftest import CORPUS, ROOT, SHARED_DATA

BIOASQ = SHARED_DATA / "bioasq_taskb_golden_mirage"
pytestmark = pytest.mark.skipif(
    not (BIOASQ.exists() and (SHARED_DATA / "pubmedqa").exists()),
    reason=f"{SHARED_DATA} lacks BioASQ/PubMedQA: the training recipe is not run")


def two_question_eval(starter_index, tmp_path, capsys, option: str, value) -> str:
    """`assistant eval` of the first two own gold questions with one compare option: its
    printed table."""
    questions = tmp_path / "two.jsonl"
    questions.write_text("\n".join(
        (ROOT / "eval" / "gold" / "starter.jsonl").read_text().splitlines()[:2]) + "\n")
    assert main(["eval", "--questions", str(questions), "--index", str(starter_index),
                 option, str(value), "--out", str(tmp_path / "report"), "--quiet"]) == 0
    return capsys.readouterr().out


def test_recipe_trains_a_model_the_assistant_uses(starter_index, tmp_path, capsys):
    out = tmp_path / "model"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_embedder.py"), "--data", str(SHARED_DATA),
         "--out", str(out), "--limit", "16", "--batch-size", "8"],
        capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    recipe = json.loads((out / "training.json").read_text())
    assert recipe["never_seen"] == "BioASQ Task11B" and recipe["examples"] == 16
    assert recipe["steps"] >= 2 and recipe["bioasq_questions"] > 1900

    index = tmp_path / "index-ft"
    ingest([CORPUS], Settings(index_path=index, embedder=str(out)), progress=False)
    with pytest.raises(IndexMismatchError, match="ASSISTANT_EMBEDDER"):
        Assistant.open(index)  # default embedder: refused, with the fix in the message
    tuned = Assistant.open(index, Settings(embedder=str(out)))
    answer = tuned.ask("How is cytokine release syndrome managed?")
    assert answer.references and not answer.abstained

    assert "| assistant@index-ft |" in two_question_eval(
        starter_index, tmp_path, capsys, "--compare-index", index)


def test_reranker_recipe_trains_a_model_the_assistant_uses(starter_index, tmp_path, capsys,
                                                           monkeypatch):
    out = tmp_path / "reranker"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_reranker.py"), "--data", str(SHARED_DATA),
         "--out", str(out), "--limit", "8", "--batch-size", "4"],
        capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stderr[-2000:]
    recipe = json.loads((out / "training.json").read_text())
    assert "10B" in recipe["never_seen"] and "Task11B" in recipe["never_seen"]
    assert recipe["bioasq_years"] == ["7B", "8B", "9B"] and recipe["steps"] == 2
    assert recipe["groups"] > 2000  # every training question found hard negatives

    plain = Assistant.open(starter_index)
    reranking = Assistant.open(starter_index, Settings(reranker=str(out)))
    question = "How is cytokine release syndrome managed?"
    _, before = plain.retriever.retrieve(question)
    _, after = reranking.retriever.retrieve(question)
    for kind in before:  # the same passages per kind, reordered only among the read ones
        assert {h.passage.id for h in after[kind]} == {h.passage.id for h in before[kind]}
    answer = reranking.ask(question)
    assert answer.references and not answer.abstained

    assert "| assistant@rerank |" in two_question_eval(
        starter_index, tmp_path, capsys, "--compare-reranker", out)

    monkeypatch.setenv("ASSISTANT_RERANKER", str(tmp_path / "missing"))
    assert main(["ask", "--index", str(starter_index), question]) == 2
    assert "train_reranker.py" in capsys.readouterr().err
