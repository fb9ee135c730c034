"""Condensation: a follow-up question into the standalone query that is searched.

Without a language model: a follow-up that leans on the conversation (a pronoun such as
"its", an opener such as "what about", or too few words of its own) is joined with the
topic of the previous standalone query, so "What about its toxicities?" after a CAR-T
question searches "toxicities — chimeric antigen receptor (CAR) T cells ...".
A self-contained question is searched as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def topic_of(turn: Turn) -> str:
    """The subject of an earlier turn: its standalone query without question framing."""
    return " ".join(content_words(turn.standalone_query or turn.question))


def condense(question: str, history: Sequence[Turn]) -> str:
    question = " ".join(question.split())
    if not history or not needs_context(question):
        return question
    topic = topic_of(history[-1])
    own = " ".join(content_words(_OPENERS.sub("", question))) or question
    # Keep the topic once: a chain of follow-ups must not grow without bound.
    topic_words = [w for w in topic.split() if w.lower() not in own.lower().split()]
    return f"{own} — {' '.join(topic_words)}".strip(" —")
