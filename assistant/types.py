"""The nouns of the domain: documents, passages, answers and conversation turns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field, computed_field, model_validator

Kind = Literal["guideline", "research"]
KINDS: tuple[Kind, ...] = ("guideline", "research")

# The project's own disclaimer. It is a computed field of every Answer, so no option,
# prompt or error path can remove it.
DISCLAIMER = (
    "This answer is intended for healthcare professionals. It is assembled automatically "
    "from the indexed guideline and research passages cited above, is supplementary to "
    "clinical judgement and current guidelines, and is not a substitute for them. Verify "
    "every statement against the primary sources before applying it to patient care."
)
FOLLOW_UP_PROMPT = "Have a follow-up question?"
NO_EVIDENCE = "The indexed evidence does not address this question."
NO_GUIDELINE = (
    "No guideline passage in the indexed corpus is relevant enough to answer this question."
)
NO_RESEARCH = (
    "No research passage in the indexed corpus is relevant enough to answer this question."
)


def untitled_name(pmid: str) -> str:
    """What a document with no title of its own is called in the reference list."""
    return f"PubMed article {pmid}"


UNTITLED_NAME = re.compile(r"PubMed article \d+")


@dataclass
class Block:
    """What the PDF and web page readers see: a heading (level 1 = the document's title,
    2, 3, ...) or a paragraph (level 0), with where it is in its source: ``pages`` holds
    (character offset in ``text``, page number) where each of its pages begins (PDF),
    ``anchor`` the id a link to its heading points at (web page)."""

    text: str
    level: int = 0
    pages: list[tuple[int, int]] = field(default_factory=list)
    anchor: str | None = None


class Document(BaseModel):
    """A loaded source document, before chunking."""

    id: str
    title: str
    kind: Kind
    source: str = ""  # organisation (guideline) or journal (research)
    year: int | None = None
    url: str | None = None
    pmid: str | None = None
    doi: str | None = None
    path: str = ""  # file it was loaded from (used to detect deletions on re-ingest)
    # (section title, section text) in document order; section title may be "".
    sections: list[tuple[str, str]]
    # Where each section lies in its source, parallel to ``sections`` (empty for formats
    # without pages or anchors): for a PDF, (character offset, page number) where each of
    # the section's pages begins; for a web page, the id of the section's heading.
    section_pages: list[list[tuple[int, int]]] = []
    section_anchors: list[str | None] = []
    # Digest of the file and what was read with it (PDF and web page): an unchanged file
    # is not read again on re-ingest.
    fingerprint: str = ""

    @property
    def text(self) -> str:
        return "\n\n".join(f"{title}\n{body}" for title, body in self.sections)


class Passage(BaseModel):
    """A chunk of a document that fits the embedder's window."""

    id: str
    doc_id: str
    kind: Kind
    section: str
    text: str
    pages: list[int] = []  # PDF pages the passage is on
    anchor: str | None = None  # web page: the id of its section's heading


class ScoredPassage(BaseModel):
    passage: Passage
    score: float  # cosine similarity with the query: the relevance bar applies to it
    fusion: float = 0.0  # fused cosine and BM25 score: the retrieval order (across kinds)


class Statement(BaseModel):
    """One sentence of an answer body and the references that support it."""

    text: str
    citations: list[int] = Field(min_length=1)
    passage_ids: list[str] = Field(min_length=1)


class Section(BaseModel):
    kind: Kind
    heading: str
    statements: list[Statement] = []
    key_points: list[Statement] = []  # "Key considerations for clinical practice"
    notice: str | None = None  # said plainly when there is no relevant evidence


class CitedPassage(BaseModel):
    passage_id: str
    section: str
    text: str
    score: float
    pages: list[int] = []
    anchor: str | None = None


