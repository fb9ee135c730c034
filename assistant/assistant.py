"""The Assistant: one object that every front end shares.

    assistant = Assistant.open("indexes/starter")
    first = assistant.ask("What is the role of CAR T cells in solid tumours?")
    follow = assistant.ask("What about its toxicities?", history=[first])
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from assistant.compose import ExtractiveComposer
from assistant.abbreviations import Abbreviations
from assistant.categories import named_in
from assistant.condense import SearchQuery, condense, conversation_population
from assistant.embedding import load_embedder
from assistant.index import Index
from assistant.retrieval import Retriever, lexical_words
from assistant.scope import ScopeJudge
from assistant.sentence_scoring import asked_for
from assistant.settings import Settings
from assistant.types import Answer, Turn


CATEGORY_DEPTH = 4


class QuestionError(ValueError):
    """The question cannot be asked as given (empty, too long)."""


class Assistant:
    def __init__(self, index: Index, settings: Settings):
        self.settings = settings
        self.index = index
        limit_threads(settings.query_threads)
        self.embedder = load_embedder(settings.embedder, settings.device,
                                      settings.embed_batch_size, settings.embed_precision)
        self.retriever = Retriever(index, self.embedder, settings)
        self.abbreviations = Abbreviations.mine(index.passages, index.vectors)
        self.composer = make_composer(self.embedder, settings, index)
        self.scope = ScopeJudge(lexical_words, self.retriever.passage_share,
                                len(index.passages), settings.scope_min_coverage,
                                settings.scope_rarest_missing_coverage,
                                self.embedder.whole_words())

    @classmethod
    def open(cls, index_path: str | Path | None = None,
             settings: Settings | None = None) -> "Assistant":
        settings = settings or Settings()
        if index_path is not None:
            settings = settings.with_overrides(index_path=Path(index_path))
        return cls(Index.open(settings.index_path, settings), settings)

    def check_question(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise QuestionError("the question is empty: type a clinical question")
        if len(question) > self.settings.max_question_chars:
            raise QuestionError(
                f"the question is {len(question)} characters long; the limit is "
                f"{self.settings.max_question_chars} (ASSISTANT_MAX_QUESTION_CHARS): "
                "ask a shorter, focused question")
        return question.strip()

    def ask(self, question: str, history: Sequence[Turn | Answer] = ()) -> Answer:
        """Answer a question, reading it in the light of earlier turns."""
        *_, last = self._events(question, history, stream=False)
        return last["answer"]

    def ask_stream(self, question: str, history: Sequence[Turn | Answer] = ()
                   ) -> Iterator[dict]:
        """Events for clients that show text as it comes: ``{"type": "delta", "text"}``
        pieces (the language model's text as it is generated, or the rendered Markdown of
        an extractive answer), then ``{"type": "answer", "answer": Answer}``.
        The final answer is the complete, checked one; deltas are only a preview."""
        if hasattr(self.composer, "compose_stream"):
            yield from self._events(question, history, stream=True)
            return
        answer = self.ask(question, history)
        for line in answer.to_markdown().splitlines(keepends=True):
            yield {"type": "delta", "text": line}
        yield {"type": "answer", "answer": answer}

    def search_query(self, question: str, turns: Sequence[Turn], use_model: bool = True
                     ) -> tuple[SearchQuery, str | None]:
        """What is searched for a question in the light of earlier turns, and a note if
        the language model could not condense it. Without a model (or with
        ``use_model=False``) the no-model method of condense.py is used."""
        if use_model and hasattr(self.composer, "condense"):  # see llm.py
            standalone, note = self.composer.condense(question, list(turns))
        else:
            standalone, note = condense(question, list(turns), self.stands_alone), None
        if isinstance(standalone, str):
            standalone = SearchQuery(standalone)
        # The corpus's abbreviations are spelled out, in the sense the question's context
        # fits, for the embedding only ("CRS" -> "CRS (cytokine release syndrome)"): BM25
        # already matches the abbreviation, and the long form's common words ("food and
        # drug administration") only dilute it (BioASQ 9B-10B nDCG@10: 0.801 expanded for
        # both, 0.812 for the embedding only). For both, documents that define the
        # abbreviation in another sense are left out (abbreviations.py).
        reading = self.abbreviations.read(standalone.text, self.embedder.embed)
        expanded = reading.spell_out(standalone.text)
        lexical = standalone.text if expanded != standalone.text else None
        # A named category ("solid tumours") is searched by BM25 with its members too:
        # the passages name the disease, not the category (categories.py); and so is an
        # abbreviation that the corpus only writes out ("HCL").
        also = [c.search_terms for c in named_in(standalone.text)] + list(reading.written)
        if also:
            lexical = " ".join([standalone.text, *also])
        # A follow-up leans towards what the previous answer cited.
        cited = frozenset(turns[-1].cited) if turns and standalone.focus else frozenset()
        return SearchQuery(
            expanded, standalone.focus and reading.spell_out(standalone.focus),
            lexical=lexical, other_sense_docs=reading.other_sense_docs,
            cited_docs=cited, population=conversation_population(question, turns),
            asked=asked_for(question, standalone.text)), note

    def stands_alone(self, text: str) -> bool:
        """Whether a follow-up's own words find evidence by themselves (condense.py)."""
        return self.retriever.best_cosine(text) >= self.settings.follow_up_stands_alone

    def _events(self, question: str, history: Sequence[Turn | Answer], stream: bool
                ) -> Iterator[dict]:
        question = self.check_question(question)
        turns = as_turns(history)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        standalone, note = self.search_query(question, turns)
        timings["condense"] = time.perf_counter() - started
        # A question about a disease category keeps only passages on its members
        # (categories.py), so it reads further down the ranking to find them.
        depth = self.settings.top_k * CATEGORY_DEPTH if named_in(standalone.text) else None
        vector, found = self.retriever.retrieve(standalone, depth)
        # Out of scope: the evidence found does not hold what the question asks about. A
        # follow-up is in scope when its own words or the whole query (with the
        # conversation's topic) are in the evidence: "which toxicities should I watch
        # for?" is generic alone, and a new population may be missing from the topic.
        scope = self.scope.judge(standalone.text, found, self.index.documents)
        if standalone.focus and not scope.in_scope:
            scope = max(scope, self.scope.judge(standalone.focus, found, self.index.documents),
                        key=lambda s: (s.in_scope, s.coverage))
        if not scope.in_scope:
            found = {kind: [] for kind in found}
        timings["retrieve"] = time.perf_counter() - started - timings["condense"]
        args = (question, standalone.text, vector, found, self.index.documents)
        shown = [text for turn in turns for text in turn.shown]
        if stream:
            for event in self.composer.compose_stream(*args, shown=shown):
                if event["type"] == "answer":
                    answer = event["answer"]
                else:
                    yield event
        else:
            answer = self.composer.compose(*args, shown=shown)
        timings["total"] = time.perf_counter() - started
        timings["compose"] = timings["total"] - timings["retrieve"] - timings["condense"]
        answer.timings_ms = {k: round(v * 1000, 2) for k, v in timings.items()}
        if note:
            answer.notes.insert(0, note)
        scope_note = scope.note()
        if scope_note:
            answer.notes.append(scope_note)
        yield {"type": "answer", "answer": answer}


def limit_threads(threads: int | None) -> None:
    """Size torch's and FAISS's thread pools for answering (see Settings.query_threads)."""
    import faiss
    import torch

    if threads:
        torch.set_num_threads(threads)
    faiss.omp_set_num_threads(1)


def as_turns(history: Sequence[Turn | Answer]) -> list[Turn]:
    return [t if isinstance(t, Turn) else Turn(
                question=t.question, standalone_query=t.standalone_query,
                shown=[s.text for s in t.statements()],
                cited=[r.doc_id for r in t.references])
            for t in history]


def make_composer(embedder, settings: Settings, index: Index | None = None):
    """The composer named by settings.composer."""
    neighbours = index.neighbours if index is not None else None
    if settings.composer == "llm":
        from assistant.llm import LLMComposer  # optional: needs a model server

        return LLMComposer(embedder, settings, neighbours)
    return ExtractiveComposer(embedder, settings, neighbours)
