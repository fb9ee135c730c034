"""Benchmark (not a test): embedding throughput, fp32 vs bf16, on the same real passages.

    python benchmarks/embed_speed.py [--index indexes/benchmark-research] [--passages 512]
                                     [--rounds 2]

Embeds the same passages (a random sample of an index's passages, with the headers they
were embedded with) at batch 64 with plain sentence-transformers in fp32 (the baseline:
torch's default threads) and with the assistant's Embedder in each precision and thread
count, in rounds so a change of load touches every configuration. Prints passages/s
(median over rounds), the ratio to the baseline, and the cosine of the bf16 vectors with
the fp32 ones. The load average is printed: other work on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from assistant.chunking import embedded_text
from assistant.embedding import Embedder, bf16_supported, resolve_model_path
from assistant.index import Index
from assistant.settings import DEFAULT_EMBEDDER


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("indexes/benchmark-research"))
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    index = Index.open(args.index)
    rows = np.random.default_rng(0).choice(len(index.passages),
                                           min(args.passages, len(index.passages)), replace=False)
    texts = [embedded_text(index.documents[index.passages[r].doc_id].title,
                           index.passages[r].section, index.passages[r].text) for r in rows]
    default_threads = torch.get_num_threads()
    plain = SentenceTransformer(resolve_model_path(DEFAULT_EMBEDDER), device="cpu")
    fp32 = Embedder(DEFAULT_EMBEDDER, precision="fp32")
    bf16 = Embedder(DEFAULT_EMBEDDER, precision="bf16") if bf16_supported() else None
    configs = {
        f"plain sentence-transformers fp32, {default_threads} threads (baseline)":
            (default_threads, lambda: plain.encode(texts, batch_size=64,
                                                   normalize_embeddings=True)),
        "Embedder fp32, 1 thread": (1, lambda: fp32.embed(texts)),
    }
    if bf16 is not None:
        configs[f"Embedder bf16, {default_threads} threads"] = (default_threads,
                                                               lambda: bf16.embed(texts))
        configs["Embedder bf16, 1 thread"] = (1, lambda: bf16.embed(texts))
    rates: dict[str, list[float]] = {name: [] for name in configs}
    loads = []
    for _ in range(args.rounds):
        for name, (threads, run) in configs.items():
            torch.set_num_threads(threads)
            started = time.perf_counter()
            run()
            rates[name].append(len(texts) / (time.perf_counter() - started))
            loads.append(os.getloadavg()[0])
    torch.set_num_threads(default_threads)

    print(f"{len(texts)} passages of {args.index}, batch 64, {args.rounds} rounds; "
          f"bf16 native: {bf16_supported()}; load average {min(loads):.2f}-{max(loads):.2f} "
          f"during the run, {os.cpu_count()} CPUs\n")
    base = statistics.median(next(iter(rates.values())))
    print("| configuration | passages/s (median) | runs | vs baseline |\n|---|---|---|---|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.1f} | {', '.join(f'{v:.0f}' for v in values)} | "
              f"{rate / base:.2f}x |")
    if bf16 is not None:
        cosines = np.sum(fp32.embed(texts) * bf16.embed(texts), axis=1)
        print(f"\ncosine(bf16, fp32) per passage: min {cosines.min():.5f}, "
              f"mean {cosines.mean():.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
