"""Fit the retriever's fusion parameters on BioASQ 7B-10B and PubMedQA (never on 11B).

    python scripts/fit_retrieval.py [--index indexes/benchmark] [--data ../shared/data]

Fitted: ``dense_weight`` (share of the cosine in the fused score), ``feedback_weight``
(pseudo-relevance feedback from the first pass's best passage), ``min_passage_score``
(the passage floor below the relevance bar) and BM25's ``bm25_k1`` and ``bm25_b``.
``focus_weight`` (weight of a question's corpus-rare words in its vector) is scored but
kept at its design value (1.0): it matters in a narrow corpus such as the starter one ("solid" among CAR-T
documents), which these broad sets do not represent (``--focus-weights`` scores others
for the record). The objective is the mean document nDCG@10 of the
assistant's ranking, exactly as ``assistant eval`` ranks it (the retriever's own
``candidates`` and ``fuse``, PASSAGES_PER_KIND deep), over the BioASQ 7B-10B questions and
the PubMedQA questions, each set weighing half. The relevance bar itself is not fitted:
these sets have no question the corpus cannot answer; it stays at the value that keeps
out-of-scope questions abstaining.

Search: coordinate ascent over small grids from the current settings, two rounds; a value
replaces the current one only if it gains more than MIN_GAIN on the objective (each
question's vector is computed once per focus weight and its candidates once per focus
weight and BM25 pair; two rounds took 12 minutes on 2 cores). Prints each step and the
best values, to be written into assistant/settings.py; ``--out FILE`` also saves them
with the per-set scores as JSON.

    python scripts/fit_retrieval.py --reranker DIR [--out eval/fit_reranker.json]

fits the optional reranker's ``rerank_weight`` and ``rerank_depth`` instead, by a full
grid, on BioASQ 10B only: the questions scripts/train_reranker.py leaves out (it trains on
7B-9B and PubMedQA), with the fusion settings as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MIN_GAIN = 0.001  # a smaller gain is noise: the current (design) value is kept
GRID = {
    "dense_weight": [0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9],
    "feedback_weight": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
    "min_passage_score": [-1.0, 0.1, 0.2, 0.25, 0.3, 0.35],
    "bm25_k1": [0.5, 0.7, 0.9, 1.2, 1.5],
    "bm25_b": [0.2, 0.3, 0.4, 0.5, 0.75],
}
RERANK_GRID = {
    "rerank_depth": [10, 20, 30],
    "rerank_weight": [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 100.0],  # 100: the reranker's order alone
}
RERANK_FIT_YEAR = "10B"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "indexes" / "benchmark")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, help="only the first N questions of each set")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--focus-weights", type=float, nargs="*", default=[0.0, 0.5],
                        help="also score these focus weights at the fitted values")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reranker", type=Path,
                        help="fit this reranker's weight and depth on BioASQ 10B instead")
    args = parser.parse_args(argv)
    if args.reranker:
        return fit_reranker(args)

    from assistant import Assistant
    from assistant.eval.baselines import documents_of
    from assistant.eval.gold import fitting_sets
    from assistant.eval.metrics import mean, ndcg_at_k
    from assistant.eval.runner import PASSAGES_PER_KIND, merged_hits
    from assistant.retrieval import candidate_depth

    started = time.perf_counter()
    assistant = Assistant.open(args.index)
    retriever = assistant.retriever
    sets = {name: items[: args.limit] for name, items in fitting_sets(args.data)[0].items()}
    depth = candidate_depth(PASSAGES_PER_KIND)  # as the evaluation asks the retriever
    queries = {name: [assistant.search_query(i.question, [])[0] for i in items]
               for name, items in sets.items()}
    vectors: dict[float, dict[str, list]] = {}  # per focus weight
    lexical: dict[tuple[float, float], dict] = {}  # BM25 indexes per (k1, b)
    candidates: dict[tuple[float, float, float], dict[str, list]] = {}

    def found_for(values: dict) -> dict[str, list]:
        """Each question's candidates under these focus and BM25 values (computed once)."""
        focus, bm25 = values["focus_weight"], (values["bm25_k1"], values["bm25_b"])
        if (focus, *bm25) not in candidates:
            if focus not in vectors:
                vectors[focus] = {name: [retriever.query_vector(q, focus) for q in qs]
                                  for name, qs in queries.items()}
            if bm25 not in lexical:
                lexical[bm25] = retriever.lexical_indexes(
                    assistant.settings.with_overrides(bm25_k1=bm25[0], bm25_b=bm25[1]),
                    keep=False)
            retriever.lexical = lexical[bm25]
            candidates[(focus, *bm25)] = {
                name: [retriever.candidates(q, depth, v) for q, v in zip(qs, vectors[focus][name])]
                for name, qs in queries.items()}
        return candidates[(focus, *bm25)]

    def score(values: dict) -> dict[str, float]:
        settings = assistant.settings.with_overrides(**values)
        out = {}
        for name, items in sets.items():
            ndcgs = []
            for item, found in zip(items, found_for(values)[name]):
                hits = merged_hits(retriever.fuse(found, PASSAGES_PER_KIND, settings))
                ranking = documents_of([h.passage.id for h in hits],
                                       {h.passage.id: h.passage.doc_id for h in hits})
                ndcgs.append(ndcg_at_k(ranking, set(item.gold_doc_ids), 10))
            out[name] = mean(ndcgs)
        out["objective"] = mean([out[name] for name in sets])
        return out

    best = {name: getattr(assistant.settings, name) for name in ("focus_weight", *GRID)}
    best_score = score(best)
    print(f"start {best}: {best_score}", flush=True)
    for round_ in range(args.rounds):
        for name, grid in GRID.items():
            trials = [({**best, name: value}, score({**best, name: value})) for value in grid]
            trial, result = max(trials, key=lambda t: t[1]["objective"])
            if result["objective"] > best_score["objective"] + MIN_GAIN:
                best, best_score = trial, result
            print(f"round {round_ + 1}, {name}: {best} -> "
                  f"{ {k: round(v, 4) for k, v in best_score.items()} } "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    others = {w: score({**best, "focus_weight": w}) for w in args.focus_weights}
    for weight, result in others.items():
        print(f"focus_weight {weight} at the fitted values: "
              f"{ {k: round(v, 4) for k, v in result.items()} }")
    print("fitted (write into assistant/settings.py):")
    for name, value in best.items():
        print(f"  {name} = {value}")
    if args.out:
        args.out.write_text(json.dumps({
            "fitted": best, "scores": best_score,
            "other_focus_weights": {str(w): r for w, r in others.items()}, "questions": {n: len(s) for n, s in sets.items()},
            "index": str(args.index), "grid": GRID}, indent=1))
    return 0


def fit_reranker(args: argparse.Namespace) -> int:
    from assistant import Assistant
    from assistant.eval.baselines import documents_of
    from assistant.eval.gold import fitting_sets
    from assistant.eval.metrics import mean, ndcg_at_k
    from assistant.eval.runner import PASSAGES_PER_KIND, merged_hits
    from assistant.rerank import Reranker, reranked, to_rerank
    from assistant.retrieval import candidate_depth

    started = time.perf_counter()
    assistant = Assistant.open(args.index)
    retriever = assistant.retriever
    retriever.reranker = Reranker(args.reranker, assistant.settings.embed_precision)
    items = [i for i in fitting_sets(args.data)[0]["bioasq_7b_10b"]
             if i.source.startswith(RERANK_FIT_YEAR)][: args.limit]
    deepest = max(RERANK_GRID["rerank_depth"])
    cases = []
    for item in items:  # the fused hits and the reranker's scores, once per question
        query = assistant.search_query(item.question, [])[0]
        found = retriever.candidates(query, candidate_depth(PASSAGES_PER_KIND))
        hits = retriever.fuse(found, PASSAGES_PER_KIND)
        cases.append((item, hits, retriever.rerank_scores(query, hits, deepest)))
    print(f"{len(items)} BioASQ {RERANK_FIT_YEAR} questions read in "
          f"{time.perf_counter() - started:.0f} s", flush=True)

    def score(depth: int | None, weight: float) -> float:
        ndcgs = []
        for item, hits, scores in cases:
            if depth:
                read = {h.passage.id for h in to_rerank(hits, depth)}
                hits = reranked(hits, {p: v for p, v in scores.items() if p in read}, weight)
            ranked = merged_hits(hits)
            ranking = documents_of([h.passage.id for h in ranked],
                                   {h.passage.id: h.passage.doc_id for h in ranked})
            ndcgs.append(ndcg_at_k(ranking, set(item.gold_doc_ids), 10))
        return mean(ndcgs)

    without = score(None, 0.0)
    print(f"without the reranker: nDCG@10 {without:.4f}")
    results = {(d, w): score(d, w) for d in RERANK_GRID["rerank_depth"]
               for w in RERANK_GRID["rerank_weight"]}
    for (depth, weight), value in results.items():
        print(f"rerank_depth {depth:>3}, rerank_weight {weight:>6}: nDCG@10 {value:.4f}")
    (depth, weight), best = max(results.items(), key=lambda t: t[1])
    if best <= without + MIN_GAIN:
        print("the reranker does not gain on BioASQ 10B: leave Settings.reranker unset")
    print(f"fitted (write into assistant/settings.py): rerank_depth = {depth}, "
          f"rerank_weight = {weight} (nDCG@10 {best:.4f} against {without:.4f} without)")
    if args.out:
        args.out.write_text(json.dumps({
            "fitted": {"rerank_depth": depth, "rerank_weight": weight},
            "ndcg@10": best, "without_reranker": without, "questions": len(items),
            "fit_set": f"BioASQ {RERANK_FIT_YEAR}", "reranker": str(args.reranker),
            "grid": {f"{d},{w}": v for (d, w), v in results.items()},
            "seconds": round(time.perf_counter() - started, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
