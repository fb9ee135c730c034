"""Sentences of a passage, and whether one can be quoted on its own.

An answer quotes whole sentences. Passages are chunks of a document, so a passage may start
or end inside a sentence (the chunker's overlap or a cut at the window), and real documents
carry lists, table debris, HTML and cross-references. This module is the one place that
says where a sentence begins and ends and what makes it unfit to quote; the composer quotes
only sentences with no problems, and the evaluation counts the problems of what was quoted.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = re.compile(
    r"(\b(e\.g|i\.e|et al|vs|Dr|Fig|Figs|No|approx|ca|cf|Ref|St|Jr|Inc|Ltd|U\.S|U\.K)\.|"
    r"\b[A-Z]\.)$"
)
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]?\s+(?=[\"'“‘(\[]?[A-Z0-9])")
# A source's own reference and evidence-level markers ("...arrest.[21-30]", "[Level of
# evidence B1]"): they would read as this answer's citations, and they hide boundaries.
_SOURCE_MARKERS = re.compile(r"\s*\[(\d+(\s*[,–-]\s*\d+)*|Level of evidence[^\]]*)\]")
_LABEL = re.compile(r"^[A-Z]{2,}(?:[ /&][A-Z]{2,})*:\s+(?=\S)")
_CLOSERS = "\"')]”’"
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
MIN_WORDS, MAX_WORDS = 6, 90
# A list is rejoined with its lead-in ("X presents with: a; b; and c.") when its items are
# short phrases; longer items are sentences of their own.
MAX_ITEM_WORDS = 14
MIN_ITEM_SENTENCE_WORDS = 8
# A finite verb, roughly: what a list item needs to be quoted as a sentence of its own
# ("Capecitabine + mitomycin + radiation therapy." is a regimen, not a statement).
_VERB = re.compile(
    r"\b(is|are|was|were|be|been|has|have|had|may|might|can|could|should|must|will|would|"
    r"does|do|did|found|made|gave|given|led|took|taken|shown|known|seen|became|\w+ed|"
    r"\w+[^s]s)\b", re.I)


def _sentences_of(paragraph: str, keep_markers: bool = False) -> list[str]:
    """Sentence boundaries that survive 'e.g.', 'et al.' and initials."""
    if not keep_markers:
        paragraph = _SOURCE_MARKERS.sub("", paragraph)
    paragraph = " ".join(paragraph.split())
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(paragraph):
        head = paragraph[start:match.start() + 1]
        if _ABBREVIATIONS.search(head.rstrip(_CLOSERS)):
            continue
        sentences.append(paragraph[start:match.end()].strip())
        start = match.end()
    if paragraph[start:].strip():
        sentences.append(paragraph[start:].strip())
    # An abstract's section label is not part of the sentence ("RESULTS: ...", or a cut
    # "SIONS: ..." where a passage starts inside "CONCLUSIONS").
    return [_LABEL.sub("", s) for s in sentences]


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """Paragraphs as (prose, list items): a list's items, whether or not blank lines
    separate them, follow the prose paragraph that leads into them."""
    blocks: list[tuple[str, list[str]]] = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.strip().splitlines()
        prose, items = [], []
        for line in lines:
            if _LIST_ITEM.match(line):
                items.append(_LIST_ITEM.sub("", line).strip())
            elif items:  # a list item wrapped onto the next line
                items[-1] += " " + line.strip()
            else:
                prose.append(line.strip())
        if prose or not blocks:
            blocks.append((" ".join(prose), items))
        else:  # a list paragraph of its own: it belongs to the prose before it
            blocks[-1][1].extend(items)
    return blocks


def _lowercase_first(item: str) -> str:
    """'Splenomegaly.' -> 'splenomegaly' inside a joined list; 'BRAF testing' stays."""
    item = item.strip().rstrip(".;,")
    first = item.split(" ", 1)[0]
    if first[:1].isupper() and first[1:].islower():
        return item[0].lower() + item[1:]
    return item


def join_list(lead_in: str, items: list[str]) -> str:
    parts = [_lowercase_first(i) for i in items if i.strip()]
    if len(parts) > 1:
        parts[-1] = "and " + parts[-1]
    return f"{lead_in} {'; '.join(parts)}."


def split_sentences(text: str, keep_markers: bool = False) -> list[str]:
    """The sentences of a text in order. A list of short items that a paragraph ending in
    ':' leads into is one sentence; other list items are sentences of their own. Bracketed
    reference numbers are removed, unless ``keep_markers`` (a model's own citations)."""
    sentences: list[str] = []
    for prose, items in _blocks(text):
        head = _sentences_of(prose, keep_markers) if prose else []
        short = items and all(len(i.split()) <= MAX_ITEM_WORDS for i in items)
        if head and head[-1].endswith(":") and short:
            head[-1] = join_list(head[-1], items)
            items = []
        sentences += head
        for item in items:  # an item quoted alone must read as a sentence
            sentences += [x for x in _sentences_of(item, keep_markers) if _VERB.search(x)
                          and len(x.split()) >= MIN_ITEM_SENTENCE_WORDS]
    return sentences


# --- what makes a sentence unfit to quote --------------------------------------------

_HTML = re.compile(r"</?[a-zA-Z][^>]*>|&[a-z]+;|&#\d+;")
_MARKUP = re.compile(r"(\*\*|__|\|\s|^#+\s|\]\(|^\s*[-*•]\s)")
_CROSS_REFERENCE = re.compile(
    r"\b(for more information|for more details|refer to the|see the .{0,80}(section|summary)|"
    r"\(see [^)]*\)|described (above|below)|as (noted|described|discussed) (above|below)|"
    r"in the (previous|following|next) section|see table|see figure|summary section)\b", re.I)
_OPEN_ENDING = re.compile(
    r"\b(vs|versus|compared (with|to)|than|and|or|of|with|the|a|an|to|for|in|e\.g|i\.e|"
    r"including|such as)\.$", re.I)
_SOURCE_CITATION = re.compile(r"\[\d+(?:\s*[,\u2013-]\s*\d+)*\]")
# A sentence about the document rather than about patients: it quotes as a false claim,
# or points to a figure or table the answer does not show ("Figure 1 depicts ...").
_META = re.compile(
    r"\b((figure|table|fig\.) \d+|this summary|these sources|this section|"
    r"original publication|the following (table|figure)|(is|are) (summarized|listed|shown|"
    r"described) (below|above|in (table|figure)))\b|^the following (is|are)\b", re.I)


def problems(sentence: str) -> list[str]:
    """Why a sentence cannot be quoted on its own (empty: it can)."""
    found = []
    words = sentence.split()
    if not words:
        return ["empty"]
    first = words[0].strip("\"'([,;:.)]")
    if first[:1].islower() and first.isalpha() and first.islower():
        found.append("starts inside a sentence or word")
    if not (MIN_WORDS <= len(words) <= MAX_WORDS):
        found.append(f"{len(words)} words")
    if sentence.rstrip(_CLOSERS)[-1:] not in (".", "!", "?"):
        found.append("no end punctuation")
    if sum(c.isalpha() for c in sentence) <= len(sentence) / 2:
        found.append("mostly numbers or symbols (a table row)")
    if _HTML.search(sentence):
        found.append("HTML")
    if _MARKUP.search(sentence):
        found.append("list marker or markup")
    if _CROSS_REFERENCE.search(sentence):
        found.append("cross-reference")
    if _OPEN_ENDING.search(sentence.rstrip(_CLOSERS)):
        found.append("ends mid-phrase")
    if _SOURCE_CITATION.search(sentence):  # would read as this answer's reference [n]
        found.append("source's own citation marker")
    if _META.search(sentence):
        found.append("about the document, not the evidence")
    for left, right in ("()", "[]"):
        if sentence.count(left) != sentence.count(right):
            found.append("unbalanced brackets")
            break
    return found


def quotable(sentence: str) -> bool:
    return not problems(sentence)


# --- passages cut out of a document ----------------------------------------------------

def _overlap(before: str, text: str, longest: int = 600) -> int:
    """Length of the longest end of ``before`` that ``text`` starts with: the chunker's
    overlap (it repeats the previous passage's last splits exactly)."""
    for n in range(min(len(before), len(text), longest), 0, -1):
        if before.endswith(text[:n]):
            return n
    return 0


def _starts_sentence(preceding: str, text: str) -> bool:
    """Whether ``text``, following ``preceding`` in the document, starts a sentence."""
    if not preceding.strip() or re.search(r"\n\s*$", preceding):
        return True
    end = _SOURCE_MARKERS.sub("", preceding).rstrip().rstrip(_CLOSERS)
    return (end[-1:] in (".", "!", "?", ":") and not _ABBREVIATIONS.search(end)
            and bool(re.match(r"[\"'“‘(\[]?[A-Z0-9]", text.lstrip())))


def passage_sentences(text: str, before: str | None = None, after: str | None = None
                      ) -> list[str]:
    """The sentences of a passage that are whole in it: the first is dropped when the
    passage starts inside a sentence of the passage before it (``before``, same section),
    the last when it runs on into the passage after it (``after``)."""
    sentences = split_sentences(text)
    if not sentences:
        return []
    if before:
        n = _overlap(before, text)
        preceding = before[: len(before) - n] if n else before
        if not _starts_sentence(preceding, text):
            sentences = sentences[1:]
    if after and sentences:
        n = _overlap(text, after)
        following = after[n:].lstrip()
        # The next passage goes on with the same sentence (lower case, or a number).
        if following and not re.match(r"[A-Z\"'(\[-]", following[0]):
            sentences = sentences[:-1]
    return sentences
