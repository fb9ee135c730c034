"""The evaluation runner: a thin front end that asks the shared Assistant every question
and scores what comes back; with ``baselines=True`` the same questions also go through
the baseline retrievers over the same passages (assistant/eval/baselines.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tqdm import tqdm

from assistant.assistant import Assistant, QuestionError
from assistant.eval import metrics as m
from assistant.eval.baselines import BASELINES, documents_of
from assistant.eval.gold import GoldItem
from assistant.types import Answer, Kind, ScoredPassage

K_VALUES = (5, 10, 20)
CURVE_DEPTH = 20  # recall@1..20 is kept for the curves
PASSAGES_PER_KIND = 50  # ranking depth (passages per kind) behind the document ranking
ASSISTANT = "assistant"


@dataclass
class EvalResult:
    name: str
    records: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    methods: list[str]
    settings: dict[str, Any]
    index: dict[str, Any]
    started: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    git: dict[str, Any] = field(default_factory=dict)  # the code that ran, taken at the start


def merged_hits(found: dict[Kind, list[ScoredPassage]]) -> list[ScoredPassage]:
    """Both kinds' passages in the retriever's own (fusion) order: what is ranked."""
    return sorted((h for hs in found.values() for h in hs), key=lambda h: (-h.fusion, -h.score))


def retrieval_scores(ranking: list[str], gold: set[str]) -> dict[str, Any]:
    if not gold:
        return {}
    return {
        **{f"recall@{k}": m.recall_at_k(ranking, gold, k) for k in K_VALUES},
        "ndcg@10": m.ndcg_at_k(ranking, gold, 10),
        "mrr@10": m.mrr_at_k(ranking, gold, 10),
        "recall_curve": [m.recall_at_k(ranking, gold, k) for k in range(1, CURVE_DEPTH + 1)],
    }


# Answers made from the assistant's own ranking, scored as answers beside it: the best
# passage alone, and the first sentence of each of the three best passages.
ANSWER_BASELINES = ("best passage", "lead sentences of 3 best")


def answer_scores(text: str, item: GoldItem) -> dict[str, float]:
    if item.expect_abstain:
        return {}
    scores: dict[str, float] = {"body_words": float(m.words(text))}
    if item.gold_answers:
        scores.update({**m.rouge(text, item.gold_answers),
                       "token_f1": m.token_f1(text, item.gold_answers)})
    if item.exact_answer and item.type in ("factoid", "list"):
        scores[f"exact_{item.type}"] = m.exact_containment(text, item.exact_answer)
    if item.must_mention:
        scores["must_mention"] = m.must_mention_recall(text, item.must_mention)
    return scores


class RecordingRetriever:
    """Passes every call to the assistant's own retriever and keeps the query it was given
    and what it returned, so the runner sees exactly what the answer was built from."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.last: tuple[Any, dict] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def retrieve(self, query: Any, top_k: int | None = None):
        vector, found = self.inner.retrieve(query, top_k)
        self.last = (query, found)
        return vector, found


