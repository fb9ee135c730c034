"""Retrieval: per kind, dense (FAISS) and lexical (BM25) candidates fused by reciprocal
rank, then the relevance bar on cosine similarity.

Dense MiniLM vectors find paraphrases; BM25 finds the rare exact terms that clinical
questions hinge on (drug names, antigens, "solid"). Reciprocal-rank fusion (k=60) needs no
score calibration. The bar is applied to every fused candidate's cosine similarity with
the query, so a passage that only shares a word with an off-topic question is not used.
"""

from __future__ import annotations

import re

import bm25s
import numpy as np

from assistant.chunking import passage_header
from assistant.condense import SearchQuery
from assistant.embedding import Embedder
from assistant.index import Index
from assistant.settings import Settings
from assistant.types import KINDS, Kind, ScoredPassage

RRF_K = 60

try:  # stemming folds "toxicities" onto "toxicity"; optional
    import Stemmer

    _STEMMER = Stemmer.Stemmer("english")
except ImportError:  # pragma: no cover
    _STEMMER = None


def lexical_tokens(texts: list[str]):
    return bm25s.tokenize(texts, stopwords="en", stemmer=_STEMMER, show_progress=False)


class LexicalIndex:
    """BM25 over one kind's passages (with their headers), rows aligned to Index.rows."""

    def __init__(self, texts: list[str]):
        self.size = len(texts)
        self.bm25 = bm25s.BM25()
        if texts:
            self.bm25.index(lexical_tokens(texts), show_progress=False)

    def search(self, query: str, k: int) -> list[int]:
        if not self.size or not re.search(r"\w", query):
            return []
        tokens = lexical_tokens([query])
        if not tokens.vocab:
            return []
        rows, scores = self.bm25.retrieve(tokens, k=min(k, self.size), show_progress=False)
        return [int(r) for r, s in zip(rows[0], scores[0]) if s > 0]


class Retriever:
    def __init__(self, index: Index, embedder: Embedder, settings: Settings):
        index.check_embedder(embedder)
        self.index, self.embedder, self.settings = index, embedder, settings
        self.lexical = {
            kind: LexicalIndex([
                passage_header(index.documents[index.passages[row].doc_id].title,
                               index.passages[row].section) + "\n" + index.passages[row].text
                for row in index.rows[kind]
            ])
            for kind in KINDS
        }

    def query_vector(self, query: str | SearchQuery) -> np.ndarray:
        """The embedded query; a follow-up's own words weigh as much as the whole."""
        if isinstance(query, str) or not query.focus:
            return self.embedder.embed([str(getattr(query, "text", query))])[0]
        both = self.embedder.embed([query.text, query.focus]).sum(axis=0)
        return both / np.linalg.norm(both)

    def retrieve(self, query: str | SearchQuery, top_k: int | None = None
                 ) -> tuple[np.ndarray, dict[Kind, list[ScoredPassage]]]:
        """The query vector and, per kind, the top-k fused passages above the bar."""
        top_k = top_k or self.settings.top_k
        depth = max(4 * top_k, 30)
        vector = self.query_vector(query)
        query = query if isinstance(query, str) else query.text
        found: dict[Kind, list[ScoredPassage]] = {}
        for kind in KINDS:
            rows = self.index.rows[kind]
            dense = self.index.search_rows(vector, kind, depth)
            lexical = self.lexical[kind].search(query, depth)
            fused: dict[int, float] = {}
            for ranking in (dense, lexical):
                for rank, local in enumerate(ranking):
                    fused[local] = fused.get(local, 0.0) + 1.0 / (RRF_K + rank + 1)
            hits = []
            for local in sorted(fused, key=fused.__getitem__, reverse=True):
                row = rows[local]
                cosine = float(self.index.vectors[row] @ vector)
                if cosine >= self.settings.min_passage_score:
                    hits.append(ScoredPassage(passage=self.index.passages[row], score=cosine))
                if len(hits) == top_k:
                    break
            found[kind] = hits
        return vector, found
