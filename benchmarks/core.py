"""Benchmark (not a test): ingest throughput and query latency on the NCI PDQ corpus.

    python benchmarks/core.py [--pdq ../shared/data/nci_pdq_hp/md] [--limit N]
                              [--index /tmp/bench-pdq] [--questions 200]

Prints passages/s for a fresh ingest (chunk + embed + store), the time of a re-ingest of
the unchanged corpus, and p50/p95 latency of retrieval alone and of complete answers
(condense + retrieve + compose) over BioASQ question texts and the seed question.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from assistant import Assistant, Settings
from assistant.cli import SEED_QUESTION
from assistant.index import ingest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def questions(n: int) -> list[str]:
    found = [SEED_QUESTION]
    for batch in sorted((SHARED / "bioasq_taskb_golden_mirage").glob("Task*/*_golden.json")):
        found += [q["body"] for q in json.loads(batch.read_text())["questions"]]
        if len(found) >= n:
            break
    return found[:n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdq", type=Path, default=SHARED / "nci_pdq_hp" / "md")
    parser.add_argument("--limit", type=int, help="only the first N PDQ files")
    parser.add_argument("--index", type=Path, default=Path("/tmp/bench-pdq"))
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    if not args.pdq.is_dir():
        print(f"PDQ corpus not found at {args.pdq}", file=sys.stderr)
        return 2

    files = sorted(args.pdq.glob("*.md"))[: args.limit]
    shutil.rmtree(args.index, ignore_errors=True)
    settings = Settings(index_path=args.index)
    report = ingest(files, settings, progress=True)
    print(report.summary().splitlines()[0])
    print(f"ingest: {len(files)} documents, {report.passages_total} passages in "
          f"{report.seconds:.1f} s = {report.passages_total / report.seconds:.1f} passages/s "
          "(read + chunk + embed + write, model load included)")
    again = ingest(files, settings, progress=False)
    print(f"re-ingest of the unchanged corpus: {again.seconds:.1f} s, "
          f"{again.passages_embedded} passages embedded")

    assistant = Assistant.open(args.index)
    asked = questions(args.questions)
    assistant.ask(SEED_QUESTION)  # warm-up
    retrieval, answers = [], []
    for q in asked:
        t = time.perf_counter()
        assistant.retriever.retrieve(q)
        retrieval.append((time.perf_counter() - t) * 1000)
    for q in asked:
        t = time.perf_counter()
        assistant.ask(q)
        answers.append((time.perf_counter() - t) * 1000)
    for name, values in (("retrieval (embed + FAISS + BM25 + fusion)", retrieval),
                         ("answer (condense + retrieve + compose)", answers)):
        print(f"{name}: n={len(values)} p50={percentile(values, 50):.1f} ms "
              f"p95={percentile(values, 95):.1f} ms mean={statistics.mean(values):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