class Runner:
    def __init__(self, assistant: Assistant, baselines: bool = False):
        self.assistant = assistant
        index = assistant.index
        self.index = index
        self.recorder = RecordingRetriever(assistant.retriever)
        self.passages = {p.id: (row, p) for row, p in enumerate(index.passages)}
        self.passage_docs = {p.id: p.doc_id for p in index.passages}
        self.urls: dict[str, set[str]] = {}
        for d in index.documents.values():
            if d.url:
                self.urls.setdefault(d.url, set()).add(d.id)
        self.baselines = None
        if baselines:
            from assistant.eval.baselines import Baselines

            self.baselines = Baselines(index, assistant.embedder, depth=PASSAGES_PER_KIND * 2)
        self._conversations: dict[tuple[str, ...], Answer] = {}

    def resolve_gold(self, ids: list[str]) -> set[str]:
        """Gold ids are document ids or document URLs (every document with that URL)."""
        return {doc for i in ids
                for doc in ({i} if i in self.index.documents else self.urls.get(i, {i}))}

    def history(self, questions: list[str]) -> list[Answer]:
        """Ask the earlier questions of a conversation in turn (cached by prefix)."""
        answers: list[Answer] = []
        for n in range(len(questions)):
            key = tuple(questions[: n + 1])
            if key not in self._conversations:
                self._conversations[key] = self.assistant.ask(questions[n], history=answers)
            answers.append(self._conversations[key])
        return answers

    def run_one(self, item: GoldItem) -> dict[str, Any]:
        gold = self.resolve_gold(item.gold_doc_ids)
        record: dict[str, Any] = {
            "id": item.id, "type": item.type, "question": item.question,
            "history": item.history, "gold_doc_ids": sorted(gold),
            "gold_in_index": sum(g in self.index.documents for g in gold),
            "gold_answer": item.gold_answer, "expect_abstain": item.expect_abstain,
            "scores": {},
        }
        try:
            earlier = self.history(item.history)
            answer = self.assistant.ask(item.question, history=earlier)
        except QuestionError as exc:
            record["error"] = str(exc)
            return record
        standalone = answer.standalone_query
        query, used = self.recorder.last  # what this answer was built from
        used_ids = {h.passage.id for hs in used.values() for h in hs}
        # The same retriever, query, embedder and relevance bar, only ranked deeper;
        # both kinds merged in the retriever's own (fusion) order.
        _, found = self.recorder.inner.retrieve(query, PASSAGES_PER_KIND)
        hits = merged_hits(found)
        ranking = documents_of([h.passage.id for h in hits], self.passage_docs)

        citation_errors = m.citation_errors(answer, used_ids, self.passage_docs)
        shape_errors = m.shape_errors(answer)
        statements = answer.statements()
        supported = []
        if statements:
            vectors = self.assistant.embedder.embed([s.text for s in statements])
            cited = [[self.passages[p] for p in s.passage_ids if p in self.passages]
                     for s in statements]
            supported = m.statement_support(
                [s.text for s in statements], [[p.text for _, p in c] for c in cited],
                vectors, [self.index.vectors[[row for row, _ in c]] for c in cited])
        text = m.answer_text(answer)
        problems = {s.text: m.sentence_problems(
            s.text, [self.passages[p][1].text for p in s.passage_ids if p in self.passages])
            for s in statements}
        shown = {" ".join(m.normalize_tokens(s.text)) for a in earlier for s in a.statements()}
        record.update({
            "standalone_query": standalone,
            "retrieved": {ASSISTANT: {
                "documents": ranking[:CURVE_DEPTH],
                "passages": [[h.passage.id, round(h.score, 4)] for h in hits[:10]]}},
            "answer": answer.model_dump(mode="json", exclude={
                "references": {"__all__": {"passages": {"__all__": {"text"}}}}}),
            "answer_markdown": answer.to_markdown(),
            "latency_ms": answer.timings_ms.get("total"),
            "timings_ms": answer.timings_ms,
            "abstained": answer.abstained,
            "citation_errors": citation_errors,
            "shape_errors": shape_errors,
            "statements": len(statements),
            "statements_supported": sum(supported),
            "ill_formed": {t: p for t, p in problems.items() if p},
            "repeated": sum(" ".join(m.normalize_tokens(s.text)) in shown for s in statements),
        })
        record["scores"][ASSISTANT] = {**retrieval_scores(ranking, gold),
                                       **answer_scores(text, item)}
        if gold and not item.expect_abstain:  # the answer cites a gold document
            record["scores"][ASSISTANT]["gold_cited"] = float(
                any(r.doc_id in gold for r in answer.references))
        passages = [h.passage.text for h in hits]
        for name, baseline in zip(ANSWER_BASELINES, (" ".join(passages[:1]),
                                                     m.first_sentences(passages, 3))):
            record["scores"][name] = answer_scores(baseline, item)
        if self.baselines is not None:
            for name, ranked in self.baselines.rank(item.question).items():
                ids = [pid for pid, _ in ranked]
                docs = documents_of(ids, self.passage_docs)
                top = self.passages[ids[0]][1].text if ids else ""  # quote the top passage
                record["retrieved"][name] = {"documents": docs[:CURVE_DEPTH],
                                             "passages": [[p, round(s, 4)] for p, s in ranked[:10]]}
                record["scores"][name] = {**retrieval_scores(docs, gold),
                                          **answer_scores(top, item)}
        return record


SCORE_KEYS = ("recall@5", "recall@10", "recall@20", "ndcg@10", "mrr@10",
              "rougeL_f1", "rouge2_f1", "token_f1", "exact_factoid", "exact_list",
              "must_mention", "body_words", "gold_cited")


