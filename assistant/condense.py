"""Condensation: what a clinician typed into the standalone query that is searched.

Without a language model:
- Clinical shorthand is written out ("1L tx" -> "first-line treatment", "mets" ->
  "metastases"); the corpus's own abbreviations are spelled out later, in the sense that
  fits (abbreviations.py).
- A vignette ("61M, new myeloma, creatinine 2.8, fit. Transplant first line?") is searched
  as typed, shorthand written out. Searching only its question and clinical entities
  (ages, sexes, laboratory values dropped) was built and measured worse on the vignettes
  of eval/gold/pdq.jsonl (must-mention 0.259 against 0.389 as typed; eval/README.md).
- A follow-up that leans on the conversation (a pronoun such as "its", an opener such as
  "what about", too few words of its own, or words that find little in the corpus by
  themselves) is joined with the conversation's subject: the previous turn's words and
  the first turn's, so "second line?" after "1L tx for HCL?" searches "second line —
  first-line HCL". A follow-up that names its own subject is searched as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assistant.abbreviations import unspelled
from assistant.types import Turn

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-+/]*")
_REFERRING = {
    "it", "its", "they", "them", "their", "theirs", "this", "that", "these", "those",
    "he", "she", "his", "her", "such", "same", "former", "latter", "there",
}
_OPENERS = re.compile(
    r"^\s*(and|also|but|so|then|what about|how about|and what about|what else|"
    r"any other|anything else|more on|tell me more|why|how so)\b[\s,]*", re.I)
# Words that carry no topic: question words, auxiliaries and generic clinical framing.
_STOP = {
    "a", "an", "the", "of", "in", "on", "for", "to", "and", "or", "with", "by", "at", "from",
    "as", "about", "into", "than", "what", "which", "who", "whom", "whose", "when", "where",
    "why", "how", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did",
    "can", "could", "should", "would", "will", "may", "might", "must", "shall", "has", "have",
    "had", "there", "any", "some", "role", "use", "used", "using", "current", "currently",
    "tell", "me", "please", "explain", "describe", "give", "know", "known", "evidence",
    "also", "else", "more", "other", "patients", "patient", "treatment", "treatments",
    "therapy", "role", "best", "main", "key", "important", "regarding", "concerning", "if",
    "i", "we", "you", "my", "our", "still", "now", "ok", "okay",
    *_REFERRING,
}
MIN_OWN_WORDS = 3

# Shorthand that clinicians type and the literature writes out (case-sensitive forms).
SHORTHAND = {
    "tx": "treatment", "Tx": "treatment", "dx": "diagnosis", "Dx": "diagnosis",
    "hx": "history", "Hx": "history", "sx": "symptoms", "bx": "biopsy", "abx": "antibiotics",
    "ca": "cancer", "Ca": "cancer", "pt": "patient", "Pt": "patient", "pts": "patients",
    "chemo": "chemotherapy", "chemoRT": "chemoradiation", "chemort": "chemoradiation",
    "mets": "metastases", "neurotox": "neurotoxicity", "tox": "toxicity", "vit": "vitamin",
    "dex": "dexamethasone", "adj": "adjuvant", "neoadj": "neoadjuvant", "yrs": "years",
    "yr": "year", "mo": "months", "wks": "weeks", "f/u": "follow-up", "s/p": "after",
    "w/": "with", "w/o": "without", "1L": "first-line", "2L": "second-line",
    "3L": "third-line", "rx": "treatment", "Rx": "treatment", "recs": "recommendations",
    "newly dx": "newly diagnosed", "newly dx'd": "newly diagnosed", "pred": "prednisone",
    "peds": "pediatric", "kids": "children",
}
_SHORTHAND = re.compile(
    r"(?<![\w\-])(" + "|".join(re.escape(k) for k in sorted(SHORTHAND, key=len, reverse=True))
    + r")(?![\w\-])")


def spell_shorthand(text: str) -> str:
    return _SHORTHAND.sub(lambda m: SHORTHAND[m.group(1)], text)


# Contractions ("he's", "there's", "he'd") would leave a stray "s" or "d" as a word.
_CONTRACTION = re.compile(r"(?<=[A-Za-z])['’](s|d|re|ll|ve|m)\b", re.I)


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(_CONTRACTION.sub("", text)) if w.lower() not in _STOP]


def needs_context(question: str, stands_alone: Callable[[str], bool] | None = None) -> bool:
    """Whether a follow-up leans on the conversation. ``stands_alone`` (from the corpus,
    see Assistant.search_query) says whether its own words find evidence by themselves:
    "which toxicities should I watch for?" has three words of its own and finds nothing."""
    words = [w.lower() for w in _WORD.findall(question)]
    return (
        bool(_OPENERS.match(question))
        or any(w in _REFERRING for w in words)
        or len(content_words(question)) < MIN_OWN_WORDS
        or (stands_alone is not None and not stands_alone(question))
    )


_FRAMING = re.compile(
    r"^\s*((what|which|how|why|when|who|where)\s+)?((is|are|was|were|does|do|did|can|could|"
    r"should|would)\s+)?((the|a|an)\s+)?((current\s+)?(role|use|value|place|efficacy|"
    r"evidence|benefit|purpose|indications?|mechanism)\s+(of|for)\s+)?((the|a|an)\s+)?", re.I)
_QUALIFIER = re.compile(r"\s+\b(in|for|among|during|after|before|with|versus|vs|compared)\b\s+", re.I)
MAX_TOPIC_WORDS = 12


def head_of(query: str) -> str:
    """The head of a query, without the question framing ("what is the role of") and
    qualifiers ("in the treatment of ..."): "CAR T cells" in "What is the role of CAR T
    cells in solid tumours?"."""
    text = _FRAMING.sub("", query.strip().rstrip("?.! "), count=1)
    head = _QUALIFIER.split(text, maxsplit=1)[0]
    words = head.split() if len(content_words(head)) >= 1 else text.split()
    return " ".join(words[:MAX_TOPIC_WORDS])


_SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+")
# Case details that say which patient, not what the case is about: ages and sexes ("58F"),
# values and units ("1.5 cm"), the words that introduce them.
_CASE_WORDS = {
    "newly", "new", "diagnosed", "diagnosis", "clinically", "presents", "presenting",
    "history", "fit", "working", "otherwise", "healthy", "well", "year", "years", "old",
    "yo", "male", "female", "man", "woman", "boy", "girl", "no", "not", "cm", "mm", "kg",
    "mg", "ml", "days", "day", "weeks", "months", "ago", "who", "now",
}


def split_vignette(text: str) -> tuple[str, str]:
    """The case and the question of a vignette ("58F, Merkel cell cancer of the cheek,
    1.5 cm. Is SLNB indicated?" -> case, "Is SLNB indicated?"); ("", text) when the text
    is not a case followed by a question."""
    sentences = [s for s in _SENTENCE_BREAK.split(text.strip()) if s]
    asks = [s for s in sentences if s.endswith("?")]
    if len(sentences) < 2 or not asks or len(asks) == len(sentences):
        return "", text
    return " ".join(s for s in sentences if not s.endswith("?")), " ".join(asks)


def case_entities(case: str) -> list[str]:
    """A case's clinical entities: its content words without ages, sexes, values, units
    and the laboratory names that precede a value ("creatinine 2.8")."""
    words = _WORD.findall(case)
    return [w for i, w in enumerate(words)
            if not w[0].isdigit() and w.lower() not in _CASE_WORDS
            and w.lower() not in _STOP
            and not (i + 1 < len(words) and words[i + 1][0].isdigit())]


def subject_words(turn: Turn) -> list[str]:
    """The words that carry an earlier turn's subject: its standalone query's content
    words, without spelled-out abbreviations (they are spelled out again). A vignette's
    subject is its question and its case's clinical entities, not its opening "58F,
    newly diagnosed ...", which would fill the topic before the disease is reached."""
    text = unspelled(turn.standalone_query or turn.question)
    case, ask = split_vignette(text)
    if case:  # the disease first: an ellipsis ("Adjuvant RT dose?") needs it most
        return case_entities(case) + content_words(ask)
    return content_words(text)


_PRONOUNS = {"it", "its", "they", "them", "their", "theirs", "this", "these", "those"}


