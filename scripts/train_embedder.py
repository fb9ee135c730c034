"""Fine-tune the default embedder (all-MiniLM-L6-v2) on biomedical question -> passage pairs.

    python scripts/train_embedder.py [--data ../shared/data] [--out DIR] [--epochs 1]

Training data, and nothing else (the evaluation set BioASQ 11B is never read):
- BioASQ Task B golden sets 7B, 8B, 9B and 10B: each question with the passages of its
  gold documents, where those documents are built by the project's own reader and
  chunker from the 7B–10B snippets only (so no text that came from 11B annotations is
  seen); a question whose text also appears in 11B is left out;
- PubMedQA (ori_pqal.json): each question with the passages of its abstract (without the
  conclusion, which is the gold long answer).

Loss: multiple-negatives ranking (in-batch negatives) with one hard negative per pair,
mined by BM25 from the same training pool (a high-ranked passage of a document that is
not gold for the question). Batches never hold the same question or document twice, so
no in-batch negative is a positive. bf16 autocast where the CPU computes it natively.

The model goes to ``--out`` (default: ~/.cache/clinical-assistant/embedders/
minilm-bioasq7-10b-pubmedqa) with ``training.json`` (the recipe, counts, seconds). Use it
with ``ASSISTANT_EMBEDDER=<out>``; an index built with one embedder refuses to open with
another, so build its own index (e.g. ``scripts/build_benchmark_corpus.py --index
indexes/benchmark-ft`` with that variable set). The default install never needs it.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_OUT = Path.home() / ".cache" / "clinical-assistant" / "embedders" / "minilm-bioasq7-10b-pubmedqa"


def training_questions(data: Path) -> tuple[list[tuple[str, str, list[str]]], dict]:
    """(question id, question, gold document ids) of 7B–10B and PubMedQA, and counts."""
    from assistant.eval.gold import fitting_sets

    sets, dropped = fitting_sets(data)
    questions = [(i.id, i.question, i.gold_doc_ids) for items in sets.values() for i in items]
    return questions, {"bioasq_questions": len(sets["bioasq_7b_10b"]),
                       "bioasq_dropped_as_in_11b": dropped,
                       "pubmedqa_questions": len(sets["pubmedqa"])}


def training_passages(data: Path, embedder) -> dict[str, list[str]]:
    """Document id -> its passages as the index embeds them (header + text)."""
    from assistant.chunking import Chunker, embedded_text
    from assistant.eval.gold import fit_folders
    from assistant.readers import load_paths
    from assistant.settings import Settings

    settings = Settings()
    documents, errors = load_paths([*fit_folders(data), data / "pubmedqa" / "ori_pqal.json"])
    if errors:
        raise SystemExit("cannot read training data:\n" + "\n".join(map(str, errors)))
    chunker = Chunker(embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap)
    return {doc.id: [embedded_text(doc.title, p.section, p.text) for p in chunker.chunk(doc)]
            for doc in documents}


def make_examples(questions, passages: dict[str, list[str]], per_question: int,
                  rng: random.Random) -> list[dict]:
    """(question, positive passage, hard negative passage) examples."""
    import bm25s

    from assistant.retrieval import lexical_tokens

    pool = [(doc_id, text) for doc_id, texts in passages.items() for text in texts]
    bm25 = bm25s.BM25()
    bm25.index(lexical_tokens([text for _, text in pool]), show_progress=False)
    examples = []
    for qid, question, gold in questions:
        positives = [(d, t) for d in gold for t in passages.get(d, [])]
        if not positives:
            continue
        rng.shuffle(positives)
        hits, _ = bm25.retrieve(lexical_tokens([question]), k=min(30, len(pool)),
                                show_progress=False)
        negatives = [pool[i] for i in hits[0] if pool[i][0] not in gold][:5]
        for doc_id, text in positives[:per_question]:
            negative = rng.choice(negatives) if negatives else rng.choice(pool)
            examples.append({"qid": qid, "doc": doc_id, "neg_doc": negative[0],
                             "query": question, "positive": text, "negative": negative[1]})
    return examples


def batches(examples: list[dict], size: int, rng: random.Random) -> list[list[dict]]:
    """Shuffled batches in which no question and no document appears twice."""
    pending = examples[:]
    rng.shuffle(pending)
    out = []
    while pending:
        batch, used, rest = [], set(), []
        for ex in pending:
            keys = {ex["qid"], ex["doc"], ex["neg_doc"]}
            if len(batch) < size and not keys & used:
                batch.append(ex)
                used |= keys
            else:
                rest.append(ex)
        out.append(batch)
        pending = rest
    return out


def main(argv: list[str] | None = None) -> int:
    from training import begin, common_arguments, data_missing, optimise, write_recipe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, DEFAULT_OUT, batch_size=32, batch_help="pairs per step",
                     learning_rate=3e-5, limit_help="only N examples (smoke test)")
    parser.add_argument("--per-question", type=int, default=6,
                        help="at most this many positive passages per question")
    parser.add_argument("--max-tokens", type=int, default=256, help="passage truncation")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 2
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from assistant.embedding import Embedder
    from assistant.eval.gold import FIT_YEARS, HELD_OUT_YEAR
    from assistant.settings import DEFAULT_EMBEDDER

    started, rng = begin(args)
    embedder = Embedder(DEFAULT_EMBEDDER, precision="fp32")
    model = embedder.model
    model.max_seq_length = args.max_tokens
    questions, counts = training_questions(args.data)
    examples = make_examples(questions, training_passages(args.data, embedder),
                             args.per_question, rng)
    if args.limit:  # a random sample across questions
        examples = rng.sample(examples, min(args.limit, len(examples)))
    counts["examples"] = len(examples)
    print(f"{counts}; data ready in {time.perf_counter() - started:.0f} s", flush=True)

    loss = MultipleNegativesRankingLoss(model, scale=20.0)
    plan = [b for _ in range(args.epochs) for b in batches(examples, args.batch_size, rng)]

    def step_loss(batch: list[dict]):
        features = [model.preprocess([ex[column] for ex in batch])
                    for column in ("query", "positive", "negative")]
        return loss(features, torch.arange(len(batch)))

    optimise(model, plan, step_loss, args.learning_rate, started)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(str(args.out))
    write_recipe(args, started,
                 data_seen=[f"BioASQ {', '.join(FIT_YEARS)} golden sets (questions, gold "
                            "documents, snippets)", "PubMedQA ori_pqal.json (questions, contexts)"],
                 never_seen=f"BioASQ {HELD_OUT_YEAR}", **counts, steps=len(plan))
    print(f"saved to {args.out} ({time.perf_counter() - started:.0f} s); "
          f"use it with ASSISTANT_EMBEDDER={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
