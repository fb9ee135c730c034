"""Milvus's BM25 against bm25s (not a test): BM25 alone, on BioASQ questions, over the
research passages of one FAISS index loaded into Milvus.

    python benchmarks/milvus_bm25.py --index indexes/benchmark --milvus-uri /tmp/bm25.db \
        [--questions ../shared/data/bioasq_taskb_golden_mirage/Task11BGoldenEnriched] [--limit N]

Three rankings of the same passages, each with the project's k1 and b (Settings):

- bm25s: the project's BM25 (bm25s tokens, English stop words, Snowball stems);
- milvus-project: Milvus's BM25 function and sparse index over the same words
  (ASSISTANT_MILVUS_BM25_TEXT=project, the default);
- milvus-standard: Milvus's BM25 over the raw text with its standard analyzer (lower case,
  the same stop words, no stemming: ASSISTANT_MILVUS_BM25_TEXT=milvus).

Each question's 100 best passages give its 10 best documents; reported: nDCG@10 and
recall@10 against the gold PMIDs, and the time a query takes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from assistant.chunking import embedded_text
from assistant.eval import load_gold
from assistant.eval.metrics import ndcg_at_k
from assistant.index import Index
from assistant.milvus import MilvusIndex, import_index
from assistant.retrieval import LexicalIndex, lexical_words
from assistant.settings import Settings

DEPTH = 100
KIND = "research"


def documents(index: Index, hits: list[tuple[int, float]]) -> list[str]:
    rows = index.rows[KIND]
    return list(dict.fromkeys(index.passages[rows[r]].doc_id for r, _ in hits))[:10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, default=Path("indexes/benchmark"))
    parser.add_argument("--milvus-uri", required=True, help="a Milvus Lite path or server URI")
    parser.add_argument("--questions", type=Path, default=Path(
        "../shared/data/bioasq_taskb_golden_mirage/Task11BGoldenEnriched"))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()

    source = Index.open(args.index)
    base = Settings(index_path=args.index, store="milvus", milvus_uri=args.milvus_uri)
    rankers = {}
    started = time.perf_counter()
    rankers["bm25s"] = LexicalIndex(
        [embedded_text(source.documents[p.doc_id].title, p.section, p.text)
         for p in (source.passages[r] for r in source.rows[KIND])], base.bm25_k1, base.bm25_b)
    print(f"bm25s index built in {time.perf_counter() - started:.1f} s")
    for mode in ("project", "milvus"):
        settings = base.with_overrides(milvus_collection=f"bm25_{mode}", milvus_bm25_text=mode)
        if MilvusIndex.current_build_of(settings) is None:
            started = time.perf_counter()
            import_index(source, settings)
            print(f"milvus-{mode}: loaded in {time.perf_counter() - started:.1f} s")
        rankers[f"milvus-{'project' if mode == 'project' else 'standard'}"] = (
            MilvusIndex.open(settings).lexical_indexes()[KIND])

    items = [i for i in load_gold(args.questions, "auto", args.limit) if i.gold_doc_ids]
    print(f"{len(items)} questions with gold documents; {len(source.rows[KIND])} research passages")
    for name, ranker in rankers.items():
        scores, recalls, times = [], [], []
        for item in items:
            gold = set(item.gold_doc_ids)
            started = time.perf_counter()
            hits, _ = ranker.candidates(item.question, lexical_words(item.question), DEPTH, [])
            times.append((time.perf_counter() - started) * 1000)
            ranking = documents(source, hits)
            scores.append(ndcg_at_k(ranking, gold))
            recalls.append(len(gold & set(ranking)) / min(len(gold), 10))
        times.sort()
        print(f"{name:16s} nDCG@10 {statistics.mean(scores):.4f}  recall@10 "
              f"{statistics.mean(recalls):.4f}  query p50 {statistics.median(times):.0f} ms, "
              f"p95 {times[int(0.95 * (len(times) - 1))]:.0f} ms")


if __name__ == "__main__":
    main()
