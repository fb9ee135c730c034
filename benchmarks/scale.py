"""Benchmark (not a test): vector index types at a synthetic 1M passages, and on a real index.

    python benchmarks/scale.py [--index indexes/benchmark-research] [--passages 1000000]
                               [--types flat hnsw ivfpq] [--queries 200]

Synthetic: the real index's vectors replicated with Gaussian jitter (sigma 0.02 per
dimension, renormalised) up to --passages 384-dimensional unit vectors; queries are
further jittered copies of random real vectors. Real: one kind's vectors of the index as
they are, queries the BioASQ-like spread of the index itself (jittered passages).
For each type: build time (torch/FAISS default threads), index size in memory
(serialised bytes) and process RSS growth, query p50/p95 with one thread (the
assistant's query_threads), and recall@10 against the flat index on the same queries.
Search breadth: Settings() defaults (hnsw_ef_search, ivf_nprobe); IVF-PQ re-ranks
IVFPQ_RERANK x 10 candidates on the exact vectors, as Index.search_rows does.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from assistant.index import IVFPQ_RERANK, Index, build_faiss, configure_search
from assistant.settings import Settings


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def jittered(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        rows = rng.integers(0, len(base), min(100_000, n - start))
        part = base[rows] + rng.normal(0, 0.02, (len(rows), base.shape[1])).astype(np.float32)
        out[start:start + len(rows)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def run(label: str, vectors: np.ndarray, queries: np.ndarray, types: list[str]) -> None:
    settings = Settings()
    params = {"hnsw_m": settings.hnsw_m, "hnsw_ef_construction": settings.hnsw_ef_construction}
    truth = None
    print(f"\n{label}: {len(vectors):,} vectors x {vectors.shape[1]}, {len(queries)} queries; "
          f"hnsw M={settings.hnsw_m} efConstruction={settings.hnsw_ef_construction} "
          f"efSearch={settings.hnsw_ef_search}; ivfpq nprobe={settings.ivf_nprobe}\n")
    print("| type | build s | index MB | RSS growth MB | p50 ms | p95 ms | recall@10 vs flat "
          "| load during |\n|---|---|---|---|---|---|---|---|")
    for index_type in types:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        before, load0 = rss_mb(), os.getloadavg()[0]
        started = time.perf_counter()
        index = build_faiss(vectors, index_type, params)
        build_s = time.perf_counter() - started
        grown = rss_mb() - before
        size_mb = faiss.serialize_index(index).nbytes / 2**20
        configure_search(index, settings)
        faiss.omp_set_num_threads(1)
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            if index_type == "ivfpq":
                _, hits = index.search(q[None], IVFPQ_RERANK * 10)
                cand = hits[0][hits[0] >= 0]
                hits = cand[np.argsort(-(vectors[cand] @ q), kind="stable")[:10]]
            else:
                hits = index.search(q[None], 10)[1][0]
            times.append((time.perf_counter() - t) * 1000)
            found.append(set(int(h) for h in hits))
        if truth is None:
            truth = found  # flat comes first: exact
        recall = np.mean([len(f & t) / 10 for f, t in zip(found, truth)])
        print(f"| {index_type} | {build_s:.1f} | {size_mb:.0f} | {grown:.0f} | "
              f"{np.percentile(times, 50):.2f} | {np.percentile(times, 95):.2f} | "
              f"{recall:.3f} | {load0:.2f}-{os.getloadavg()[0]:.2f} |", flush=True)
        del index


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("indexes/benchmark-research"))
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--types", nargs="+", default=["flat", "hnsw", "ivfpq"])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    types = ["flat"] + [t for t in args.types if t != "flat"]
    index = Index.open(args.index)
    rng = np.random.default_rng(0)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start; "
          f"max RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if not args.skip_real:
        real = np.ascontiguousarray(index.vectors[index.rows["research"]])
        run(f"real: {args.index} research passages", real, jittered(real, args.queries, rng),
            types)
    if not args.skip_synthetic:
        synthetic = jittered(index.vectors, args.passages, rng)
        run("synthetic: replicated real vectors", synthetic,
            jittered(index.vectors, args.queries, rng), types)
    return 0


if __name__ == "__main__":
    sys.exit(main())
