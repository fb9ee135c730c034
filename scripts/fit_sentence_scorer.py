"""Fit the answer-bearing sentence scorer and the answer's stopping rule (never on 11B).

    python scripts/fit_sentence_scorer.py [--index indexes/benchmark] [--data ../shared/data]
        [--train-limit N] [--tune-limit N]

1. The scorer (assistant/sentence_scoring.py, a logistic regression) on BioASQ 7B-9B:
   each question is asked as the assistant asks it (search query, retrieval), every
   whole, quotable sentence of the retrieved passages is a row of features, and its target
   says how far it answers: the share of its word bigrams that the expert's ideal answer
   also has (ROUGE-2 precision, best ideal answer), raised to at least 0.5 when it holds
   the factoid or list exact answer. Written to assistant/sentence_scorer.json.
2. The stopping rule (Settings.answer_score_ratio, min_answer_score, max_answer_words,
   min_focus_overlap) on
   BioASQ 10B, by a grid over the composer's own selection: the objective is ROUGE-2 F1
   against the ideal answers plus exact-answer containment (factoid and list), with the
   median body at most MAX_MEDIAN_WORDS words. Printed, and with --out saved as JSON; the
   chosen values go into assistant/settings.py by hand.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRAIN_YEARS = ("Task7B", "Task8B", "Task9B")
TUNE_YEAR = "Task10B"
EXACT_TARGET = 0.5
MAX_MEDIAN_WORDS = 110
GRID = {
    "answer_score_ratio": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "min_answer_score": [0.0, 0.05, 0.1, 0.15, 0.2],
    "max_answer_words": [60, 80, 100, 120],
    "min_focus_overlap": [0.0, 0.01, 0.1, 0.2, 0.35],
}


def bioasq(data: Path, years: tuple[str, ...]):
    from assistant.eval.gold import _load_bioasq

    root = data / "bioasq_taskb_golden_mirage"
    items = {}
    for year in years:
        for folder in sorted(root.glob(year + "Golden*")):
            for item in _load_bioasq(folder):
                items.setdefault(item.id, item)
    return list(items.values())


def held_out_questions(data: Path) -> set[str]:
    from assistant.eval.gold import HELD_OUT_YEAR, _load_bioasq

    root = data / "bioasq_taskb_golden_mirage"
    return {" ".join(i.question.lower().split()) for f in sorted(root.glob(HELD_OUT_YEAR + "*"))
            for i in _load_bioasq(f)}


def ask(assistant, item):
    """The candidates of one question, as the composer sees them when answering it."""
    query, _ = assistant.search_query(item.question, [])
    vector, found = assistant.retriever.retrieve(query)
    return assistant.composer.score(query.text, vector, found, assistant.index.documents)


def targets(candidates, item, scorer) -> np.ndarray:
    from assistant.eval import metrics as m

    out = []
    for c in candidates:
        precision = max((scorer.score(ideal, c.text)["rouge2"].precision
                         for ideal in item.gold_answers), default=0.0)
        if item.exact_answer and m.exact_containment(c.text, item.exact_answer) > 0:
            precision = max(precision, EXACT_TARGET)
        out.append(min(1.0, precision))
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    from rouge_score import rouge_scorer

    from assistant import Assistant
    from assistant.eval import metrics as m
    from assistant.sentence_scoring import PARAMETERS, SentenceScorer, fit_logistic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "indexes" / "benchmark")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--train-limit", type=int, default=800)
    parser.add_argument("--tune-limit", type=int, default=300)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--out", type=Path, help="save the fit's figures as JSON")
    parser.add_argument("--tune-only", action="store_true",
                        help="keep assistant/sentence_scorer.json; tune the stopping rule only")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    held_out = held_out_questions(args.data)
    rng = random.Random(0)

    def sample(years, limit):
        items = [i for i in bioasq(args.data, years)
                 if " ".join(i.question.lower().split()) not in held_out and i.gold_answers]
        rng.shuffle(items)
        return items[:limit]

    train, tune = sample(TRAIN_YEARS, args.train_limit), sample((TUNE_YEAR,), args.tune_limit)
    assistant = Assistant.open(args.index)
    rouge = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True)

    rows, ys = [], []
    if args.tune_only:
        train = []
    for n, item in enumerate(train, 1):
        candidates, _, features = ask(assistant, item)
        if candidates:
            rows.append(features)
            ys.append(targets(candidates, item, rouge))
        if n % 100 == 0:
            print(f"train: {n}/{len(train)} questions, {time.perf_counter() - started:.0f} s",
                  flush=True)
    if args.tune_only:
        parameters = json.loads(PARAMETERS.read_text())
    else:
        x, y = np.concatenate(rows), np.concatenate(ys)
        parameters = fit_logistic(x, y, l2=args.l2)
        parameters.update({
            "fitted_on": f"BioASQ {', '.join(TRAIN_YEARS)} ({len(train)} questions sampled, "
                         f"seed 0; none whose text is an 11B question), {len(y)} sentences",
            "target": "ROUGE-2 precision of the sentence against the ideal answer, at least "
                      f"{EXACT_TARGET} when it holds the exact answer",
            "index": str(args.index), "command": "python scripts/fit_sentence_scorer.py"})
        PARAMETERS.write_text(json.dumps(parameters, indent=1) + "\n")
    print("weights (standardised features):")
    for name, w in sorted(zip(parameters["features"], parameters["weights"]), key=lambda t: -abs(t[1])):
        print(f"  {name:16s} {w:+.3f}")
    assistant.composer.scorer = SentenceScorer(parameters)

    # The stopping rule on 10B: score each question's candidates once, select per setting.
    asked = []
    for item in tune:
        candidates, vectors, _ = ask(assistant, item)
        asked.append((item, candidates, vectors))
    composer, base = assistant.composer, assistant.settings
    results = []
    for values in itertools.product(*GRID.values()):
        composer.settings = base.with_overrides(**dict(zip(GRID, values)))
        r2, exact, lengths = [], [], []
        for item, candidates, vectors in asked:
            body = " ".join(candidates[i].text for i in composer.select(candidates, vectors))
            r2.append(m.rouge(body, item.gold_answers)["rouge2_f1"])
            if item.exact_answer:
                exact.append(m.exact_containment(body, item.exact_answer))
            lengths.append(m.words(body))
        results.append({**dict(zip(GRID, values)), "rouge2_f1": float(np.mean(r2)),
                        "exact": float(np.mean(exact)), "median_words": float(np.median(lengths))})
    composer.settings = base
    allowed = [r for r in results if r["median_words"] <= MAX_MEDIAN_WORDS]
    best = max(allowed, key=lambda r: r["rouge2_f1"] + r["exact"])
    current = next(r for r in results if all(r[k] == getattr(base, k) for k in GRID)) \
        if all(getattr(base, k) in GRID[k] for k in GRID) else None
    print("current settings:", current)
    print("best:", best)
    if args.out:
        args.out.write_text(json.dumps({
            "scorer": {k: parameters[k] for k in ("fitted_on", "target")},
            "tuned_on": f"BioASQ {TUNE_YEAR} ({len(tune)} questions sampled, seed 0)",
            "objective": f"ROUGE-2 F1 + exact containment, median body <= {MAX_MEDIAN_WORDS} words",
            "best": best, "current": current, "grid": results,
            "seconds": round(time.perf_counter() - started)}, indent=1) + "\n")
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
