"""Scope: does the retrieved evidence address the question? Decided per question.

A cosine bar alone always passes on a large corpus: "carprofen for a cat with
osteosarcoma" finds osteosarcoma passages close enough. So the question's own words are
looked for in the evidence it found (the best passages of each kind, with their document
titles and sections), each weighted by its rarity in the corpus: "osteosarcoma" and
"carprofen" count for much, "dose" for little. The question is out of scope when

- it asks about another species (a veterinary question: the corpus is about people);
- it asks for an administrative task (billing and procedure codes, salaries);
- it names something the corpus never mentions: a name no passage holds (a new drug, a
  brand, a place); not an everyday word (one the embedder's tokenizer holds whole:
  "happen"), not an abbreviation or code, which the corpus may write out, and not a
  clipping of a word it holds ("pembro", "brachy", "adenoCA"). In a corpus too small to
  hold everyday words (fewer than LARGE_CORPUS passages, e.g. eight summaries), an
  everyday word it lacks ("cheek") says nothing about the question and is left out; or
- the weighted share of its words found in the evidence is below ``min_coverage``, or
  below ``rarest_missing_coverage`` when its rarest word (one in fewer than RARE_SHARE of
  the passages: "colchicine" in "colchicine dosing for an acute gout flare?") is not in
  the evidence (Settings.scope_min_coverage and scope_rarest_missing_coverage, calibrated
  by scripts/fit_scope.py on questions written for calibration, never on the gold sets
  that evaluate it).

The words it could not find are named ("The indexed evidence does not mention
carprofen."). An answered question whose rare words are partly missing from the evidence
says which ("Not found in the evidence quoted here: pregnancy.").
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from assistant.abbreviations import unspelled
from assistant.chunking import embedded_text
from assistant.types import Document, ScoredPassage

LARGE_CORPUS = 5_000  # passages from which a missing everyday word says something
EVIDENCE_PASSAGES = 5  # best passages of each kind that the question's words are sought in
# A word this rare in the corpus (share of passages), missing from the evidence, is named
# as not found even when the question is answered.
NAMED_MISSING_SHARE = 0.002
RARE_SHARE = 0.001

_SPECIES = re.compile(
    r"\b(dogs?|puppy|puppies|canine|cats?|kittens?|feline|horses?|equine|foals?|ponies|pony|"
    r"cattle|cows?|sheep|goats?|ferrets?|parrots?|beagles?|collies?|greyhounds?|labradors?|"
    r"retrievers?|poodles?|terriers?|veterinar\w*|vet)\b", re.I)
# Not a veterinary question: a CT ("CAT scan") or horse antithymocyte globulin.
_NOT_SPECIES = re.compile(
    r"\b(?-i:CAT)\b|\bcat[- ]scan|\b(horse|equine)[- ](ATG|anti-?thymocyte|serum|antiserum)",
    re.I)
_ADMINISTRATIVE = re.compile(
    r"\b(ICD-?\d*(-CM)?|CPT|HCPCS|J-?codes?|billing|bill|billed|RVUs?|salary|salaries|"
    r"coinsurance|co-?pay\w*|prior authori[sz]ation)\b", re.I)
# An abbreviation or code the corpus need not hold as typed ("TLRs", "NRG1", "G7").
_ABBREVIATION = re.compile(r"^[A-Z0-9][A-Z0-9\-]*s?$")
# Words that frame a question and say nothing about its subject.
_FRAMING = {
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was",
    "were", "do", "does", "did", "can", "could", "should", "would", "will", "may", "might",
    "list", "describe", "name", "please", "explain", "tell", "give", "roughly", "i", "we",
    "you", "my", "our", "me", "she", "he", "her", "his", "it", "its", "they", "them", "their",
    "there", "this", "that", "these", "those", "get", "any", "also", "still", "now", "yes",
    # Verbs and asides that frame a case's question ("when do most recurrences happen?",
    # "wants to stop TKI. Reasonable? Next step?"): rare in abstracts, never the subject.
    "happen", "happens", "happened", "want", "wants", "wanted", "reasonable", "next",
    "step", "okay", "ok",
}
_NUMBER = re.compile(r"^\d+([.,]\d+)?$")
# "afebrile", "asymptomatic", "nonsmoker", "unresectable"; not "Aetna" (a vowel after "a").
_NEGATION = re.compile(r"^(a(?=[b-df-hj-np-tv-z])|non-?|un)(\w{4,})$")
# Stems that name one population ("child" and "children" stem apart).
_SAME_POPULATION = {"children": "child", "childhood": "child", "pediatr": "child",
                    "paediatr": "child", "kid": "child", "women": "woman", "men": "man",
                    "infant": "infant", "newborn": "infant", "neonat": "infant",
                    "pregnant": "pregnanc"}
# A person named in the question is not what it asks about.
_NAMED_PERSON = re.compile(r"\b(Mr|Mrs|Ms|Miss|Mx|Dr)\.?\s+[A-Z][\w'\-]*")


@dataclass
class Scope:
    in_scope: bool
    coverage: float  # weighted share of the question's words found in the evidence
    # Why it is out of scope: "species", "administrative", "no evidence", "unknown" (a
    # name the corpus never uses), "coverage", "rarest missing"; None when in scope.
    reason: str | None = None
    missing: list[str] = field(default_factory=list)  # its rare words not found, as typed
    species: str | None = None  # a non-human species the question asks about
    # Each word as typed, its share of the corpus's passages (its rarest stem), and whether
    # the evidence holds it.
    terms: list[tuple[str, float, bool]] = field(default_factory=list)

    def note(self) -> str | None:
        """What the answer says about what it could not find."""
        if self.reason == "species":
            return (f"The indexed evidence is about people; it does not address "
                    f"{self.species} care.")
        if self.reason == "administrative":
            return ("The indexed evidence is clinical; it does not address billing, coding "
                    "or other administrative questions.")
        if not self.missing:
            return None
        if not self.in_scope:
            return f"The indexed evidence does not mention {_or(self.missing)}."
        return f"Not found in the evidence quoted here: {_or(self.missing)}."


def rarest(terms: Sequence[tuple[str, float, bool]]) -> tuple[str, float, bool] | None:
    """The rarest word the corpus uses, codes aside (a word it never uses is the unknown-
    name rule's), as (word, share, held by the evidence)."""
    named = [t for t in terms if not _coded(t[0]) and t[1] > 0]
    return min(named, key=lambda t: t[1]) if named else None


def _coded(typed: str) -> bool:
    """An abbreviation, code or word with digits ("TLRs", "NRG1", "q3wk", "MgSO4")."""
    return bool(_ABBREVIATION.match(typed) or re.search(r"\d", typed))


def _or(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


class ScopeJudge:
    """Looks for a question's words in its evidence. ``stem`` turns a text into the stemmed
    words that BM25 indexed; ``share`` is the share of passages holding each stem."""

    def __init__(self, stem: Callable[[str], list[str]], share: Mapping[str, float],
                 passages: int, min_coverage: float, rarest_missing_coverage: float = 0.0,
                 everyday_words: set[str] = frozenset()):
        self.stem = lambda text: [_SAME_POPULATION.get(w, w) for w in stem(text)]
        self.share, self.min_coverage = share, min_coverage
        self.rarest_missing_coverage = rarest_missing_coverage
        self.unknown_weight = math.log(max(passages, 2))
        self.vocabulary = sorted(share)
        # Everyday words: never a name the corpus lacks; in a small corpus, left out.
        self.everyday = set(everyday_words)
        self.uninformative = set() if passages >= LARGE_CORPUS else self.everyday

    def never_used(self, typed: str, share: float) -> bool:
        """A word the corpus never uses, nor any word it begins ("pembro" begins
        "pembrolizumab"); abbreviations, codes and words with digits aside."""
        word = typed.lower()
        if share > 0 or len(word) < 4 or _coded(typed) or word in self.everyday:
            return False
        # A negation of a word the corpus uses ("afebrile", "nonsmoker") is no new name.
        negated = _NEGATION.match(word)
        if negated and any(self.share.get(s, 0.0) > 0 for s in self.stem(negated.group(2))):
            return False
        at = bisect.bisect_left(self.vocabulary, word)
        return not (at < len(self.vocabulary) and self.vocabulary[at].startswith(word))

    def weight(self, stem: str) -> float:
        share = self.share.get(stem, 0.0)
        return -math.log(share) if share > 0 else self.unknown_weight

    def judge(self, question: str, hits: Mapping[str, Sequence[ScoredPassage]],
              documents: Mapping[str, Document]) -> Scope:
        species = None if _NOT_SPECIES.search(question) else _SPECIES.search(question)
        words = [(typed, stems) for typed, stems in _typed_words(question, self.stem)
                 if not (typed.lower() in self.uninformative
                         and all(self.share.get(s, 0.0) == 0 for s in stems))]
        evidence: set[str] = set()
        for kind_hits in hits.values():
            for hit in list(kind_hits)[:EVIDENCE_PASSAGES]:
                passage = hit.passage
                title = documents[passage.doc_id].title if passage.doc_id in documents else ""
                evidence.update(self.stem(embedded_text(title, passage.section, passage.text)))

        def held(stem: str) -> bool:  # a clipping ("pembro") is held by what it begins
            return stem in evidence or (
                len(stem) >= 4 and stem not in self.share
                and any(word.startswith(stem) for word in evidence))

        terms = [(typed, min(self.share.get(s, 0.0) for s in stems),
                  any(map(held, stems))) for typed, stems in words]
        # An abbreviation or code that the evidence does not hold as typed is left out:
        # the passages may write it out ("ESA", "PRBC" in a vignette), so its absence says
        # little (calibration: 0.943 of out-of-scope questions declined against 0.914).
        counted = [(typed, stems) for typed, stems in words
                   if not _coded(typed) or any(map(held, stems))]
        total = sum(self.weight(s) for _, stems in counted for s in stems) or 1.0
        found = sum(self.weight(s) for _, stems in counted for s in stems if held(s))
        coverage = found / total if evidence else 0.0
        # Named as missing: rare words, not codes ("58F", "SLNB": the evidence may write
        # them out, as it does "sentinel lymph node biopsy").
        missing = [typed for typed, share, held in terms
                   if not held and share < NAMED_MISSING_SHARE and not _coded(typed)
                   and typed.lower() not in self.everyday]
        unknown = [typed for typed, share, _ in terms if self.never_used(typed, share)]
        rare = rarest(terms)
        rarest_missing = rare is not None and not rare[2] and rare[1] < RARE_SHARE
        reason = ("species" if species else
                  "administrative" if _ADMINISTRATIVE.search(question) else
                  "no evidence" if not evidence else
                  "unknown" if unknown else
                  "coverage" if coverage < self.min_coverage else
                  "rarest missing" if rarest_missing
                  and coverage < self.rarest_missing_coverage else None)
        if reason == "unknown":
            missing = unknown + [w for w in missing if w not in unknown]
        return Scope(reason is None, coverage, reason, missing,
                     species.group(0) if species else None, terms)


def _typed_words(text: str, stem: Callable[[str], list[str]]) -> list[tuple[str, list[str]]]:
    """Each content word of a text as typed, with its stems; "vinblastine/pred" is two."""
    text = _NAMED_PERSON.sub(" ", unspelled(text))
    typed = re.findall(r"[A-Za-z0-9][\w\-+]*", text.replace("/", " "))
    seen: set[str] = set()
    words = []
    for word in typed:
        word = word.rstrip("-+")
        if _NUMBER.match(word) or word.lower() in _FRAMING or word.lower() in seen:
            continue
        seen.add(word.lower())
        stems = stem(word)
        if stems:
            words.append((word, stems))
    return words