def pages_label(pages: list[int]) -> str:
    """"p. 12", "pp. 12–13", "pp. 3, 7–9": where cited passages are in a PDF."""
    ranges: list[list[int]] = []
    for page in sorted(set(pages)):
        if ranges and page == ranges[-1][1] + 1:
            ranges[-1][1] = page
        else:
            ranges.append([page, page])
    if not ranges:
        return ""
    parts = [str(a) if a == b else f"{a}\u2013{b}" for a, b in ranges]
    return ("p. " if len(parts) == 1 and ranges[0][0] == ranges[0][1] else "pp. ") + ", ".join(parts)


class Reference(BaseModel):
    number: int
    doc_id: str
    kind: Kind
    title: str
    source: str
    year: int | None = None
    url: str | None = None
    pmid: str | None = None
    doi: str | None = None
    passages: list[CitedPassage]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pages(self) -> list[int]:
        """The PDF pages of the cited passages (empty for other formats)."""
        return sorted({page for p in self.passages for page in p.pages})

    @property
    def link(self) -> str | None:
        """The URL, pointing at the first cited section when the page has anchors."""
        anchor = next((p.anchor for p in self.passages if p.anchor), None)
        if self.url and anchor and "#" not in self.url:
            return f"{self.url}#{anchor}"
        return self.url

    @property
    def locator(self) -> str:
        """Pages, PMID / DOI / URL, whichever the document has, for the reference list."""
        parts = [pages_label(self.pages)] if self.pages else []
        if self.pmid:
            parts.append(f"PMID: {self.pmid}")
        if self.doi:
            parts.append(f"doi: {self.doi}")
        if self.link:
            parts.append(self.link)
        return ". ".join(parts)


class Turn(BaseModel):
    """One earlier exchange of a conversation, as much as follow-ups need."""

    question: str
    standalone_query: str | None = None
    # What the turn's answer showed (its quoted sentences, or the answer text): a
    # follow-up does not repeat it.
    shown: list[str] = []
    # The documents its answer cited: a follow-up's search leans towards them (a prior).
    cited: list[str] = []


_CITATION = re.compile(r"\[(\d+(?:,\s*\d+)*)\]")


class Answer(BaseModel):
    question: str
    standalone_query: str
    guidelines: Section
    research: Section
    references: list[Reference]
    abstained: bool = False
    composer: str = "extractive"
    timings_ms: dict[str, float] = {}
    # What the language-model composer checked (sentences kept / re-cited / dropped) and
    # anything the reader should know (a fallback to the extractive answer, and why).
    checks: dict[str, int] = {}
    notes: list[str] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def disclaimer(self) -> str:
        return DISCLAIMER

    @computed_field  # type: ignore[prop-decorator]
    @property
    def follow_up_prompt(self) -> str:
        return FOLLOW_UP_PROMPT

    @model_validator(mode="after")
    def _check_invariants(self) -> "Answer":
        if self.guidelines.kind != "guideline" or self.research.kind != "research":
            raise ValueError("sections must be guidelines first, research second")
        numbers = [r.number for r in self.references]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"references must be numbered 1..n, got {numbers}")
        cited: set[int] = set()
        for statement in self.statements():
            cited.update(statement.citations)
        if not cited <= set(numbers):
            raise ValueError(f"citations {sorted(cited - set(numbers))} resolve to no reference")
        if set(numbers) - cited:
            raise ValueError(f"references {sorted(set(numbers) - cited)} are never cited")
        for section, notice in ((self.guidelines, NO_GUIDELINE), (self.research, NO_RESEARCH)):
            if not section.statements and not section.notice:
                section.notice = notice
        return self

    def statements(self) -> list[Statement]:
        """Every cited sentence of the body, in reading order."""
        return [
            *self.guidelines.statements,
            *self.guidelines.key_points,
            *self.research.statements,
        ]

    def to_text(self) -> str:
        from assistant.render import render_text

        return render_text(self)

    def to_markdown(self) -> str:
        from assistant.render import render_markdown

        return render_markdown(self)


def citation_numbers(text: str) -> list[int]:
    """Numbers in [n] or [n, m] markers of a rendered text (for checks and tests)."""
    return [int(n) for group in _CITATION.findall(text) for n in group.split(",")]
