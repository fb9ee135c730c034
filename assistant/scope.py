"""Scope: does the retrieved evidence address the question? Decided per question.

A cosine bar alone always passes on a large corpus: "carprofen for a cat with
osteosarcoma" finds osteosarcoma passages close enough. So the question's own words are
looked for in the evidence it found (the best passages of each kind, with their document
titles and sections), each weighted by its rarity in the corpus: "osteosarcoma" and
"carprofen" count for much, "dose" for little, and a word the corpus never uses for most.
The question is out of scope when

- it asks about another species (a veterinary question: the corpus is about people), or
- the weighted share of its words found in the evidence is below ``min_coverage``
  (Settings.scope_min_coverage, calibrated by scripts/fit_scope.py on questions written
  for calibration, never on the gold sets that evaluate it).

Either way the words it could not find are named ("The indexed evidence does not mention
carprofen or cat."). An answered question whose rare words are partly missing from the
evidence says which ("not found in the evidence: pregnancy").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from assistant.abbreviations import unspelled
from assistant.chunking import embedded_text
from assistant.types import Document, ScoredPassage

EVIDENCE_PASSAGES = 5  # best passages of each kind that the question's words are sought in
# A word this rare in the corpus (share of passages), missing from the evidence, is named
# as not found even when the question is answered.
NAMED_MISSING_SHARE = 0.002

_SPECIES = re.compile(
    r"\b(dogs?|puppy|puppies|canine|cats?|kittens?|feline|horses?|equine|foals?|ponies|pony|"
    r"cattle|cows?|sheep|goats?|ferrets?|parrots?|veterinar\w*|vet)\b", re.I)
# Not a veterinary question: a CT ("CAT scan") or horse antithymocyte globulin.
_NOT_SPECIES = re.compile(
    r"\bCAT\b|\bcat[- ]scan|\b(horse|equine)[- ](ATG|anti-?thymocyte|serum|antiserum)", re.I)
_NUMBER = re.compile(r"^\d+([.,]\d+)?$")
# A person named in the question is not what it asks about.
_NAMED_PERSON = re.compile(r"\b(Mr|Mrs|Ms|Miss|Mx|Dr)\.?\s+[A-Z][\w'\-]*")


@dataclass
class Scope:
    in_scope: bool
    coverage: float  # weighted share of the question's words found in the evidence
    missing: list[str] = field(default_factory=list)  # its rare words not found, as typed
    species: str | None = None  # a non-human species the question asks about

    def note(self) -> str | None:
        """What the answer says about what it could not find."""
        if self.species:
            return (f"The indexed evidence is about people; it does not address "
                    f"{self.species} care{self._mention()}.")
        if not self.missing:
            return None
        if not self.in_scope:
            return f"The indexed evidence does not mention {_or(self.missing)}."
        return f"Not found in the evidence quoted here: {_or(self.missing)}."

    def _mention(self) -> str:
        others = [w for w in self.missing if w.lower() != (self.species or "").lower()]
        return f", and does not mention {_or(others)}" if others else ""


def _or(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


class ScopeJudge:
    """Looks for a question's words in its evidence. ``stem`` turns a text into the stemmed
    words that BM25 indexed; ``share`` is the share of passages holding each stem."""

    def __init__(self, stem: Callable[[str], list[str]], share: Mapping[str, float],
                 passages: int, min_coverage: float):
        self.stem, self.share, self.min_coverage = stem, share, min_coverage
        self.unknown_weight = math.log(max(passages, 2))

    def weight(self, stem: str) -> float:
        share = self.share.get(stem, 0.0)
        return -math.log(share) if share > 0 else self.unknown_weight

    def judge(self, question: str, hits: Mapping[str, Sequence[ScoredPassage]],
              documents: Mapping[str, Document]) -> Scope:
        species = None if _NOT_SPECIES.search(question) else _SPECIES.search(question)
        words = _typed_words(question, self.stem)
        evidence: set[str] = set()
        for kind_hits in hits.values():
            for hit in list(kind_hits)[:EVIDENCE_PASSAGES]:
                passage = hit.passage
                title = documents[passage.doc_id].title if passage.doc_id in documents else ""
                evidence.update(self.stem(embedded_text(title, passage.section, passage.text)))
        total = sum(self.weight(s) for _, stems in words for s in stems) or 1.0
        found = sum(self.weight(s) for _, stems in words for s in stems if s in evidence)
        coverage = found / total if evidence else 0.0
        missing = [typed for typed, stems in words
                   if stems and not any(s in evidence for s in stems)
                   and min(self.share.get(s, 0.0) for s in stems) < NAMED_MISSING_SHARE]
        in_scope = bool(evidence) and coverage >= self.min_coverage and not species
        if species and species.group(0).lower() not in map(str.lower, missing):
            missing.insert(0, species.group(0))
        return Scope(in_scope, coverage, missing, species.group(0) if species else None)


def _typed_words(text: str, stem: Callable[[str], list[str]]) -> list[tuple[str, list[str]]]:
    """Each word of a text as typed, with its stems (none for stopwords and numbers)."""
    typed = re.findall(r"[A-Za-z0-9][\w\-+/]*", _NAMED_PERSON.sub(" ", unspelled(text)))
    seen: set[str] = set()
    words = []
    for word in typed:
        if _NUMBER.match(word) or word.lower() in seen:
            continue
        seen.add(word.lower())
        words.append((word, stem(word)))
    return words
