"""Train a cross-encoder reranker from the all-MiniLM-L6-v2 weights on BioASQ 7B-9B and PubMedQA.

    python scripts/train_reranker.py [--data ../shared/data] [--out DIR]

A cross-encoder reads the question and a passage together, so it can weigh what the
question asks against what the passage says, which two independent vectors cannot.
The encoder starts from the default embedder's weights with a new one-logit head.

Training data, and nothing else:
- BioASQ 7B, 8B and 9B golden sets: each question with one passage of a gold document
  (built by the project's own reader and chunker from 7B-10B snippets only, as in
  train_embedder.py) and HARD negatives: passages of non-gold documents ranked high for
  it by BM25 or by the default embedder over the same pool;
- PubMedQA: each question with one passage of its abstract (no conclusion) and negatives
  mined the same way.
BioASQ 10B is NOT trained on: scripts/fit_retrieval.py --reranker fits how the reranker's
score is combined with the fused score on 10B, questions the reranker never saw. 11B
(the evaluation set) is never read.

Loss: each question with its positive and ``--negatives`` negatives is one group; the
loss is the cross-entropy of the positive among the group's logits (a listwise softmax).
bf16 autocast where the CPU computes it natively.

The model goes to ``--out`` (default ~/.cache/clinical-assistant/rerankers/
minilm-ce-bioasq7-9b-pubmedqa) with ``training.json`` (recipe, counts, seconds). Use it
with ``ASSISTANT_RERANKER=<out>``; the default install never needs it.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_OUT = Path.home() / ".cache" / "clinical-assistant" / "rerankers" / "minilm-ce-bioasq7-9b-pubmedqa"
TRAIN_YEARS = ("7B", "8B", "9B")  # 10B is kept for fitting the combination
MINE_DEPTH = 15  # negatives come from each miner's top MINE_DEPTH non-gold passages


def training_groups(data: Path, negatives: int, rng: random.Random) -> tuple[list[dict], dict]:
    """(question, positive passage, hard negative passages) groups, and counts."""
    import bm25s
    import numpy as np

    from assistant.embedding import Embedder
    from assistant.eval.gold import fitting_sets
    from assistant.retrieval import lexical_tokens
    from assistant.settings import DEFAULT_EMBEDDER
    from train_embedder import training_passages

    sets, dropped = fitting_sets(data)
    bioasq = [i for i in sets["bioasq_7b_10b"] if i.source.startswith(TRAIN_YEARS)]
    questions = bioasq + sets["pubmedqa"]
    embedder = Embedder(DEFAULT_EMBEDDER, precision="auto")
    passages = training_passages(data, embedder)
    pool = [(doc_id, text) for doc_id, texts in passages.items() for text in texts]
    texts = [text for _, text in pool]
    bm25 = bm25s.BM25()
    bm25.index(lexical_tokens(texts), show_progress=False)
    vectors = embedder.embed(texts)
    query_vectors = embedder.embed([q.question for q in questions])
    groups = []
    for item, vector in zip(questions, query_vectors):
        gold = set(item.gold_doc_ids)
        positives = [t for d in item.gold_doc_ids for t in passages.get(d, [])]
        if not positives:
            continue
        lexical, _ = bm25.retrieve(lexical_tokens([item.question]), k=60, show_progress=False)
        dense = np.argsort(-(vectors @ vector))[:60]
        mined = []
        for ranking in (lexical[0], dense):
            mined += [int(i) for i in ranking if pool[i][0] not in gold][:MINE_DEPTH]
        mined = list(dict.fromkeys(mined))
        if len(mined) < negatives:
            continue
        groups.append({"qid": item.id, "query": item.question,
                       "positive": rng.choice(positives),
                       "negatives": [texts[i] for i in rng.sample(mined, negatives)]})
    counts = {"bioasq_questions": len(bioasq), "bioasq_years": list(TRAIN_YEARS),
              "bioasq_dropped_as_in_11b": dropped, "pubmedqa_questions": len(sets["pubmedqa"]),
              "pool_passages": len(pool), "groups": len(groups)}
    return groups, counts


def main(argv: list[str] | None = None) -> int:
    from training import begin, common_arguments, data_missing, optimise, write_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, DEFAULT_OUT, batch_size=8, batch_help="groups per step",
                     learning_rate=5e-5, limit_help="only N groups (smoke test)")
    parser.add_argument("--negatives", type=int, default=3, help="hard negatives per group")
    parser.add_argument("--max-tokens", type=int, default=256, help="question + passage")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from assistant.embedding import resolve_model_path
    from assistant.eval.gold import HELD_OUT_YEAR
    from assistant.settings import DEFAULT_EMBEDDER

    started, rng = begin(args)
    groups, counts = training_groups(args.data, args.negatives, rng)
    if args.limit:
        groups = rng.sample(groups, min(args.limit, len(groups)))
    print(f"{counts}; data ready in {time.perf_counter() - started:.0f} s", flush=True)

    base = resolve_model_path(DEFAULT_EMBEDDER)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    plan = []
    for _ in range(args.epochs):
        order = groups[:]
        rng.shuffle(order)
        plan += [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    size = 1 + args.negatives

    def step_loss(batch: list[dict]):
        """The cross-entropy of each group's positive (first) among its logits."""
        queries = [g["query"] for g in batch for _ in range(size)]
        texts = [t for g in batch for t in [g["positive"], *g["negatives"]]]
        features = tokenizer(queries, texts, truncation="only_second", max_length=args.max_tokens,
                             padding=True, return_tensors="pt")
        logits = model(**features).logits.float().view(len(batch), size)
        return torch.nn.functional.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long))

    optimise(model, plan, step_loss, args.learning_rate, started)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.out))
    tokenizer.save_pretrained(str(args.out))
    write_recipe(args, started,
                 data_seen=[f"BioASQ {', '.join(TRAIN_YEARS)} golden sets (questions, gold "
                            "documents, snippets of 7B-10B)",
                            "PubMedQA ori_pqal.json (questions, contexts)"],
                 never_seen=f"BioASQ 10B questions (kept for fitting the combination), "
                            f"{HELD_OUT_YEAR}", **counts, steps=len(plan))
    print(f"saved to {args.out} ({time.perf_counter() - started:.0f} s); "
          f"use it with ASSISTANT_RERANKER={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
