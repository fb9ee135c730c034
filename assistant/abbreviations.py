"""Abbreviations of the indexed corpus, spelled out in queries.

The general-domain embedder does not know that "CRS" is cytokine release syndrome, so a
question written with the abbreviation finds nothing relevant enough. The corpus says it
itself: "cytokine release syndrome (CRS)". Pairs of a long form followed by its short
form in parentheses are mined from the passages (the Schwartz–Hearst heuristic: the
short form's letters appear, in order, among the initials of the words just before the
parenthesis, the first letters matching) and a query's short forms are expanded with the
long form the corpus uses most often.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

_PAREN = re.compile(r"\s\(([A-Za-z][\w\-]{1,9})\)")
_WORDS = re.compile(r"[A-Za-z0-9]+")
_SHORT = re.compile(r"^(?=.*[A-Z])[A-Za-z][A-Za-z0-9\-]{1,9}$")


def _long_form(words: list[str], short: str) -> str | None:
    letters = [c.lower() for c in short if c.isalnum()]
    if len(letters) < 2 or not letters[0].isalpha():
        return None
    for start in range(len(words) - 1, max(-1, len(words) - len(letters) - 4), -1):
        window = words[start:]
        initials = [w[0].lower() for w in window]
        if initials[0] != letters[0] or len(window) > len(letters) + 2:
            continue
        it = iter("".join(w.lower() for w in window))
        if all(c in it for c in letters):  # letters in order within the long form
            if len(window) >= max(2, len(letters) - 2):
                return " ".join(window)
    return None


def mine(texts: Iterable[str]) -> dict[str, str]:
    """Short form -> its most frequent long form in the texts."""
    counts: dict[str, Counter] = {}
    for text in texts:
        for match in _PAREN.finditer(text):
            short = match.group(1)
            if not _SHORT.match(short):
                continue
            before = text[max(0, match.start() - 120):match.start()]
            long = _long_form(_WORDS.findall(before)[-(len(short) + 6):], short)
            if long:
                counts.setdefault(short, Counter())[long.lower()] += 1
    return {short: c.most_common(1)[0][0] for short, c in counts.items()}


def expand(query: str, abbreviations: dict[str, str]) -> str:
    """"How is CRS managed?" -> "How is CRS (cytokine release syndrome) managed?"."""
    def spell(match: re.Match) -> str:
        short = match.group(0)
        long = abbreviations.get(short)
        if not long or long in query.lower():
            return short
        return f"{short} ({long})"

    return re.sub(r"(?<![\w(])[A-Za-z][A-Za-z0-9\-]{1,9}(?![\w)])", spell, query)
