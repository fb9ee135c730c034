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
import itertools
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
RAREST_BOUNDS = [round(0.1 * i, 1) for i in range(0, 11)]
RARE_SHARES = [0.0005, 0.001, 0.002, 0.005]  # scope.RARE_SHARE is set from the chosen one


def _rarest(scope) -> tuple[float, bool] | None:
    """The question's rarest word: its share of passages, and whether the evidence holds
    it (scope.rarest)."""
    from assistant.scope import rarest

    found = rarest(scope.terms)
    return (found[1], found[2]) if found else None


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

    judge = assistant.scope
    judge.min_coverage = judge.rarest_missing_coverage = 0.0  # swept below
    rows = []
    for question, in_scope, kind in questions:
        query, _ = assistant.search_query(question, [])
        _, found = assistant.retriever.retrieve(query)
        scope = assistant.scope.judge(query.text, found, assistant.index.documents)
        rows.append({"question": question, "in_scope": in_scope, "kind": kind,
                     "coverage": round(scope.coverage, 4), "reason": scope.reason,
                     "missing": scope.missing, "terms": scope.terms,
                     "rarest": _rarest(scope)})

    def answered(row, threshold, rarest_bound, rare_share):
        rarest = row["rarest"]
        missing = rarest is not None and not rarest[1] and rarest[0] < rare_share
        return (row["reason"] is None and row["coverage"] >= threshold
                and not (missing and row["coverage"] < rarest_bound))

    table = []
    for threshold, bound, rare in itertools.product(THRESHOLDS, RAREST_BOUNDS, RARE_SHARES):
        inside = [answered(r, threshold, bound, rare) for r in rows if r["in_scope"]]
        outside = [not answered(r, threshold, bound, rare) for r in rows if not r["in_scope"]]
        table.append({"min_coverage": threshold, "rarest_missing_coverage": bound,
                      "rare_share": rare,
                      "in_scope_answered": round(sum(inside) / max(len(inside), 1), 4),
                      "out_of_scope_declined": round(sum(outside) / max(len(outside), 1), 4)})
    # Most out-of-scope declined while answering MIN_ANSWERED of the in-scope; then the
    # most in-scope answered; then the highest thresholds (the stricter of equals, for the
    # out-of-scope questions that calibration did not foresee).
    ok = [t for t in table if t["in_scope_answered"] >= MIN_ANSWERED] or table[:1]
    chosen = max(ok, key=lambda t: (t["out_of_scope_declined"], t["in_scope_answered"],
                                    t["min_coverage"], t["rarest_missing_coverage"],
                                    t["rare_share"]))
    for t in table:
        shown = (t["rarest_missing_coverage"] == chosen["rarest_missing_coverage"]
                 and t["rare_share"] == chosen["rare_share"]
                 and round(t["min_coverage"] * 100) % 5 == 0)
        if t is not chosen and not shown:
            continue
        mark = "  <- chosen" if t is chosen else ""
        print(f"min_coverage {t['min_coverage']:.2f}, rarest (share < {t['rare_share']}) "
              f"missing {t['rarest_missing_coverage']:.2f}: in-scope answered "
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
