"""Retrieval: the query's nearest passages of each kind, above the relevance bar."""

from __future__ import annotations

import numpy as np

from assistant.embedding import Embedder
from assistant.index import Index
from assistant.settings import Settings
from assistant.types import KINDS, Kind, ScoredPassage


class Retriever:
    def __init__(self, index: Index, embedder: Embedder, settings: Settings):
        index.check_embedder(embedder)
        self.index, self.embedder, self.settings = index, embedder, settings

    def retrieve(self, query: str) -> tuple[np.ndarray, dict[Kind, list[ScoredPassage]]]:
        """The query vector and, per kind, the top-k passages scoring above the bar."""
        vector = self.embedder.embed([query])[0]
        found = {
            kind: [hit for hit in self.index.search(vector, kind, self.settings.top_k)
                   if hit.score >= self.settings.min_passage_score]
            for kind in KINDS
        }
        return vector, found
