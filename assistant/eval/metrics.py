"""Metrics, each a small pure function (definitions are repeated in every report).

Retrieval is scored at document level: a ranking is a list of document ids, best first,
each id once; ``gold`` is the set of relevant document ids (binary relevance).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

from assistant.sentences import problems, split_sentences
from assistant.types import DISCLAIMER, NO_EVIDENCE, Answer, citation_numbers

# --- retrieval ---------------------------------------------------------------------


def recall_at_k(ranking: Sequence[str], gold: set[str], k: int) -> float:
    """Share of the gold documents found among the first k retrieved."""
    return len(set(ranking[:k]) & gold) / len(gold) if gold else float("nan")


def ndcg_at_k(ranking: Sequence[str], gold: set[str], k: int = 10) -> float:
    """Binary-relevance nDCG: sum of 1/log2(rank+1) over relevant ranks, over its ideal."""
    if not gold:
        return float("nan")
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranking[:k]) if doc in gold)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / ideal


def mrr_at_k(ranking: Sequence[str], gold: set[str], k: int = 10) -> float:
    """1 / rank of the first relevant document within the first k, else 0."""
    if not gold:
        return float("nan")
    for i, doc in enumerate(ranking[:k]):
        if doc in gold:
            return 1 / (i + 1)
    return 0.0


# --- answer against gold -----------------------------------------------------------

_scorer = None


def _rouge():
    global _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer

        _scorer = rouge_scorer.RougeScorer(["rougeL", "rouge2"], use_stemmer=True)
    return _scorer


def rouge(answer: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-L F1 and ROUGE-2 F1 (Porter-stemmed, rouge-score package), best reference."""
    if not references:
        return {"rougeL_f1": float("nan"), "rouge2_f1": float("nan")}
    if not answer.strip():
        return {"rougeL_f1": 0.0, "rouge2_f1": 0.0}
    scores = [_rouge().score(ref, answer) for ref in references]
    return {"rougeL_f1": max(s["rougeL"].fmeasure for s in scores),
            "rouge2_f1": max(s["rouge2"].fmeasure for s in scores)}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans(string.punctuation, " " * len(string.punctuation))


def normalize_tokens(text: str) -> list[str]:
    """SQuAD normalisation: lower case, punctuation and articles removed, split on spaces."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split()


def token_f1(answer: str, references: Sequence[str]) -> float:
    """Bag-of-tokens F1 between answer and reference (SQuAD style), best reference."""
    if not references:
        return float("nan")
    best = 0.0
    pred = Counter(normalize_tokens(answer))
    for ref in references:
        gold = Counter(normalize_tokens(ref))
        common = sum((pred & gold).values())
        if common:
            p, r = common / sum(pred.values()), common / sum(gold.values())
            best = max(best, 2 * p * r / (p + r))
    return best


def _contains(body_tokens: list[str], phrase: str) -> bool:
    """Whether the phrase's normalised tokens occur in order, contiguously, in the body."""
    tokens = normalize_tokens(phrase)
    n = len(tokens)
    return bool(n) and any(body_tokens[i:i + n] == tokens for i in range(len(body_tokens) - n + 1))


def exact_containment(body: str, items: Sequence[Sequence[str]]) -> float:
    """BioASQ factoid and list questions: share of the exact answer's items (one item for a
    factoid) of which the body contains some synonym, as a run of normalised tokens."""
    if not items:
        return float("nan")
    tokens = normalize_tokens(body)
    return sum(any(_contains(tokens, s) for s in item) for item in items) / len(items)


def must_mention_recall(body: str, terms: Sequence[str]) -> float:
    """Share of the gold set's key terms ("a|b": either) that the body contains."""
    if not terms:
        return float("nan")
    tokens = normalize_tokens(body)
    return sum(any(_contains(tokens, alt) for alt in term.split("|")) for term in terms) / len(terms)


def words(text: str) -> int:
    return len(text.split())


def sentence_problems(sentence: str, passages: Sequence[str]) -> list[str]:
    """Why a quoted sentence is not well-formed: the quoting rules of
    assistant/sentences.py, and, checked against the cited passages themselves, that it
    does not start inside a word of its passage."""
    found = problems(sentence)
    for text in passages:
        flat = " ".join(text.split())
        at = flat.find(sentence)
        if at > 0 and flat[at - 1].isalnum():
            found.append("starts inside a word of its passage")
            break
    return found