def conversation_topic(history: Sequence[Turn], question: str = "") -> str:
    """The previous turn's subject, then the first turn's (what the conversation is
    about), without repeats, at most MAX_TOPIC_WORDS words. A pronoun stands for the
    previous question's head ("its toxicities" after "CAR T cells in solid tumours"), so
    then only the head is kept; an ellipsis ("second line?" after "1L tx for HCL?") keeps
    the rest of the previous question, where its disease often is."""
    if _PRONOUNS & {w.lower() for w in _WORD.findall(question)}:
        previous = unspelled(history[-1].standalone_query or history[-1].question)
        case, ask = split_vignette(previous)
        if case:  # "it" is what the case's question is about; "her" the case's patient
            words = content_words(head_of(ask)) + case_entities(case)
            return " ".join(list(dict.fromkeys(words))[:MAX_TOPIC_WORDS])
        return head_of(previous)
    words = subject_words(history[-1])
    if len(history) > 1:
        words = words[:MAX_TOPIC_WORDS // 2] + subject_words(history[0])
    seen: set[str] = set()
    kept = [w for w in words if not (w.lower() in seen or seen.add(w.lower()))]
    return " ".join(kept[:MAX_TOPIC_WORDS])


_CHILD = re.compile(
    r"\b(child|children|childhood|pediatric|paediatric|kids?|infants?|toddlers?|newborns?|"
    r"neonat\w*|adolescents?|boys?|girls?|teen(ager)?s?)\b", re.I)
_ADULT = re.compile(r"\b(adults?|postmenopausal|elderly)\b", re.I)
# "58F", "61M", "9yo", "14-year-old", "9 y/o"
_AGE = re.compile(r"\b(\d{1,3}) ?(?:[MF]\b|yo\b|y/o\b|-?years?-old\b|years? old\b)")
_MONTHS_OLD = re.compile(r"\b\d{1,2}[- ]?(mo|months?)[- ]old\b", re.I)
ADULT_AGE = 18


def population_of(text: str) -> str | None:
    """Whom a question is about, "child" or "adult", when it says so (an age, "in
    children", "adults"); None when it does not."""
    ages = [int(m.group(1)) for m in _AGE.finditer(text)]
    if _MONTHS_OLD.search(text) or any(a < ADULT_AGE for a in ages) or _CHILD.search(text):
        return "child"
    if ages or _ADULT.search(text):
        return "adult"
    return None


def conversation_population(question: str, history: Sequence[Turn]) -> str | None:
    """The question's population, else the latest one the conversation named: "Wants to
    stop TKI?" after "61M, CML ..." is about an adult."""
    for text in [question, *(t.question for t in reversed(history))]:
        if population := population_of(text):
            return population
    return None


@dataclass(frozen=True)
class SearchQuery:
    """What is searched: the standalone query, and for a follow-up its own words (the
    focus), which retrieval weighs as much as the whole so the earlier topic does not
    drown what is new. ``lexical`` is the text BM25 searches when it differs from ``text``
    (the query before abbreviations were spelled out, see Assistant.search_query);
    ``other_sense_docs`` are documents that use one of its abbreviations in another sense,
    which are not evidence for it."""

    text: str
    focus: str | None = None
    lexical: str | None = None
    other_sense_docs: frozenset[str] = frozenset()
    # Documents the previous answer cited: a follow-up's passages from them rank a little
    # higher (Settings.cited_prior), a prior and not a cage.
    cited_docs: frozenset[str] = frozenset()
    # "child" or "adult" when the conversation says: documents written for the other
    # population rank a little lower (Settings.population_prior).
    population: str | None = None
    # What the question asks for (sentence_scoring.asked_for): a treatment question's
    # passages in treatment sections rank a little higher (Settings.asked_section_prior).
    asked: str | None = None


def condense(question: str, history: Sequence[Turn],
             stands_alone: Callable[[str], bool] | None = None) -> SearchQuery:
    text = spell_shorthand(" ".join(question.split()))
    if not history or not needs_context(text, stands_alone):
        return SearchQuery(text)
    topic = conversation_topic(history, text)
    own = " ".join(content_words(_OPENERS.sub("", text)))
    if not own or own.lower() in topic.lower():
        return SearchQuery(topic)
    return SearchQuery(f"{own} — {topic}", focus=own)
