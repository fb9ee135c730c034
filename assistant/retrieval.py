"""Retrieval: dense (FAISS) and lexical (BM25) candidates of both kinds, fused by a
weighted sum of their scores; each kind keeps its top-k, or nothing when it does not reach
the bar.

Dense MiniLM vectors find paraphrases; BM25 finds the rare exact terms that clinical
questions hinge on (drug names, antigens, "solid"). The fused score of a candidate is
``dense_weight`` times its cosine plus the rest times its BM25 score over the best BM25
score among the candidates (so both lie in [0, 1] and a question's own scale drops out).
The cosine is then taken once more against the query moved towards the first pass's best
passage (pseudo-relevance feedback, ``feedback_weight``): that passage's vocabulary is the
corpus's own for what was asked. Both weights were fitted on BioASQ 7B-10B and PubMedQA
(scripts/fit_retrieval.py); on 7B-10B the sum beat weighted reciprocal-rank fusion, which
throws the scores away, by 0.022 nDCG@10, and feedback added 0.007.

The relevance bar is a decision per kind on the question's own cosine, not per passage
and not on the feedback: a kind whose best passage is below the bar contributes nothing
(an off-topic question finds only passages that share a word with it), while an answered
question keeps its fused ranking, cut only at a lower floor. Feedback only reorders the
candidates the question itself found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from assistant.chunking import embedded_text
from assistant.condense import SearchQuery, content_words
from assistant.embedding import Embedder
from assistant.index import Index
from assistant.rerank import Reranker, reranked, to_rerank
from assistant.sentence_scoring import treatment_section
from assistant.settings import Settings
from assistant.types import KINDS, Kind, ScoredPassage

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


# What a saved BM25 index depends on besides k1 and b: the tokenizer (bm25s, stemmer) and
# how a passage is written for it (chunking.embedded_text, via the index's text version).
LEXICAL_VERSION = f"bm25s-{bm25s.__version__}-{'stem' if _STEMMER else 'nostem'}-v1"


class LexicalIndex:
    """BM25 over one kind's passages (with their headers), rows aligned to Index.rows."""

    def __init__(self, texts: list[str], k1: float, b: float):
        self.size = len(texts)
        self.bm25 = bm25s.BM25(k1=k1, b=b)
        # How many passages contain each stemmed word (for Retriever.focus_of).
        self.document_frequency: Counter[str] = Counter()
        if texts:
            tokens = lexical_tokens(texts)
            self.bm25.index(tokens, show_progress=False)
            for words in token_words(tokens):
                self.document_frequency.update(set(words))

    @classmethod
    def cached(cls, folder: Path, texts: Callable[[], list[str]], k1: float,
               b: float) -> "LexicalIndex":
        """Loaded from ``folder`` (memory-mapped) when an earlier open saved it there, else
        built from ``texts()`` and saved for the next open. A build never changes, so
        its BM25 index is made once, not at every start of every process; a folder that
        cannot be written (a read-only index) only means building it each time."""
        if (folder / "document_frequency.json").is_file():
            with (folder / "document_frequency.json").open() as f:
                saved = json.load(f)
            if not saved["size"]:
                return cls([], k1, b)
            loaded = cls.__new__(cls)
            loaded.bm25 = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
            loaded.size, loaded.document_frequency = saved["size"], Counter(saved["counts"])
            return loaded
        built = cls(texts(), k1, b)
        staging = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}")
        try:
            if built.size:
                built.bm25.save(str(staging), show_progress=False)
            staging.mkdir(parents=True, exist_ok=True)
            with (staging / "document_frequency.json").open("w") as f:
                json.dump({"size": built.size, "counts": built.document_frequency}, f)
            os.rename(staging, folder)  # whole or not at all; another process may win
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        return built

    def scores(self, query: str | list[str]) -> np.ndarray:
        """The BM25 score of every passage (row order). ``query`` may be given as its words
        (``lexical_words``), so a query searched in both kinds is tokenized once. One call
        to bm25s ``get_scores``: its ``retrieve`` costs more per query than the scoring."""
        words = lexical_words(query) if isinstance(query, str) else query
        if not self.size or not words:
            return np.zeros(self.size, dtype=np.float32)
        return self.bm25.get_scores(words)

    def search(self, query: str | list[str], k: int,
               scores: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, BM25 score) of the k best passages with a positive score, best first
        (ties: lower row first); ``scores`` when already computed by ``scores``."""
        scores = self.scores(query) if scores is None else scores
        if not self.size:
            return []
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(r), float(scores[r])) for r in top if scores[r] > 0]

    def candidates(self, text: str, words: list[str], depth: int, rows: list[int]
                   ) -> tuple[list[tuple[int, float]], list[float]]:
        """The ``depth`` best passages (row, score) for a query, and the scores of the given
        rows (the dense candidates). ``text`` is the query as typed, ``words`` as BM25
        reads it; a Milvus store (assistant/milvus.py) answers the same question."""
        scores = self.scores(words)
        top = self.search(words, depth, scores)
        return top, [float(scores[r]) for r in rows] if self.size else [0.0] * len(rows)


def lexical_words(text: str) -> list[str]:
    """The stemmed, stopworded words of a text, as BM25 indexed them, in order."""
    if not re.search(r"\w", text):
        return []
    return token_words(lexical_tokens([text]))[0]


_CHILD_TITLE = re.compile(r"\b(childhood|pediatric|paediatric|children|adolescents?)\b", re.I)
_ADULT_TITLE = re.compile(r"\badults?\b", re.I)


def stems(text: str) -> set[str]:
    return set(lexical_words(text))


class Retriever:
    def __init__(self, index: Index, embedder: Embedder, settings: Settings):
        index.check_embedder(embedder)
        self.index, self.embedder, self.settings = index, embedder, settings
        self.reranker = (Reranker(settings.reranker, settings.embed_precision)
                         if settings.reranker else None)
        self.lexical = self.lexical_indexes(settings)
        # Share of passages containing each stemmed word: what the corpus is "about".
        counts = sum((self.lexical[kind].document_frequency for kind in KINDS), Counter())
        total = max(len(index.passages), 1)
        self.passage_share = {w: n / total for w, n in counts.items()}
        self._written_for: dict[str, str | None] = {}

    def lexical_indexes(self, settings: Settings, keep: bool = True
                        ) -> dict[Kind, LexicalIndex]:
        """BM25 over each kind's passages, with the settings' k1 and b, kept in the build
        folder after the first open (``keep``; not for the trial values of a fit)."""
        k1, b = settings.bm25_k1, settings.bm25_b
        if keep and hasattr(self.index, "lexical_indexes"):  # Milvus: BM25 in the store
            return self.index.lexical_indexes()

        def texts(kind: Kind) -> list[str]:
            return [self.passage_text(self.index.passages[row]) for row in self.index.rows[kind]]

        if not keep:
            return {kind: LexicalIndex(texts(kind), k1, b) for kind in KINDS}
        return {kind: LexicalIndex.cached(
                    self.index.build / f"bm25-{kind}-k1={k1}-b={b}-{LEXICAL_VERSION}",
                    lambda kind=kind: texts(kind), k1, b)
                for kind in KINDS}

    def passage_text(self, passage) -> str:
        """A passage as BM25 and the reranker read it: its header (document title and
        section) and its text, as the index embedded it."""
        return embedded_text(self.index.documents[passage.doc_id].title, passage.section,
                             passage.text)

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

    def best_cosine(self, text: str) -> float:
        """The cosine of the passage closest to a text, over both kinds."""
        vector = self.embedder.embed([text])[0]
        return max((float(self.index.vectors[self.index.rows[kind][local]] @ vector)
                    for kind in KINDS for local in self.index.search_rows(vector, kind, 1)),
                   default=-1.0)

    def query_vector(self, query: str | SearchQuery, focus_weight: float | None = None
                     ) -> np.ndarray:
        """The embedded query. A follow-up's own words weigh as much as the whole, so the
        earlier topic does not drown what is new; for a self-contained question the words
        rare in the corpus weigh ``focus_weight`` (Settings), so what the corpus always
        talks about does not drown what the question is asking."""
        if isinstance(query, str):
            query = SearchQuery(query)
        weight = 1.0
        focus = query.focus
        if not focus:
            weight = self.settings.focus_weight if focus_weight is None else focus_weight
            focus = self.focus_of(query.text) if weight > 0 else None
        if not focus:
            return self.embedder.embed([query.text])[0]
        whole, own = self.embedder.embed([query.text, focus])
        both = whole + weight * own
        return both / np.linalg.norm(both)

    def candidates(self, query: str | SearchQuery, depth: int,
                   vector: np.ndarray | None = None) -> Candidates:
        """The query vector and the ``depth`` best passages of each kind by cosine (FAISS)
        and by BM25, merged over both kinds so they rank on one scale, with every
        candidate's cosine and BM25 score."""
        query = SearchQuery(query) if isinstance(query, str) else query
        vector = self.query_vector(query) if vector is None else vector
        text = query.lexical or query.text
        words = lexical_words(text)
        dense: list[int] = []
        lexical: list[tuple[float, int]] = []
        bm25: dict[int, float] = {}
        for kind in KINDS:
            rows, index = self.index.rows[kind], self.lexical[kind]
            local = self.index.search_rows(vector, kind, depth)
            # The dense candidates' BM25 scores too: fusion by score, unlike by rank, can
            # use a passage that one ranking did not list.
            best, scores = index.candidates(text, words, depth, local)
            found = [int(rows[r]) for r in local]
            top = [(score, int(rows[r])) for r, score in best]
            dense += found
            lexical += top
            if index.size:
                bm25.update(zip(found, scores))
                bm25.update((r, score) for score, r in top)
        lexical.sort(reverse=True)
        if query.other_sense_docs:  # "CRS" as chronic rhinosinusitis, for a CAR T question
            passages, other = self.index.passages, query.other_sense_docs
            dense = [r for r in dense if passages[r].doc_id not in other]
            lexical = [(s, r) for s, r in lexical if passages[r].doc_id not in other]
        rows = list(dict.fromkeys(dense + [r for _, r in lexical]))
        # Every candidate's cosine in one product; the dense ranking is by it.
        cosine = dict(zip(rows, map(float, self.index.vectors[rows] @ vector))) if rows else {}
        dense.sort(key=lambda r: (cosine[r], r), reverse=True)
        return Candidates(vector=vector, dense=dense, lexical=[r for _, r in lexical],
                          cosine=cosine, bm25=bm25, follow_up=bool(query.focus),
                          cited_docs=query.cited_docs, population=query.population,
                          asked=query.asked)

    def fuse(self, found: Candidates, top_k: int, settings: Settings | None = None
             ) -> dict[Kind, list[ScoredPassage]]:
        """The weighted sum of cosine and relative BM25 score, its cosine taken again after
        feedback from the best first-pass passage; then per kind: nothing if the kind's
        best cosine is below the relevance bar (the corpus does not address the question),
        else its top_k passages above the passage floor, best first."""
        s = settings or self.settings
        best = {kind: max((c for r, c in found.cosine.items()
                           if self.index.passages[r].kind == kind), default=-1.0)
                for kind in KINDS}
        rows = [r for r in found.cosine if best[self.index.passages[r].kind] >= s.relevance_bar]
        hits: dict[Kind, list[ScoredPassage]] = {kind: [] for kind in KINDS}
        if not rows:
            return hits
        lexical = np.array([found.bm25.get(r, 0.0) for r in rows])
        lexical = lexical / max(float(lexical.max()), 1e-9)
        cosine = np.array([found.cosine[r] for r in rows])
        fused = s.dense_weight * cosine + (1 - s.dense_weight) * lexical
        # No feedback for a follow-up: most of its words are the earlier topic's, so the
        # first pass's best passage is about what was already answered, and feeding it
        # back would pull the search further from what is new (with it, the seed's
        # "What about its toxicities?" drew generic CAR T-cell passages; own gold set
        # nDCG@10 0.842 without, 0.840 with).
        if s.feedback_weight > 0 and not found.follow_up:
            moved = found.vector + s.feedback_weight * self.index.vectors[rows[int(np.argmax(fused))]]
            moved = moved / np.linalg.norm(moved)
            fused = s.dense_weight * (self.index.vectors[rows] @ moved) + (1 - s.dense_weight) * lexical
        if found.cited_docs and s.cited_prior:  # a follow-up leans towards what was cited
            fused = fused + s.cited_prior * np.array(
                [self.index.passages[r].doc_id in found.cited_docs for r in rows])
        if found.population and s.population_prior:
            # An adult's question is not answered first from "Childhood CML Treatment".
            fused = fused - s.population_prior * np.array(
                [self.written_for(self.index.passages[r].doc_id) not in (None, found.population)
                 for r in rows])
        if found.asked == "treatment" and s.asked_section_prior:
            # "1L tx for HCL?" is answered in "Treatment Options for Hairy Cell Leukemia",
            # not in "Diagnostic Evaluation", which names the disease as often.
            fused = fused + s.asked_section_prior * np.array(
                [treatment_section(self.index.passages[r].section) for r in rows])
        for i in sorted(range(len(rows)), key=lambda i: (-fused[i], rows[i])):
            passage = self.index.passages[rows[i]]
            kept, cosine_i = hits[passage.kind], found.cosine[rows[i]]
            if len(kept) < top_k and cosine_i >= s.min_passage_score:
                kept.append(ScoredPassage(passage=passage, score=cosine_i, fusion=float(fused[i])))
        return hits

    def written_for(self, doc_id: str) -> str | None:
        """The population a document is written for, by its title ("Childhood ...",
        "Adult ..."); None for most."""
        if doc_id not in self._written_for:
            info = self.index.documents.get(doc_id)
            title = info.title if info else ""
            child, adult = bool(_CHILD_TITLE.search(title)), bool(_ADULT_TITLE.search(title))
            self._written_for[doc_id] = ("child" if child and not adult else
                                         "adult" if adult and not child else None)
        return self._written_for[doc_id]

    def retrieve(self, query: str | SearchQuery, top_k: int | None = None
                 ) -> tuple[np.ndarray, dict[Kind, list[ScoredPassage]]]:
        """The query vector and, per kind, its top-k fused passages (see ``fuse``),
        reranked when the settings name a reranker."""
        top_k = top_k or self.settings.top_k
        found = self.candidates(query, depth=candidate_depth(top_k))
        hits = self.fuse(found, top_k)
        if self.reranker:
            scores = self.rerank_scores(query, hits, self.settings.rerank_depth)
            hits = reranked(hits, scores, self.settings.rerank_weight)
        return found.vector, hits

    def rerank_scores(self, query: str | SearchQuery, hits: dict[Kind, list[ScoredPassage]],
                      depth: int) -> dict[str, float]:
        """The reranker's probability for each of the ``depth`` best fused passages
        (passage id -> probability), read with the question's own words."""
        text = query if isinstance(query, str) else query.lexical or query.text
        read = to_rerank(hits, depth)
        texts = [self.passage_text(h.passage) for h in read]
        return dict(zip([h.passage.id for h in read], map(float, self.reranker.score(text, texts))))


def candidate_depth(top_k: int) -> int:
    """How many passages of each kind each ranking contributes for a top_k per kind."""
    return max(4 * top_k, 30)


@dataclass
class Candidates:
    """What one query found, before fusion: rows of the index, best first."""

    vector: np.ndarray
    dense: list[int]  # by cosine, both kinds
    lexical: list[int]  # by BM25 score, both kinds
    cosine: dict[int, float]  # every candidate's cosine with the query
    bm25: dict[int, float]  # every candidate's BM25 score (0: none of the query's words)
    follow_up: bool = False  # the query is a follow-up read with its conversation
    cited_docs: frozenset[str] = frozenset()  # what the previous answer cited
    population: str | None = None  # "child" or "adult", when the question says
    asked: str | None = None  # what the question asks for (sentence_scoring.asked_for)
