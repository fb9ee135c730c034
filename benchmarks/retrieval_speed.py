"""Benchmark (not a test): query latency of retrieval against its floor, in one run.

    python benchmarks/retrieval_speed.py [--index indexes/benchmark-research]
                                         [--questions 200] [--rounds 2]

On the same index and the same questions (BioASQ question texts, every fourth followed by
a follow-up such as "What about its adverse effects?"), it times:

- floor: one query embedding and one FAISS flat search over all passages, each measured
  on its own (best of default and single-threaded pools); floor = their p50s summed;
- naive: the same two calls back to back with torch's and FAISS's default thread pools;
- llama-index: the default retriever, VectorStoreIndex over a FaissVectorStore with the
  same embedder (assistant/eval/baselines.py), default thread pools;
- the same two on one thread, and naive with the assistant's thread settings (torch
  Settings.query_threads, FAISS one thread), for comparison;
- assistant: Assistant.search_query + Retriever.retrieve (condensation, abbreviation
  expansion, focus, dense + BM25 per kind, fusion, relevance bar), with the assistant's
  own thread settings (Settings.query_threads).

Methods run in blocks, the blocks repeated ``--rounds`` times so a change of load on
the machine touches every method; p50/p95 are over all rounds. The load average is
printed with the table: other work on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import torch

from assistant import Assistant, Settings
from assistant.cli import SEED_QUESTION
from assistant.types import Turn

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FOLLOW_UPS = ["What about its adverse effects?", "And how is it diagnosed?",
              "Who is most at risk of it?", "How common is it?"]


def conversation_steps(n: int) -> list[tuple[str, list[Turn]]]:
    """(question, earlier turns): BioASQ questions, every fourth followed by a follow-up."""
    bodies = [SEED_QUESTION]
    for batch in sorted((SHARED / "bioasq_taskb_golden_mirage").glob("Task*/*_golden.json")):
        bodies += [q["body"] for q in json.loads(batch.read_text())["questions"]]
        if len(bodies) >= n:
            break
    steps: list[tuple[str, list[Turn]]] = []
    for i, body in enumerate(bodies):
        steps.append((body, []))
        if i % 4 == 3:
            steps.append((FOLLOW_UPS[(i // 4) % len(FOLLOW_UPS)],
                          [Turn(question=body, standalone_query=body)]))
    return steps[:n]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def stats(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("indexes/benchmark-research"))
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not (SHARED / "bioasq_taskb_golden_mirage").is_dir():
        print(f"BioASQ questions not found under {SHARED}", file=sys.stderr)
        return 2

    default_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    assistant = Assistant.open(args.index)  # sets the query thread pools; restored below
    own_threads = torch.get_num_threads(), faiss.omp_get_max_threads()  # Settings.query_threads
    embedder, index = assistant.embedder, assistant.index
    flat = faiss.IndexFlatIP(index.vectors.shape[1])
    flat.add(index.vectors)
    from assistant.eval.baselines import Baselines

    llama = Baselines(index, embedder, depth=10).dense
    steps = conversation_steps(args.questions)
    texts = [q for q, _ in steps]
    vectors = embedder.embed(texts)

    def run_assistant(question: str, turns: list[Turn]) -> None:
        standalone, _ = assistant.search_query(question, turns)
        assistant.retriever.retrieve(standalone)

    blocks: dict[str, tuple[tuple[int, int], Callable[[int], object]]] = {
        "embed (default threads)": (default_threads, lambda i: embedder.embed([texts[i]])),
        "FAISS (default threads)": (default_threads,
                                    lambda i: flat.search(vectors[i:i + 1], 10)),
        "embed (1 thread)": ((1, 1), lambda i: embedder.embed([texts[i]])),
        "FAISS (1 thread)": ((1, 1), lambda i: flat.search(vectors[i:i + 1], 10)),
        "naive": (default_threads,
                  lambda i: flat.search(embedder.embed([texts[i]]), 10)),
        "llama-index": (default_threads, lambda i: llama.retrieve(texts[i])),
        "naive (1 thread)": ((1, 1), lambda i: flat.search(embedder.embed([texts[i]]), 10)),
        "llama-index (1 thread)": ((1, 1), lambda i: llama.retrieve(texts[i])),
        f"naive (assistant's threads: torch {own_threads[0]}, FAISS {own_threads[1]})": (
            own_threads, lambda i: flat.search(embedder.embed([texts[i]]), 10)),
        "assistant": (own_threads, lambda i: run_assistant(*steps[i])),
    }
    times: dict[str, list[float]] = {name: [] for name in blocks}
    loads = []
    for _ in range(args.rounds):
        for name, ((torch_threads, faiss_threads), call) in blocks.items():
            torch.set_num_threads(torch_threads)
            faiss.omp_set_num_threads(faiss_threads)
            for i in range(min(5, len(steps))):  # warm-up
                call(i)
            times[name] += [timed(lambda: call(i)) for i in range(len(steps))]
            loads.append(os.getloadavg()[0])
    torch.set_num_threads(own_threads[0])
    faiss.omp_set_num_threads(own_threads[1])

    p50 = {name: stats(values)[0] for name, values in times.items()}
    embed_name = min((n for n in p50 if n.startswith("embed")), key=p50.__getitem__)
    faiss_name = min((n for n in p50 if n.startswith("FAISS")), key=p50.__getitem__)
    floor = p50[embed_name] + p50[faiss_name]
    print(f"index {args.index}: {len(index.passages)} passages "
          f"({', '.join(f'{k} {len(r)}' for k, r in index.rows.items())}); "
          f"{len(steps)} queries ({sum(1 for _, t in steps if t)} follow-ups) x "
          f"{args.rounds} rounds; default threads torch {default_threads[0]}, "
          f"FAISS {default_threads[1]}; embedder {embedder.precision}; load average {min(loads):.2f}-{max(loads):.2f} "
          f"during the run, {os.cpu_count()} CPUs")
    print(f"floor = {embed_name} + {faiss_name} = {p50[embed_name]:.2f} + "
          f"{p50[faiss_name]:.2f} = {floor:.2f} ms (p50s)\n")
    print(f"| method | p50 ms | p95 ms | p50 / floor |\n|---|---|---|---|")
    for name, values in times.items():
        a, b = stats(values)
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / floor:.2f}x |")
    print(f"| floor | {floor:.2f} | | 1.00x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
