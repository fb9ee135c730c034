"""Abbreviations of the indexed corpus, spelled out in queries in the sense that fits.

The general-domain embedder does not know that "CRS" is cytokine release syndrome, so a
question written with the abbreviation finds nothing relevant enough. The corpus says it
itself: "cytokine release syndrome (CRS)". Pairs of a long form followed by its short
form in parentheses are mined from the passages (the Schwartz–Hearst heuristic: the short
form's letters appear, in order, in the words just before the parenthesis, the first
letters matching, and each content word of the long form gives the short form a letter
by its initial, which rejects "antenatal clinic attenders" for ANC).

An abbreviation can have several senses in one corpus: "CRS" is also chronic
rhinosinusitis. Each sense is known by the passages that define it; a query takes the
sense whose passages (their mean vector) are closest to the query, only when that sense
is clearly closer than the others and close enough at all (else it is not spelled out),
and the documents that define the abbreviation in another sense are not evidence for it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

_PAREN = re.compile(r"\s\(([A-Za-z][\w\-]{1,9})\)")
_WORDS = re.compile(r"[A-Za-z0-9]+")
_SHORT = re.compile(r"^(?=.*[A-Z])[A-Za-z][A-Za-z0-9\-]{1,9}$")
_IN_QUERY = re.compile(r"(?<![\w(])[A-Za-z][A-Za-z0-9\-]{1,9}(?![\w)])")
# A Roman numeral or letter that numbers something ("stage IV", "grade II", "phase III",
# "type I") is not an abbreviation, though the corpus defines "IV" (intravenous).
_NUMBERED = re.compile(r"\b(stages?|grades?|phases?|types?|class|classes|levels?|tiers?|"
                       r"cycles?|arms?|groups?|cohorts?|parts?|zones?|lines?)\s+$", re.I)
_NUMERAL = re.compile(r"^[IVX]{1,4}[A-Da-d]?$")


def _abbreviations_in(query: str) -> Iterable[re.Match]:
    for match in _IN_QUERY.finditer(query):
        if not (_NUMERAL.match(match.group(0))
                and _NUMBERED.search(query, 0, match.start())):
            yield match


# Words of a long form that need not give the short form a letter.
_MINOR = {"of", "the", "and", "or", "in", "on", "for", "to", "with", "a", "an", "s", "by"}

# Sense choice (set on examples from the benchmark corpus, tests/test_abbreviations.py):
# the query's cosine with a sense's passages must reach SENSE_FLOOR (ONLY_SENSE_FLOOR when
# the corpus knows one sense: "CRS" in "How is CRS in Mr Smith managed?" 0.13, "CPT" as
# cognitive processing therapy in "CPT code for port placement" 0.06) and beat every
# other sense by SENSE_MARGIN; senses whose long forms mean the same (cosine >=
# SAME_SENSE: "complete remission" and "complete response") are one.
SENSE_FLOOR = 0.15
ONLY_SENSE_FLOOR = 0.10
SENSE_MARGIN = 0.05
SAME_SENSE = 0.75


def _long_form(words: list[str], short: str) -> str | None:
    letters = [c.lower() for c in short if c.isalnum()]
    if len(letters) < 2 or not letters[0].isalpha():
        return None
    for start in range(len(words) - 1, max(-1, len(words) - len(letters) - 4), -1):
        window = words[start:]
        if window[0][0].lower() != letters[0] or len(window) > len(letters) + 2:
            continue
        it = iter("".join(w.lower() for w in window))
        if not all(c in it for c in letters):  # letters in order within the long form
            continue
        content = [w[0].lower() for w in window if w.lower() not in _MINOR]
        unused, at = 0, 0
        for initial in content:  # the initials, in order, among the short form's letters
            if initial in letters[at:]:
                at = letters.index(initial, at) + 1
            else:
                unused += 1
        # One content word may go without a letter in a long form of four or more
        # ("immune effector cell associated neurotoxicity syndrome" for ICANS).
        if unused <= (1 if len(content) >= 4 else 0):
            return " ".join(window)
    return None


def definitions(text: str) -> Iterable[tuple[str, str]]:
    """(short form, long form in lower case) for each definition in a text."""
    for match in _PAREN.finditer(text):
        short = match.group(1)
        if not _SHORT.match(short):
            continue
        before = text[max(0, match.start() - 120):match.start()]
        long = _long_form(_WORDS.findall(before)[-(len(short) + 6):], short)
        if long:
            yield short, long.lower()


def mine(texts: Iterable[str]) -> dict[str, str]:
    """Short form -> its most frequent long form in the texts."""
    counts: dict[str, Counter] = {}
    for text in texts:
        for short, long in definitions(text):
            counts.setdefault(short, Counter())[long] += 1
    return {short: c.most_common(1)[0][0] for short, c in counts.items()}


def expand(query: str, abbreviations: dict[str, str]) -> str:
    """"How is CRS managed?" -> "How is CRS (cytokine release syndrome) managed?"."""
    def spell(match: re.Match) -> str:
        short = match.group(0)
        long = abbreviations.get(short)
        if not long or long in query.lower():
            return short
        return f"{short} ({long})"

    spelled, at = [], 0
    for match in _abbreviations_in(query):
        spelled += [query[at:match.start()], spell(match)]
        at = match.end()
    return "".join(spelled) + query[at:]


_SPELLED = re.compile(r"\b([A-Za-z][A-Za-z0-9\-]{1,9}) \(([a-z0-9][^()]*)\)")


def unspelled(text: str) -> str:
    """A query without the long forms that ``expand`` added (they are lower case)."""
    return _SPELLED.sub(r"\1", text)


# Abbreviations that clinicians type and a corpus may use only written out (the PDQ
# summaries never define "HCL"): spelled out, for BM25 too, only when the corpus defines
# no sense of its own. Only forms with one meaning in clinical oncology.
COMMON = {
    "HCL": "hairy cell leukemia", "CML-CP": "chronic myeloid leukemia in chronic phase",
    "ED-SCLC": "extensive-stage small cell lung cancer",
    "LS-SCLC": "limited-stage small cell lung cancer", "DLBCL": "diffuse large B-cell lymphoma",
    "MCL": "mantle cell lymphoma", "MZL": "marginal zone lymphoma",
    "PTCL": "peripheral T-cell lymphoma", "CTCL": "cutaneous T-cell lymphoma",
    "cHL": "classic Hodgkin lymphoma", "NHL": "non-Hodgkin lymphoma",
    "MDS": "myelodysplastic syndromes", "MPN": "myeloproliferative neoplasms",
    "APL": "acute promyelocytic leukemia", "LGG": "low-grade glioma",
    "HGG": "high-grade glioma", "GBM": "glioblastoma", "HCC": "hepatocellular carcinoma",
    "RCC": "renal cell carcinoma", "NSCLC": "non-small cell lung cancer",
    "SCLC": "small cell lung cancer", "CRC": "colorectal cancer", "TNBC":
    "triple-negative breast cancer", "GIST": "gastrointestinal stromal tumor",
    "PRBC": "packed red blood cells", "ESA": "erythropoiesis-stimulating agent",
    "ANC": "absolute neutrophil count", "CXR": "chest x-ray", "TMZ": "temozolomide",
    "NK1": "neurokinin-1", "RRSO": "risk-reducing salpingo-oophorectomy",
    "SLNB": "sentinel lymph node biopsy", "ADT": "androgen deprivation therapy",
    "SBRT": "stereotactic body radiation therapy",
    "TACE": "transarterial chemoembolization", "HSCT": "hematopoietic stem cell transplant",
    "ASCT": "autologous stem cell transplant", "MRD": "minimal residual disease",
}


@dataclass
class Sense:
    long: str
    rows: list[int] = field(default_factory=list)  # passages that define it
    docs: set[str] = field(default_factory=set)  # documents that define it


@dataclass(frozen=True)
class Reading:
    """A query's abbreviations read in context: the sense chosen for each (short -> long,
    spelled out), those left unexpanded because no sense is clearly meant, and the
    documents that define a chosen abbreviation in another sense."""

    senses: dict[str, str]
    unclear: tuple[str, ...] = ()
    other_sense_docs: frozenset[str] = frozenset()
    # Long forms from COMMON (the corpus defines no sense): BM25 searches them too.
    written: tuple[str, ...] = ()

    def spell_out(self, text: str) -> str:
        return expand(text, self.senses)


class Abbreviations:
    """Every sense of every abbreviation defined in the corpus, with where it is defined."""

    def __init__(self, senses: dict[str, list[Sense]], vectors: np.ndarray | None = None):
        self.senses = senses
        self.vectors = vectors
        self._centroids: dict[tuple[str, str], np.ndarray] = {}
        self._same: dict[str, np.ndarray] = {}

    @classmethod
    def mine(cls, passages: Sequence, vectors: np.ndarray | None = None) -> "Abbreviations":
        """From passages with ``text`` and ``doc_id``, in index row order."""
        found: dict[str, dict[str, Sense]] = {}
        for row, passage in enumerate(passages):
            for short, long in definitions(passage.text):
                sense = found.setdefault(short, {}).setdefault(long, Sense(long))
                sense.rows.append(row)
                sense.docs.add(passage.doc_id)
        return cls({short: sorted(by_long.values(), key=lambda s: -len(s.rows))
                    for short, by_long in found.items()}, vectors)

    def __getitem__(self, short: str) -> str:
        return self.senses[short][0].long

    def centroid(self, short: str, sense: Sense) -> np.ndarray:
        key = (short, sense.long)
        if key not in self._centroids:
            mean = self.vectors[sense.rows].mean(axis=0)
            self._centroids[key] = mean / max(float(np.linalg.norm(mean)), 1e-9)
        return self._centroids[key]

    def same_sense(self, short: str, embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Which of an abbreviation's senses mean the same (by their long forms' cosine)."""
        if short not in self._same:
            vectors = embed([sense.long for sense in self.senses[short]])
            self._same[short] = (vectors @ vectors.T) >= SAME_SENSE
        return self._same[short]

    def read(self, query: str, embed: Callable[[list[str]], np.ndarray]) -> Reading:
        """The sense of each of the query's abbreviations that its context fits."""
        typed = list(dict.fromkeys(m.group(0) for m in _abbreviations_in(query)))
        written = {s: COMMON[s] for s in typed if s not in self.senses and s in COMMON
                   and COMMON[s] not in query.lower()}
        shorts = [s for s in typed if s in self.senses]
        if not shorts:
            return Reading(written, written=tuple(written.values()))
        if self.vectors is None:  # no passage vectors: the most frequent sense
            return Reading({s: self[s] for s in shorts} | written,
                           written=tuple(written.values()))
        # Each abbreviation is read in the query with the others spelled out in their
        # most frequent sense ("HD in children: ABVD?" needs ABVD's drugs), and, where
        # the corpus knows several senses, without itself: the embedder has its own
        # favourite reading of a bare "MS" or "CRS", which is not the question's context.
        texts = []
        for short in shorts:
            context = expand(query, {s: self[s] for s in shorts if s != short})
            if not self.same_sense(short, embed).all():
                context = re.sub(rf"(?<![\w(]){re.escape(short)}(?![\w)])", " ", context)
            texts.append(context)
        contexts = embed(texts)
        chosen, unclear, others = {}, [], set()
        for short, context in zip(shorts, contexts):
            senses = self.senses[short]
            same = self.same_sense(short, embed)
            fit = [float(self.centroid(short, s) @ context) for s in senses]
            spelled = [i for i, s in enumerate(senses) if s.long in query.lower()]
            best = spelled[0] if spelled else max(range(len(senses)), key=lambda i: fit[i])
            rivals = [fit[i] for i in range(len(senses)) if not same[best, i]]
            floor = SENSE_FLOOR if rivals else ONLY_SENSE_FLOOR
            if not spelled and (fit[best] < floor
                                or (rivals and fit[best] - max(rivals) < SENSE_MARGIN)):
                unclear.append(short)
                continue
            chosen[short] = senses[best].long
            meant = {doc for i, s in enumerate(senses) if same[best, i] for doc in s.docs}
            others |= {doc for i, s in enumerate(senses) if not same[best, i]
                       for doc in s.docs} - meant
        return Reading(chosen | written, tuple(unclear), frozenset(others),
                       tuple(written.values()))
