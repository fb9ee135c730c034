"""Composition: retrieved passages into a cited answer, without a language model.

The extractive composer cannot hallucinate: every body sentence is a sentence of a
retrieved passage, quoted with the number of the document it came from. Sentences are
ranked by their similarity to the standalone query (plus shares of their passage's
score and of the query's stemmed words they contain, rare words weighing more), near-duplicates are dropped, guideline sentences phrased as advice become the
"key considerations", and references are numbered in reading order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from assistant.embedding import Embedder
from assistant.index import DocumentInfo
from assistant.retrieval import stems
from assistant.settings import Settings
from assistant.types import (
    NO_EVIDENCE,
    Answer,
    CitedPassage,
    Kind,
    Reference,
    ScoredPassage,
    Section,
    Statement,
)

_ABBREVIATIONS = re.compile(
    r"(\b(e\.g|i\.e|et al|vs|Dr|Fig|Figs|No|approx|ca|cf|Ref|St|Jr|Inc|Ltd|U\.S|U\.K)\.|"
    r"\b[A-Z]\.)$"
)
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_ADVICE = re.compile(
    r"\b(should|recommend\w*|consider\w*|monitor\w*|must|is indicated|are indicated|"
    r"standard of care|first-line|approved|contraindicated|caution|assess\w*)\b", re.I)
_DANGLING = re.compile(r"^(this|these|that|those|it|they|such|however|in addition|also)\b", re.I)
MIN_WORDS, MAX_WORDS = 6, 90
PASSAGE_WEIGHT = 0.25
LEXICAL_WEIGHT = 0.3
DANGLING_PENALTY = 0.08
SENTENCE_CACHE = 50_000


def split_sentences(text: str) -> list[str]:
    """Sentence boundaries that survive 'e.g.', 'et al.' and initials."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n(?=[-*•]\s)", text):
        paragraph = " ".join(paragraph.split())
        start = 0
        for match in _BOUNDARY.finditer(paragraph):
            head = paragraph[start:match.start() + 1]
            if _ABBREVIATIONS.search(head.rstrip("\"')]")):
                continue
            sentences.append(paragraph[start:match.end()].strip())
            start = match.end()
        if paragraph[start:].strip():
            sentences.append(paragraph[start:].strip())
    return sentences


_SOURCE_CITATION = re.compile(r"\[\d+(?:\s*[,\u2013-]\s*\d+)*\]")


def _quotable(sentence: str) -> bool:
    words = sentence.split()
    return (MIN_WORDS <= len(words) <= MAX_WORDS and sentence[-1] in ".!?"
            and sum(c.isalpha() for c in sentence) > len(sentence) / 2
            # a source's own "[3]" would read as a citation of this answer's reference [3]
            and not _SOURCE_CITATION.search(sentence))


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


@dataclass
class _Candidate:
    text: str
    kind: Kind
    hit: ScoredPassage
    score: float = 0.0
    similarity: float = 0.0


class ExtractiveComposer:
    name = "extractive"

    def __init__(self, embedder: Embedder, settings: Settings):
        self.embedder, self.settings = embedder, settings
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

    def compose(self, question: str, standalone_query: str, query_vector: np.ndarray,
                found: dict[Kind, list[ScoredPassage]],
                documents: dict[str, DocumentInfo]) -> Answer:
        candidates = [
            _Candidate(text=s, kind=kind, hit=hit)
            for kind, hits in found.items() for hit in hits
            for s in split_sentences(hit.passage.text) if _quotable(s)
        ]
        vectors = self._embed([c.text for c in candidates])
        weights = _query_term_weights(standalone_query, found)
        total = sum(weights.values()) or 1.0
        for candidate, vector in zip(candidates, vectors):
            candidate.similarity = float(vector @ query_vector)
            overlap = sum(weights.get(t, 0.0) for t in stems(candidate.text)) / total
            candidate.score = (candidate.similarity + PASSAGE_WEIGHT * candidate.hit.score
                               + LEXICAL_WEIGHT * overlap
                               - DANGLING_PENALTY * bool(_DANGLING.match(candidate.text)))
        order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)

        s = self.settings
        chosen: list[int] = []
        statements: dict[str, list[Statement]] = {"guideline": [], "key": [], "research": []}
        limits = {"guideline": s.max_guideline_sentences, "key": s.max_key_points,
                  "research": s.max_research_bullets}
        texts: dict[str, Statement] = {}
        for i in order:
            c = candidates[i]
            if c.similarity < s.min_sentence_score:
                continue
            key = " ".join(c.text.lower().split())
            if key in texts:  # the same sentence in another document: cite both
                texts[key].passage_ids.append(c.hit.passage.id)
                continue
            if any(float(vectors[i] @ vectors[j]) > s.redundancy_threshold for j in chosen):
                continue
            slot = c.kind
            if c.kind == "guideline" and len(statements["guideline"]) >= limits["guideline"]:
                slot = "key" if _ADVICE.search(c.text) else None
            if slot is None or len(statements[slot]) >= limits[slot]:
                continue
            statement = Statement(text=c.text, citations=[0], passage_ids=[c.hit.passage.id])
            statements[slot].append(statement)
            texts[key] = statement
            chosen.append(i)

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
                        text=hit.passage.text, score=round(hit.score, 4)))
                if ref.number not in numbers:
                    numbers.append(ref.number)
            statement.citations = sorted(numbers)
        return list(references.values())
