"""Condensation: a follow-up question into the standalone query that is searched.

Without a language model: a follow-up that leans on the conversation (a pronoun such as
"its", an opener such as "what about", or too few words of its own) is joined with the
subject of the previous standalone query, so "What about its toxicities?" after "What is
the role of CAR T cells in solid tumours?" searches "toxicities — CAR T cells".
A self-contained question is searched as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

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
    "therapy", "role", "best", "main", "key", "important", "regarding", "concerning",
    *_REFERRING,
}
MIN_OWN_WORDS = 3


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text) if w.lower() not in _STOP]


def needs_context(question: str) -> bool:
    words = [w.lower() for w in _WORD.findall(question)]
    return (
        bool(_OPENERS.match(question))
        or any(w in _REFERRING for w in words)
        or len(content_words(question)) < MIN_OWN_WORDS
    )


_FRAMING = re.compile(
    r"^\s*((what|which|how|why|when|who|where)\s+)?((is|are|was|were|does|do|did|can|could|"
    r"should|would)\s+)?((the|a|an)\s+)?((current\s+)?(role|use|value|place|efficacy|"
    r"evidence|benefit|purpose|indications?|mechanism)\s+(of|for)\s+)?((the|a|an)\s+)?", re.I)
_QUALIFIER = re.compile(r"\s+\b(in|for|among|during|after|before|with|versus|vs|compared)\b\s+", re.I)
MAX_TOPIC_WORDS = 12


def topic_of(turn: Turn) -> str:
    """The subject of an earlier turn: the head of its standalone query, without the
    question framing ("what is the role of") and qualifiers ("in the treatment of ..."),
    so the follow-up's own words are not drowned by the earlier question's context."""
    text = (turn.standalone_query or turn.question).strip().rstrip("?.! ")
    text = _FRAMING.sub("", text, count=1)
    head = _QUALIFIER.split(text, maxsplit=1)[0]
    words = head.split() if len(content_words(head)) >= 1 else text.split()
    return " ".join(words[:MAX_TOPIC_WORDS])


@dataclass(frozen=True)
class SearchQuery:
    """What is searched: the standalone query, and for a follow-up its own words (the
    focus), which retrieval weighs as much as the whole so the earlier topic does not
    drown what is new. ``lexical`` is the text BM25 searches when it differs from ``text``
    (the query before abbreviations were spelled out, see Assistant.search_query)."""

    text: str
    focus: str | None = None
    lexical: str | None = None


def condense(question: str, history: Sequence[Turn]) -> SearchQuery:
    question = " ".join(question.split())
    if not history or not needs_context(question):
        return SearchQuery(question)
    topic = topic_of(history[-1])
    own = " ".join(content_words(_OPENERS.sub("", question)))
    if not own or own.lower() in topic.lower():
        return SearchQuery(topic)
    return SearchQuery(f"{own} — {topic}", focus=own)
