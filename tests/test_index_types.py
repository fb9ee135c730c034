"""Approximate vector indexes (HNSW, IVF-PQ) answer like the exact flat index."""

from __future__ import annotations

import numpy as np

from assistant import Assistant, Settings
from assistant.cli import SEED_QUESTION
from assistant.index import Index, build_faiss, choose_index_type, ingest

from .conftest import CORPUS


def test_auto_is_exact_below_the_threshold_and_hnsw_above():
    settings = Settings(index_type="auto", ann_min_passages=1000)
    assert choose_index_type(settings, 999) == "flat"
    assert choose_index_type(settings, 1000) == "hnsw"
    assert choose_index_type(Settings(index_type="ivfpq"), 500) == "flat"  # too few to train


def test_hnsw_index_answers_the_seed_question_like_flat(starter_assistant, tmp_path):
    path = tmp_path / "hnsw"
    ingest([CORPUS], Settings(index_path=path, index_type="hnsw"), progress=False)
    hnsw = Assistant.open(path)
    assert hnsw.index.manifest["index_types"] == {"guideline": "hnsw", "research": "hnsw"}
    assert starter_assistant.index.manifest["index_types"] == {"guideline": "flat",
                                                               "research": "flat"}
    _, exact = starter_assistant.retriever.retrieve(SEED_QUESTION)
    _, approx = hnsw.retriever.retrieve(SEED_QUESTION)
    for kind in exact:
        assert [h.passage.doc_id for h in approx[kind][:5]] == \
               [h.passage.doc_id for h in exact[kind][:5]], kind
    answer = hnsw.ask(SEED_QUESTION)
    assert answer.references and answer.disclaimer


def test_ivfpq_reranked_recall_at_10(starter_index):
    """IVF-PQ needs 10k vectors to train: the starter vectors, jittered 60 times."""
    vectors = Index.open(starter_index).vectors
    rng = np.random.default_rng(0)
    many = np.concatenate([vectors + rng.normal(0, 0.02, vectors.shape).astype(np.float32)
                           for _ in range(60)])
    many /= np.linalg.norm(many, axis=1, keepdims=True)
    queries = many[rng.choice(len(many), 50, replace=False)]
    exact = build_faiss(many, "flat", {})
    approx = build_faiss(many, "ivfpq", {})
    approx.nprobe = 32
    _, truth = exact.search(queries, 10)
    _, found = approx.search(queries, 40)
    # re-rank the 40 candidates exactly, as Index.search_rows does
    reranked = [c[np.argsort(-(many[c] @ q))][:10] for c, q in zip(found, queries)]
    recall = np.mean([len(set(t) & set(r)) / 10 for t, r in zip(truth, reranked)])
    assert recall >= 0.9, recall
