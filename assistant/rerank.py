"""Optional cross-encoder reranking of the fused passages (scripts/train_reranker.py).

A cross-encoder reads the question and a passage together, so it can tell a passage that
answers the question from one that only shares its words; it costs one model pass per
passage, so only the ``rerank_depth`` best fused passages (both kinds together) are read.
Their order becomes the fused score plus ``rerank_weight`` times the reranker's
probability; the passages below them keep their fused order, and which kinds answer (the
relevance bar) is not touched. The default install has no reranker (Settings.reranker).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from assistant.types import Kind, ScoredPassage


class RerankerError(ValueError):
    """The reranker named in the settings cannot be loaded."""


class Reranker:
    def __init__(self, path: str | Path, precision: str = "auto", max_tokens: int = 256):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from assistant.embedding import resolve_precision

        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise RerankerError(
                f"no reranker model at {path}: build it with `python scripts/train_reranker.py "
                f"--out {path}` or unset ASSISTANT_RERANKER")
        transformers.logging.set_verbosity_error()
        self.path = path
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
        self.precision = resolve_precision(precision)
        if self.precision == "bf16":
            self.model.to(torch.bfloat16)

    def score(self, query: str, texts: list[str]) -> np.ndarray:
        """The probability, for each text, that it answers the query."""
        import torch

        if not texts:
            return np.zeros(0, dtype=np.float32)
        features = self.tokenizer([query] * len(texts), texts, truncation="only_second",
                                  max_length=self.max_tokens, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**features).logits.float().view(-1)
        return torch.sigmoid(logits).numpy()


def to_rerank(hits: dict[Kind, list[ScoredPassage]], depth: int) -> list[ScoredPassage]:
    """The ``depth`` best fused passages over both kinds: what the reranker reads."""
    merged = sorted((h for hs in hits.values() for h in hs), key=lambda h: (-h.fusion, h.passage.id))
    return merged[:depth]


def reranked(hits: dict[Kind, list[ScoredPassage]], scores: dict[str, float], weight: float
             ) -> dict[Kind, list[ScoredPassage]]:
    """Each kind's passages with the read ones (``scores``: passage id -> probability)
    first, by fused score + weight x probability, then the others in fused order. The
    new order is carried in ``fusion``, so both kinds still merge on one scale."""
    out: dict[Kind, list[ScoredPassage]] = {}
    for kind, kind_hits in hits.items():
        # Every unread passage's fused score is at most any read one's, so adding the
        # (non-negative) probability keeps the read passages above the unread.
        read = [h.model_copy(update={"fusion": h.fusion + weight * scores[h.passage.id]})
                for h in kind_hits if h.passage.id in scores]
        rest = [h for h in kind_hits if h.passage.id not in scores]
        out[kind] = sorted(read, key=lambda h: -h.fusion) + rest
    return out