def first_sentences(passages: Sequence[str], n: int = 3) -> str:
    """The lead sentence of each of the first n passages (a summarisation baseline)."""
    leads = []
    for text in passages[:n]:
        sentences = split_sentences(text)
        if sentences:
            leads.append(sentences[0])
    return " ".join(leads)


# --- the answer's own checks -------------------------------------------------------


def answer_text(answer: Answer) -> str:
    """The answer body that is compared with gold: its cited sentences, in order."""
    return " ".join(s.text for s in answer.statements())


def citation_errors(answer: Answer, retrieved_passage_ids: set[str],
                    passage_docs: dict[str, str]) -> list[str]:
    """Why the answer's citations are not valid (empty list: valid). Valid means every
    [n] in the rendered answer resolves to a listed reference, every statement's
    passages belong to a reference it cites, and every listed reference's passages were
    retrieved for this question (and belong to that reference's document)."""
    errors = []
    numbers = {r.number for r in answer.references}
    md = answer.to_markdown()
    body = md.split("\n", 1)[-1].split("## References", 1)[0]  # without question and list
    for n in citation_numbers(body):
        if n not in numbers:
            errors.append(f"[{n}] resolves to no reference")
    by_passage = {p.passage_id: r for r in answer.references for p in r.passages}
    for s in answer.statements():
        if not s.citations:
            errors.append(f"uncited statement: {s.text[:60]}")
        for pid in s.passage_ids:
            ref = by_passage.get(pid)
            if ref is None or ref.number not in s.citations:
                errors.append(f"passage {pid} is not behind a citation of its statement")
    for r in answer.references:
        for p in r.passages:
            if p.passage_id not in retrieved_passage_ids:
                errors.append(f"reference [{r.number}] passage {p.passage_id} was not retrieved")
            elif passage_docs.get(p.passage_id) != r.doc_id:
                errors.append(f"reference [{r.number}] passage {p.passage_id} is not of {r.doc_id}")
    return errors


def containment(sentence: str, passage: str) -> float:
    """Share of the sentence's normalised tokens that occur in the passage."""
    tokens = normalize_tokens(sentence)
    vocabulary = set(normalize_tokens(passage))
    return sum(t in vocabulary for t in tokens) / len(tokens) if tokens else 0.0


SUPPORT_CONTAINMENT = 0.8
SUPPORT_COSINE = 0.7


def statement_support(sentences: Sequence[str], cited_texts: Sequence[Sequence[str]],
                      sentence_vectors: np.ndarray | None = None,
                      cited_vectors: Sequence[np.ndarray] | None = None) -> list[bool]:
    """A sentence is supported when one of its cited passages contains at least 80% of
    its tokens, or (when vectors are given) has cosine similarity of at least 0.70 with
    it under the index's embedder."""
    supported = []
    for i, (sentence, texts) in enumerate(zip(sentences, cited_texts)):
        ok = any(containment(sentence, t) >= SUPPORT_CONTAINMENT for t in texts)
        if not ok and sentence_vectors is not None and cited_vectors is not None \
                and len(cited_vectors[i]):
            ok = float(np.max(cited_vectors[i] @ sentence_vectors[i])) >= SUPPORT_COSINE
        supported.append(ok)
    return supported


def shape_errors(answer: Answer) -> list[str]:
    """The answer-shape rules of DESIGN.md: disclaimer present (data and Markdown),
    guidelines section before research section, references after both, disclaimer
    after the references, an abstention says so plainly."""
    errors = []
    md = answer.to_markdown()
    if answer.disclaimer != DISCLAIMER or DISCLAIMER not in md:
        errors.append("disclaimer missing")
    positions = [md.find(answer.guidelines.heading), md.find(answer.research.heading),
                 md.find(DISCLAIMER)]
    if -1 in positions or positions != sorted(positions):
        errors.append("sections out of order (guidelines, research, disclaimer)")
    if answer.guidelines.kind != "guideline" or answer.research.kind != "research":
        errors.append("section kinds out of order")
    if answer.references and "References" in md and md.find("References") > positions[2]:
        errors.append("references after the disclaimer")
    if answer.abstained and NO_EVIDENCE not in md:
        errors.append("abstention without the no-evidence notice")
    return errors


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def mean(values: Sequence[float]) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return sum(clean) / len(clean) if clean else float("nan")
