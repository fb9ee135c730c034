"""The nouns of the domain: documents, passages, answers and conversation turns."""

from __future__ import annotations

import re
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

    @property
    def locator(self) -> str:
        """PMID / DOI / URL, whichever the document has, for the reference list."""
        parts = []
        if self.pmid:
            parts.append(f"PMID: {self.pmid}")
        if self.doi:
            parts.append(f"doi: {self.doi}")
        if self.url:
            parts.append(self.url)
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
