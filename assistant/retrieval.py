"""Retrieval: dense (FAISS) and lexical (BM25) candidates of both kinds fused by
reciprocal rank, then the relevance bar on cosine similarity; each kind keeps its top-k.

Dense MiniLM vectors find paraphrases; BM25 finds the rare exact terms that clinical
questions hinge on (drug names, antigens, "solid"). Reciprocal-rank fusion (k=60) needs no
score calibration. The bar is applied to every fused candidate's cosine similarity with
the query, so a passage that only shares a word with an off-topic question is not used.
"""

from __future__ import annotations

import re
from collections import Counter

import bm25s
import numpy as np

from assistant.chunking import passage_header
from assistant.condense import SearchQuery, content_words
from assistant.embedding import Embedder
from assistant.index import Index
from assistant.settings import Settings
from assistant.types import KINDS, Kind, ScoredPassage

RRF_K = 60
DISTINCTIVE_SHARE = 0.10  # a word in fewer passages than this tells questions apart

try:  # stemming folds "toxicities" onto "toxicity"; optional
    import Stemmer

    _STEMMER = Stemmer.Stemmer("english")
except ImportError:  # pragma: no cover
    _STEMMER = None


def lexical_tokens(texts: list[str]):
    return bm25s.tokenize(texts, stopwords="en", stemmer=_STEMMER, show_progress=False)


def token_words(tokens) -> list[list[str]]:
    """Each tokenized text as its stemmed words, in order."""
    inverse = {i: w for w, i in tokens.vocab.items()}
    return [[inverse[i] for i in ids] for ids in tokens.ids]


class LexicalIndex:
    """BM25 over one kind's passages (with their headers), rows aligned to Index.rows."""

    def __init__(self, texts: list[str]):
        self.size = len(texts)
        self.bm25 = bm25s.BM25()
        # How many passages contain each stemmed word (for Retriever.focus_of).
        self.document_frequency: Counter[str] = Counter()
        if texts:
            tokens = lexical_tokens(texts)
            self.bm25.index(tokens, show_progress=False)
            for words in token_words(tokens):
                self.document_frequency.update(set(words))

    def search(self, query: str | list[str], k: int) -> list[tuple[int, float]]:
        """(row, BM25 score) of the k best passages with a positive score, best first
        (ties: lower row first). ``query`` may be given as its words (``lexical_words``),
        so a query searched in both kinds is tokenized once. Scores every passage in one
        call (bm25s ``get_scores``): its ``retrieve`` costs more per query than the scoring."""
        words = lexical_words(query) if isinstance(query, str) else query
        if not self.size or not words:
            return []
        scores = self.bm25.get_scores(words)
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(r), float(scores[r])) for r in top if scores[r] > 0]


def lexical_words(text: str) -> list[str]:
    """The stemmed, stopworded words of a text, as BM25 indexed them, in order."""
    if not re.search(r"\w", text):
        return []
    return token_words(lexical_tokens([text]))[0]


def stems(text: str) -> set[str]:
    return set(lexical_words(text))


class Retriever:
    def __init__(self, index: Index, embedder: Embedder, settings: Settings):
        index.check_embedder(embedder)
        self.index, self.embedder, self.settings = index, embedder, settings
        self.lexical = {
            kind: LexicalIndex([
                passage_header(index.documents[index.passages[row].doc_id].title,
                               index.passages[row].section) + "\n" + index.passages[row].text
                for row in index.rows[kind]])
            for kind in KINDS
        }
        # Share of passages containing each stemmed word: what the corpus is "about".
        counts = sum((self.lexical[kind].document_frequency for kind in KINDS), Counter())
        total = max(len(index.passages), 1)
        self.passage_share = {w: n / total for w, n in counts.items()}

    def focus_of(self, query: str) -> str | None:
        """The query's words that are rare in this corpus, when they are only some of its
        words: in a corpus about CAR T cells, "solid organ malignancies" is what tells the
        seed question apart, not "chimeric antigen receptor T cells"."""
        words = content_words(query)
        if not words:
            return None
        rare = [w for w, w_stems in zip(words, token_words(lexical_tokens(words)))
                if any(0 < self.passage_share.get(s, 0) < DISTINCTIVE_SHARE for s in w_stems)]
        return " ".join(rare) if rare and len(rare) < len(words) else None

    def query_vector(self, query: str | SearchQuery) -> np.ndarray:
        """The embedded query. Its focus (a follow-up's own words, or else the words rare
        in the corpus) weighs as much as the whole, so what the corpus always talks about
        does not drown what the question is asking."""
        if isinstance(query, str):
            query = SearchQuery(query)
        focus = query.focus or self.focus_of(query.text)
        if not focus:
            return self.embedder.embed([query.text])[0]
        both = self.embedder.embed([query.text, focus]).sum(axis=0)
        return both / np.linalg.norm(both)

    def retrieve(self, query: str | SearchQuery, top_k: int | None = None
                 ) -> tuple[np.ndarray, dict[Kind, list[ScoredPassage]]]:
        """The query vector and, per kind, the top-k fused passages above the bar.

        Candidates of both kinds are ranked together (dense by cosine, lexical by BM25
        score) before fusion, so the fusion score orders guideline and research passages
        on one scale; each kind then keeps its own best top_k."""
        top_k = top_k or self.settings.top_k
        depth = max(4 * top_k, 30)
        text = query if isinstance(query, str) else query.text
        vector = self.query_vector(query)
        words = lexical_words(text)
        dense: list[tuple[float, int]] = []
        lexical: list[tuple[float, int]] = []
        for kind in KINDS:
            rows = self.index.rows[kind]
            dense += [(float(self.index.vectors[rows[local]] @ vector), int(rows[local]))
                      for local in self.index.search_rows(vector, kind, depth)]
            lexical += [(score, int(rows[local]))
                        for local, score in self.lexical[kind].search(words, depth)]
        fused: dict[int, float] = {}
        for ranking in (sorted(dense, reverse=True), sorted(lexical, reverse=True)):
            for rank, (_, row) in enumerate(ranking):
                fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
        found: dict[Kind, list[ScoredPassage]] = {kind: [] for kind in KINDS}
        for row in sorted(fused, key=fused.__getitem__, reverse=True):
            passage = self.index.passages[row]
            hits = found[passage.kind]
            if len(hits) == top_k:
                continue
            cosine = float(self.index.vectors[row] @ vector)
            if cosine >= self.settings.min_passage_score:
                hits.append(ScoredPassage(passage=passage, score=cosine, fusion=fused[row]))
        return vector, found
