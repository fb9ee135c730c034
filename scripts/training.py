"""What the two training recipes (train_embedder.py, train_reranker.py) share: their
common arguments, the data check, the optimisation loop and the recipe file."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def common_arguments(parser: argparse.ArgumentParser, out: Path, batch_size: int,
                     batch_help: str, learning_rate: float, limit_help: str) -> None:
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    parser.add_argument("--learning-rate", type=float, default=learning_rate)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help=limit_help)
    parser.add_argument("--seed", type=int, default=0)


def data_missing(data: Path) -> bool:
    """True (after saying so) when ../shared/data lacks the training sets."""
    from assistant.eval.gold import fit_folders

    if fit_folders(data) and (data / "pubmedqa").is_dir():
        return False
    print(f"error: BioASQ/PubMedQA data not found under {data}", file=sys.stderr)
    return True


def begin(args: argparse.Namespace):
    """The clock, and the seeded random generator; torch seeded and its threads set."""
    import random

    import torch

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    return time.perf_counter(), random.Random(args.seed)


def optimise(model, plan: list, step_loss: Callable, learning_rate: float, started: float) -> None:
    """One AdamW pass over ``plan`` (a list of batches): linear warm-up over the first
    tenth, then linear decay; gradients clipped at 1; ``step_loss(batch)`` computes the
    loss, under bf16 autocast where the CPU computes it natively."""
    import torch

    from assistant.embedding import bf16_supported

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, len(plan) // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (len(plan) - step) / (len(plan) - warmup + 1))))
    use_bf16 = bf16_supported()
    model.train()
    running = 0.0
    for step, batch in enumerate(plan, 1):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            value = step_loss(batch)
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running = 0.95 * running + 0.05 * value.item() if step > 1 else value.item()
        if step % 20 == 0 or step == len(plan):
            print(f"step {step}/{len(plan)} loss {running:.3f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()


def write_recipe(args: argparse.Namespace, started: float, **facts) -> None:
    """``training.json`` beside the model: the arguments, what was seen, counts, seconds."""
    from assistant.embedding import bf16_supported
    from assistant.settings import DEFAULT_EMBEDDER

    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "training.json").write_text(json.dumps({
        "base_model": DEFAULT_EMBEDDER, "recipe": recipe, "bf16_autocast": bf16_supported(),
        **facts, "seconds": round(time.perf_counter() - started, 1)}, indent=1))
