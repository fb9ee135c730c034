"""Calibrate the scope decision (Settings.scope_min_coverage; assistant/scope.py).

    python scripts/fit_scope.py [--index indexes/benchmark] [--data ../shared/data]
        [--bioasq N] [--out eval/fit_scope.json]

Questions: eval/calibration/scope.jsonl (in- and out-of-scope questions written for
calibration, never the gold sets that evaluate the decision) plus N BioASQ 7B-10B
questions whose gold abstracts are in the index (in scope by construction; never 11B).
Each is asked as the assistant asks it (search query, retrieval); the scope judge's other
reasons (species, administrative task, a word the corpus never uses) are kept, and the
weighted share of its words found in its evidence is recorded. The chosen threshold is the highest one
that still answers at least MIN_ANSWERED of the in-scope questions; the figures for every
threshold are printed and saved.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIN_ANSWERED = 0.98
YEARS = ("Task7B", "Task8B", "Task9B", "Task10B")
THRESHOLDS = [round(0.01 * i, 2) for i in range(0, 100)]


def main(argv: list[str] | None = None) -> int:
    from assistant import Assistant
    from fit_sentence_scorer import bioasq, held_out_questions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "indexes" / "benchmark")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--calibration", type=Path,
                        default=ROOT / "eval" / "calibration" / "scope.jsonl")
    parser.add_argument("--bioasq", type=int, default=200)
    parser.add_argument("--out", type=Path, help="save the figures as JSON")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    assistant = Assistant.open(args.index)
    questions = [(q["question"], bool(q["in_scope"]), q.get("kind", ""))
                 for q in map(json.loads, args.calibration.read_text().splitlines()) if q]
    held_out = held_out_questions(args.data)
    items = [i for i in bioasq(args.data, YEARS)
             if " ".join(i.question.lower().split()) not in held_out
             and any(g in assistant.index.documents for g in i.gold_doc_ids)]
    random.Random(0).shuffle(items)
    questions += [(i.question, True, "bioasq") for i in items[:args.bioasq]]

    assistant.scope.min_coverage = 0.0  # the other reasons only; coverage is swept below
    rows = []
    for question, in_scope, kind in questions:
        query, _ = assistant.search_query(question, [])
        _, found = assistant.retriever.retrieve(query)
        scope = assistant.scope.judge(query.text, found, assistant.index.documents)
        rows.append({"question": question, "in_scope": in_scope, "kind": kind,
                     "coverage": round(scope.coverage, 4), "reason": scope.reason,
                     "missing": scope.missing, "terms": scope.terms})

    def answered(row, threshold):
        return row["reason"] is None and row["coverage"] >= threshold

    table = []
    for threshold in THRESHOLDS:
        inside = [answered(r, threshold) for r in rows if r["in_scope"]]
        outside = [not answered(r, threshold) for r in rows if not r["in_scope"]]
        table.append({"min_coverage": threshold,
                      "in_scope_answered": round(sum(inside) / max(len(inside), 1), 4),
                      "out_of_scope_declined": round(sum(outside) / max(len(outside), 1), 4)})
    ok = [t for t in table if t["in_scope_answered"] >= MIN_ANSWERED]
    chosen = max(ok, key=lambda t: t["min_coverage"]) if ok else table[0]
    for t in table:
        if t is not chosen and round(t["min_coverage"] * 100) % 5:
            continue
        mark = "  <- chosen" if t is chosen else ""
        print(f"min_coverage {t['min_coverage']:.2f}: in-scope answered "
              f"{t['in_scope_answered']:.3f}, out-of-scope declined "
              f"{t['out_of_scope_declined']:.3f}{mark}")
    print(f"{len(rows)} questions ({sum(r['in_scope'] for r in rows)} in scope), "
          f"{time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"chosen": chosen, "thresholds": table,
                                        "questions": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
