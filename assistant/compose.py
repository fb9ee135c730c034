"""Composition: retrieved passages into a cited answer, without a language model.

The extractive composer cannot hallucinate: every body sentence is a whole sentence of a
retrieved passage (assistant/sentences.py says what is whole and fit to quote), quoted
with the number of the document it came from. Each candidate sentence is scored for
whether it answers the question (assistant/sentence_scoring.py: a logistic regression
fitted on BioASQ 7B-9B, not on resemblance alone); the answer leads with the best one and
adds others while they score close enough to it, within a word budget, skipping
near-duplicates and what the conversation has already shown. Guidelines come first;
guideline sentences phrased as advice become the "key considerations"; references are
numbered in reading order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from assistant.categories import fits, named_in
from assistant.condense import head_of
from assistant.embedding import Embedder
from assistant.index import DocumentInfo
from assistant.retrieval import stems
from assistant.sentence_scoring import (
    FEATURES,
    SentenceContext,
    SentenceScorer,
    about_the_study_only,
    advice,
    answers,
    asked_for,
    asks_about_studies,
    features,
)
from assistant.sentences import passage_sentences, quotable, split_sentences
from assistant.settings import Settings
from assistant.types import (
    NO_EVIDENCE,
    Answer,
    CitedPassage,
    Kind,
    Passage,
    Reference,
    ScoredPassage,
    Section,
    Statement,
    Turn,
)

__all__ = ["ExtractiveComposer", "split_sentences", "Candidate", "candidates_of"]

SENTENCE_CACHE = 50_000
SUBJECT_SHARE = 0.5  # of the subject's words, when the question names a disease category
# A sentence without the dose, rate or treatment that the question asks for
# (sentence_scoring.asked_for) scores this share of its score: it can still lead when
# nothing states one. A design value, not fitted.
ASKED_MISSING = 0.6
# Passages around a passage in its document: (text before, text after), same section.
Neighbours = Callable[[Passage], tuple[str | None, str | None]]


def _query_term_weights(query: str, found: dict[Kind, list[ScoredPassage]]) -> dict[str, float]:
    """Weight of each query word by how rare it is among the retrieved passages: a word
    every passage shares ("CAR", "cell") tells sentences apart less than one few have
    ("solid"). Words no retrieved passage contains cannot be matched and weigh nothing."""
    passages = [stems(hit.passage.text) for hits in found.values() for hit in hits]
    weights = {}
    for term in stems(query):
        df = sum(term in p for p in passages)
        if df:
            weights[term] = math.log(1 + len(passages) / df)
    return weights


def normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


@dataclass
class Candidate:
    text: str
    kind: Kind
    hit: ScoredPassage
    rank: int  # of its passage within its kind
    position: int  # within the passage's whole sentences
    sentences: int
    similarity: float = 0.0
    score: float = 0.0  # probability that it answers the question
    # Share of the query's (rarity-weighted) words in the sentence, its document title and
    # section: a sentence on another disease or drug than the question's has little.
    focus: float = 0.0
    in_category: bool = True  # about the disease category the question names, if any
    study_only: bool = False  # says how a study was done, not what it found


def candidates_of(found: dict[Kind, list[ScoredPassage]],
                  neighbours: Neighbours | None = None) -> list[Candidate]:
    """Every whole, quotable sentence of the retrieved passages."""
    out = []
    for kind, hits in found.items():
        for rank, hit in enumerate(hits):
            before, after = neighbours(hit.passage) if neighbours else (None, None)
            sentences = passage_sentences(hit.passage.text, before, after)
            for position, sentence in enumerate(sentences):
                if quotable(sentence):
                    out.append(Candidate(sentence, kind, hit, rank, position, len(sentences)))
    return out


class ExtractiveComposer:
    name = "extractive"

    def __init__(self, embedder: Embedder, settings: Settings,
                 neighbours: Neighbours | None = None):
        self.embedder, self.settings, self.neighbours = embedder, settings, neighbours
        self.scorer = SentenceScorer.load()
        self._vectors: dict[str, np.ndarray] = {}  # sentence -> vector, across questions

    def _embed(self, sentences: list[str]) -> np.ndarray:
        if not sentences:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        # The cache is only ever added to or replaced, never cleared in place, so a
        # request served on another thread keeps a complete view of what it looked up.
        cache = self._vectors
        missing = list(dict.fromkeys(s for s in sentences if s not in cache))
        fresh = dict(zip(missing, self.embedder.embed(missing)))
        vectors = np.stack([fresh[s] if s in fresh else cache[s] for s in sentences])
        if len(cache) + len(fresh) > SENTENCE_CACHE:
            self._vectors = fresh
        else:
            cache.update(fresh)
        return vectors

    def score(self, standalone_query: str, query_vector: np.ndarray,
              found: dict[Kind, list[ScoredPassage]], documents: dict[str, DocumentInfo],
              question: str = "") -> tuple[list[Candidate], np.ndarray, np.ndarray]:
        """The candidate sentences, their vectors and their feature rows, each candidate's
        ``similarity`` and ``score`` set. ``question``, as typed, says whether a dose, a rate
        or a treatment is asked for; the standalone query only where it asks for none (a
        follow-up's topic may hold "dose")."""
        candidates = candidates_of(found, self.neighbours)
        vectors = self._embed([c.text for c in candidates])
        weights = _query_term_weights(standalone_query, found)
        total = sum(weights.values()) or 1.0
        similarities = vectors @ query_vector if len(candidates) else np.zeros(0)
        best = float(similarities.max()) if len(candidates) else 0.0
        rows = []
        headers: dict[str, tuple[str, set[str]]] = {}  # passage id -> title and section
        studies_asked = asks_about_studies(standalone_query)
        categories = named_in(standalone_query)
        # With a category named, the question's subject ("CAR T cells" in "CAR T cells in
        # solid tumours") must be there too: a PD-1 sentence on solid tumours is not evidence.
        subject = stems(head_of(standalone_query)) if categories else set()
        for c, similarity in zip(candidates, similarities):
            c.similarity = float(similarity)
            words = stems(c.text)
            lexical = sum(weights.get(t, 0.0) for t in words) / total
            # The document title and section say what a sentence is about when it does not
            # name it ("The response rate was 54%." in a summary of hairy cell leukaemia).
            passage = c.hit.passage
            if passage.id not in headers:
                header = f"{documents[passage.doc_id].title} {passage.section}"
                headers[passage.id] = header, stems(header)
            header, header_words = headers[passage.id]
            context = words | header_words
            c.focus = sum(weights.get(t, 0.0) for t in context) / total
            c.study_only = not studies_asked and about_the_study_only(c.text)
            if categories:
                c.in_category = (fits(categories, c.text, header)
                                 and len(subject & context) >= SUBJECT_SHARE * len(subject))
            rows.append(features(c.text, SentenceContext(
                cosine=c.similarity, best_cosine=best, passage_cosine=c.hit.score,
                passage_rank=c.rank, lexical=lexical,
                lexical_context=c.focus,
                position=c.position,
                sentences=c.sentences, section=c.hit.passage.section)))
        rows = np.array(rows, dtype=np.float64).reshape(len(candidates), len(FEATURES))
        asked = asked_for(question or standalone_query, standalone_query)
        for c, p in zip(candidates, self.scorer.score(rows)):
            c.score = float(p) * (1.0 if answers(asked, c.text) else ASKED_MISSING)
        return candidates, vectors, rows

    def select(self, candidates: list[Candidate], vectors: np.ndarray,
               shown: Sequence[str] = ()) -> list[int]:
        """The sentences to quote, best first: the best, then each next one while it scores
        at least ``answer_score_ratio`` of the best and the body stays within
        ``max_answer_words``; never a near-duplicate of one already chosen, nor a sentence
        the conversation has already shown (the best new sentence leads instead)."""
        s = self.settings
        shown_text = " ".join(normalised(t) for t in shown)
        order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)
        order = [i for i in order if candidates[i].similarity >= s.min_sentence_score
                 and candidates[i].score >= s.min_answer_score
                 and candidates[i].focus >= s.min_focus_overlap and candidates[i].in_category
                 and not candidates[i].study_only]
        chosen: list[int] = []
        words = 0
        best = None
        for i in order:
            c = candidates[i]
            if shown_text and normalised(c.text) in shown_text:
                continue  # already said
            if best is None:
                best = c.score
            elif c.score < s.answer_score_ratio * best:
                break
            if any(float(vectors[i] @ vectors[j]) > s.redundancy_threshold for j in chosen):
                continue
            length = len(c.text.split())
            if chosen and words + length > s.max_answer_words:
                continue
            chosen.append(i)
            words += length
        return chosen

    def compose(self, question: str, standalone_query: str, query_vector: np.ndarray,
                found: dict[Kind, list[ScoredPassage]],
                documents: dict[str, DocumentInfo], shown: Sequence[str] = ()) -> Answer:
        candidates, vectors, _ = self.score(standalone_query, query_vector, found, documents,
                                            question)
        chosen = self.select(candidates, vectors, shown)

        s = self.settings
        statements: dict[str, list[Statement]] = {"guideline": [], "key": [], "research": []}
        limits = {"guideline": s.max_guideline_sentences, "key": s.max_key_points,
                  "research": s.max_research_bullets}
        texts: dict[str, Statement] = {}
        for i in chosen:
            c = candidates[i]
            slot = c.kind
            if c.kind == "guideline" and len(statements["guideline"]) >= limits["guideline"]:
                slot = "key" if advice(c.text) else None
            if slot is None or len(statements[slot]) >= limits[slot]:
                continue
            statement = Statement(text=c.text, citations=[0], passage_ids=[c.hit.passage.id])
            statements[slot].append(statement)
            texts[normalised(c.text)] = statement
        # The same sentence in another retrieved document: cite both.
        for c in candidates:
            statement = texts.get(normalised(c.text))
            if statement and c.hit.passage.id not in statement.passage_ids:
                statement.passage_ids.append(c.hit.passage.id)

        hits = {hit.passage.id: hit for hits in found.values() for hit in hits}
        references = self._number(statements, hits, documents)
        guidelines = Section(kind="guideline", heading="From the Guidelines",
                             statements=statements["guideline"], key_points=statements["key"])
        research = Section(kind="research", heading="From the Research",
                           statements=statements["research"])
        abstained = not references
        if abstained:
            guidelines.notice = research.notice = NO_EVIDENCE
        return Answer(question=question, standalone_query=standalone_query,
                      guidelines=guidelines, research=research, references=references,
                      abstained=abstained, composer=self.name)

    @staticmethod
    def _number(statements: dict[str, list[Statement]], hits: dict[str, ScoredPassage],
                documents: dict[str, DocumentInfo]) -> list[Reference]:
        """Number cited documents in reading order; each statement cites its documents."""
        references: dict[str, Reference] = {}
        for statement in [*statements["guideline"], *statements["key"], *statements["research"]]:
            numbers = []
            for passage_id in statement.passage_ids:
                hit = hits[passage_id]
                doc = documents[hit.passage.doc_id]
                ref = references.get(doc.id)
                if ref is None:
                    ref = references[doc.id] = Reference(
                        number=len(references) + 1, doc_id=doc.id, kind=doc.kind,
                        title=doc.title, source=doc.source, year=doc.year, url=doc.url,
                        pmid=doc.pmid, doi=doc.doi, passages=[])
                if all(p.passage_id != passage_id for p in ref.passages):
                    ref.passages.append(CitedPassage(
                        passage_id=passage_id, section=hit.passage.section,
                        text=hit.passage.text, score=round(hit.score, 4),
                        pages=hit.passage.pages, anchor=hit.passage.anchor))
                if ref.number not in numbers:
                    numbers.append(ref.number)
            statement.citations = sorted(numbers)
        return list(references.values())
