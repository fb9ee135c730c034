"""Baselines over the SAME passages of the same index, built from llama-index blocks.

- ``bm25``: llama-index's BM25Retriever (bm25s, English stemmer and stop words).
- ``dense``: llama-index's VectorStoreIndex over a FaissVectorStore (inner product on
  normalised vectors = cosine), with the index's own embedder; the passages carry the
  vectors already in the index, so nothing is re-embedded.
- ``rrf``: llama-index's QueryFusionRetriever in ``reciprocal_rerank`` mode (k = 60) over
  the two, with a single query (no language model rewrites the question).

Each passage becomes a TextNode whose text is what the index embedded: the passage
header (document title and section) and the passage text. Baselines search all passages
of both kinds together, with the question as asked (no conversation context, no
relevance bar).
"""

from __future__ import annotations

import logging
from typing import Any

import faiss
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.core.schema import TextNode
from llama_index.retrievers.bm25 import BM25Retriever
from llama_index.vector_stores.faiss import FaissVectorStore
from pydantic import PrivateAttr

from assistant.chunking import embedded_text
from assistant.embedding import Embedder
from assistant.index import Index

BASELINES = ("bm25", "dense", "rrf")


class IndexEmbedding(BaseEmbedding):
    """The index's sentence-transformers embedder, as a llama-index embedding model."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any):
        super().__init__(model_name=embedder.name, **kwargs)
        self._embedder = embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def passage_nodes(index: Index, with_vectors: bool) -> list[TextNode]:
    nodes = []
    for row, p in enumerate(index.passages):
        title = index.documents[p.doc_id].title
        nodes.append(TextNode(
            id_=p.id, text=embedded_text(title, p.section, p.text),
            metadata={"doc_id": p.doc_id, "kind": p.kind},
            excluded_embed_metadata_keys=["doc_id", "kind"],
            excluded_llm_metadata_keys=["doc_id", "kind"],
            embedding=index.vectors[row].tolist() if with_vectors else None,
        ))
    return nodes


class Baselines:
    """The three baseline retrievers; ``rank(question)`` gives passage ids per method."""

    def __init__(self, index: Index, embedder: Embedder, depth: int = 100):
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self.passage_docs = {p.id: p.doc_id for p in index.passages}
        depth = min(depth, max(1, len(index.passages)))
        self.bm25 = BM25Retriever.from_defaults(
            nodes=passage_nodes(index, with_vectors=False), similarity_top_k=depth)
        store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(index.vectors.shape[1]))
        self.vector_index = VectorStoreIndex(
            passage_nodes(index, with_vectors=True),
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=IndexEmbedding(embedder))
        self.dense = self.vector_index.as_retriever(similarity_top_k=depth)
        self.rrf = QueryFusionRetriever(
            [self.bm25, self.dense], llm=MockLLM(), mode="reciprocal_rerank",
            similarity_top_k=depth, num_queries=1, use_async=False)

    def rank(self, question: str) -> dict[str, list[tuple[str, float]]]:
        """(passage id, score) best first, for each baseline."""
        return {name: [(hit.node.node_id, float(hit.score or 0.0))
                       for hit in getattr(self, name).retrieve(question)]
                for name in BASELINES}


def documents_of(passage_ids: list[str], passage_docs: dict[str, str]) -> list[str]:
    """Document ids in order of their best passage, each once."""
    return list(dict.fromkeys(passage_docs[p] for p in passage_ids))


__all__ = ["BASELINES", "Baselines", "IndexEmbedding", "documents_of"]
