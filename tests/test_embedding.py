"""The reduced-precision (bf16) embedding path agrees with fp32 (real model, real index).

The comparison runs on every CPU: where bf16 is native (AMX / AVX-512 BF16) over the whole
starter corpus, elsewhere over a sample of its documents, since emulated bf16 embeds about
5x slower than fp32 (98 s against 20 s for the corpus's 228 passages on a 2-core AVX2 CPU).
"""

from __future__ import annotations

import numpy as np
import pytest

from assistant import Settings
from assistant.embedding import bf16_supported, load_embedder, resolve_precision
from assistant.index import Index, ingest
from assistant.settings import DEFAULT_EMBEDDER

from .conftest import CORPUS

NATIVE_BF16 = bf16_supported()
SAMPLE_DOCUMENTS = 8  # of each kind's folder, where bf16 is emulated

QUERIES = [
    "What is the role of CAR T cells in the treatment of solid organ malignancies?",
    "How is cytokine release syndrome managed?",
    "What are the neurologic toxicities of CAR T-cell therapy?",
    "Which CAR T-cell product is approved for children with relapsed B-cell ALL?",
]


def test_auto_precision_follows_the_hardware():
    assert resolve_precision("auto") == ("bf16" if bf16_supported() else "fp32")
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("auto", device="cuda") == "fp32"


@pytest.fixture(scope="module")
def indexes(tmp_path_factory) -> dict[str, Index]:
    paths = [CORPUS] if NATIVE_BF16 else [
        path for folder in ("guidelines", "research")
        for path in sorted((CORPUS / folder).glob("*.md"))[:SAMPLE_DOCUMENTS]]
    built = {}
    for precision in ("fp32", "bf16"):
        path = tmp_path_factory.mktemp("precision") / precision
        ingest(paths, Settings(index_path=path, embed_precision=precision), progress=False)
        built[precision] = Index.open(path)
    return built


def test_bf16_vectors_agree_with_fp32_on_corpus_passages(indexes):
    fp32, bf16 = indexes["fp32"], indexes["bf16"]
    assert fp32.manifest["embed_precision"] == "fp32"
    assert bf16.manifest["embed_precision"] == "bf16"
    assert [p.id for p in fp32.passages] == [p.id for p in bf16.passages]
    cosines = np.sum(fp32.vectors * bf16.vectors, axis=1)  # both are unit vectors
    assert len(cosines) > (100 if NATIVE_BF16 else 25)
    assert cosines.min() >= 0.99, f"worst passage cosine {cosines.min():.4f}"


def test_bf16_index_and_query_give_the_fp32_top_5(indexes):
    fp32_model = load_embedder(DEFAULT_EMBEDDER, precision="fp32")
    bf16_model = load_embedder(DEFAULT_EMBEDDER, precision="bf16")
    for query in QUERIES:
        q32, q16 = fp32_model.embed([query])[0], bf16_model.embed([query])[0]
        assert float(q32 @ q16) >= 0.99
        for kind in ("guideline", "research"):
            exact = [h.passage.doc_id for h in indexes["fp32"].search(q32, kind, 5)]
            reduced = [h.passage.doc_id for h in indexes["bf16"].search(q16, kind, 5)]
            assert set(reduced) == set(exact), (query, kind, exact, reduced)


def test_an_index_opens_with_another_precision(indexes):
    """Vectors of either precision are float32 unit vectors: interchangeable."""
    vector = load_embedder(DEFAULT_EMBEDDER, precision="fp32").embed([QUERIES[0]])[0]
    assert indexes["bf16"].search(vector, "guideline", 3)