def summarise(records: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for method in methods:
        scored = [r["scores"].get(method, {}) for r in records]
        summary[method] = {k: m.mean([s[k] for s in scored if k in s]) for k in SCORE_KEYS}
        summary[method]["questions_scored_retrieval"] = sum("recall@10" in s for s in scored)
        summary[method]["questions_scored_answer"] = sum("rougeL_f1" in s for s in scored)
        summary[method]["body_words_median"] = m.percentile(
            [s["body_words"] for s in scored if "body_words" in s], 50)
        follow_ups = [r["scores"].get(method, {}) for r in records if r["history"]]
        summary[method]["must_mention_follow_up"] = m.mean(
            [s["must_mention"] for s in follow_ups if "must_mention" in s])
        summary[method]["gold_cited_follow_up"] = m.mean(
            [s["gold_cited"] for s in follow_ups if "gold_cited" in s])
    answered = [r for r in records if "answer" in r]
    statements = sum(r["statements"] for r in answered)
    latencies = [r["latency_ms"] for r in answered if r["latency_ms"] is not None]
    out_of_scope = [r for r in answered if r["expect_abstain"]]
    in_scope = [r for r in answered if not r["expect_abstain"]]
    share = (lambda rs, test: sum(map(test, rs)) / len(rs) if rs else float("nan"))
    summary[ASSISTANT].update({
        "citation_validity": share(answered, lambda r: not r["citation_errors"]),
        "citation_support": (sum(r["statements_supported"] for r in answered) / statements
                             if statements else float("nan")),
        "answer_shape": share(answered, lambda r: not r["shape_errors"]),
        "abstention_out_of_scope": share(out_of_scope, lambda r: r["abstained"]),
        "abstention_in_scope": share(in_scope, lambda r: r["abstained"]),
        "latency_p50_ms": m.percentile(latencies, 50),
        "latency_p95_ms": m.percentile(latencies, 95),
        "questions": len(records),
        "errors": sum("error" in r for r in records),
        "out_of_scope_questions": len(out_of_scope),
        "mean_statements": statements / len(answered) if answered else float("nan"),
        "well_formed": (1 - sum(len(r["ill_formed"]) for r in answered) / statements
                        if statements else float("nan")),
        "repeated_in_follow_ups": _share_repeated([r for r in answered if r["history"]]),
    })
    return summary


def _share_repeated(records: list[dict[str, Any]]) -> float:
    statements = sum(r["statements"] for r in records)
    return sum(r["repeated"] for r in records) / statements if statements else float("nan")


def evaluate(assistant: Assistant, items: list[GoldItem], baselines: bool = False,
             progress: bool = True, name: str = "eval",
             variants: dict[str, Assistant] | None = None) -> EvalResult:
    """Run every gold question through the assistant (and the baselines) and score it.
    ``variants`` are other assistants (e.g. over an index built with a fine-tuned
    embedder) asked the same questions; each is scored as the method ``assistant@NAME``."""
    from assistant.eval.report import git_commit

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    code = git_commit()
    clock = time.perf_counter()
    records = _run(assistant, items, baselines, progress, "evaluating")
    methods = [ASSISTANT, *(f"{ASSISTANT}@{v}" for v in variants or {}),
               *(BASELINES if baselines else ()), *ANSWER_BASELINES]
    for variant, other in (variants or {}).items():
        for record, theirs in zip(records, _run(other, items, False, progress, variant)):
            record["scores"][f"{ASSISTANT}@{variant}"] = theirs["scores"].get(ASSISTANT, {})
            record.setdefault("retrieved", {})[f"{ASSISTANT}@{variant}"] = theirs.get("retrieved", {}).get(
                ASSISTANT, {})
            record.setdefault("variants", {})[variant] = {
                k: theirs.get(k) for k in ("standalone_query", "latency_ms", "abstained",
                                           "citation_errors", "shape_errors")}
    index = assistant.index
    manifest = {k: v for k, v in index.manifest.items() if k != "documents"}
    result = EvalResult(
        name=name, records=records, summary=summarise(records, methods), methods=methods,
        settings=assistant.settings.model_dump(mode="json"),
        index={"path": str(index.path), "build": index.build.name, "manifest": manifest,
               "ingest": _ingest_time(index.path)},
        started=started, seconds=time.perf_counter() - clock, git=code)
    missing = sum(len(r["gold_doc_ids"]) - r["gold_in_index"] for r in records)
    if missing:
        result.notes.append(f"{missing} gold document ids are not in the index; they count "
                            "as misses for every method")
    return result


def _run(assistant: Assistant, items: list[GoldItem], baselines: bool, progress: bool,
         label: str) -> list[dict[str, Any]]:
    runner = Runner(assistant, baselines=baselines)
    assistant.retriever = runner.recorder
    try:
        return [runner.run_one(item) for item in
                tqdm(items, desc=label, unit="question", disable=not progress)]
    finally:
        assistant.retriever = runner.recorder.inner


def _ingest_time(path) -> dict[str, Any] | None:
    import json
    from pathlib import Path

    file = Path(path) / "ingest_time.json"
    return json.loads(file.read_text()) if file.is_file() else None


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)
