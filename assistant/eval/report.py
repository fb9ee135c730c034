"""The report: report.json (everything), report.md (for people) and PNG plots."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

from assistant.eval import metrics as m
from assistant.eval.runner import ASSISTANT, CURVE_DEPTH, EvalResult

DEFINITIONS = {
    "recall@k": "Document level: share of a question's gold documents among the first k "
                "distinct documents retrieved (a document ranks at its best passage). For the "
                "assistant, the ranking comes from its own retriever (same query as the "
                "answer searched, same embedder, hybrid search and relevance bar), asked for "
                "50 passages per kind, both kinds merged in its fusion order; an "
                "assistant@NAME row is the same assistant over another index (e.g. one "
                "built with a fine-tuned embedder); baselines rank all "
                "passages of the index for the question as asked. Averaged over questions "
                "with gold documents.",
    "nDCG@10": "Binary-relevance normalised discounted cumulative gain over the first 10 "
               "documents: sum of 1/log2(rank+1) over relevant ranks, divided by the same "
               "sum for an ideal ranking of min(gold, 10) relevant documents.",
    "MRR@10": "1/rank of the first gold document among the first 10, else 0.",
    "ROUGE-L F1": "F-measure of the longest common subsequence of tokens between the answer "
                  "and the gold answer (rouge-score package, Porter stemming); with several "
                  "gold answers (BioASQ ideal answers) the best is taken. The assistant's "
                  "answer is its cited sentences in reading order; a baseline's answer is the "
                  "text of its top-ranked passage. An abstention scores 0.",
    "ROUGE-2 F1": "As ROUGE-L, on overlapping word bigrams (BioASQ's measure for ideal answers).",
    "token F1": "SQuAD-style F1 of the bags of normalised tokens (lower case, no punctuation "
                "or articles) of answer and gold answer; best gold answer.",
    "exact factoid / exact list": "BioASQ factoid and list questions: share of the exact "
                                  "answer's items (one for a factoid) of which the answer body "
                                  "contains a synonym, as a run of normalised tokens.",
    "must-mention": "Own gold sets: share of a turn's key terms (`must_mention`, 'a|b' for "
                    "either) that the answer body contains; also reported for follow-ups alone.",
    "body words p50": "Median number of words in the answer body (its cited sentences; for a "
                      "baseline, its text), over in-scope questions.",
    "best passage / lead sentences of 3 best": "Answer baselines from the assistant's own "
                                               "ranking: the best passage's text, and the first "
                                               "sentence of each of the three best passages.",
    "well-formed quoted sentences": "Share of quoted sentences with none of the problems of "
                                    "assistant/sentences.py (starts inside a sentence, list "
                                    "marker or markup, HTML, cross-reference, ends mid-phrase, "
                                    "unbalanced brackets, table row, source citation marker, "
                                    "remark about the document) and that do not start inside a "
                                    "word of their passage. Must be 100%.",
    "repeated in follow-ups": "Share of a follow-up answer's sentences already quoted in an "
                              "earlier answer of the same conversation.",
    "citation validity": "Share of answers in which every [n] of the rendered body resolves to "
                         "a listed reference, every statement's source passage belongs to a "
                         "reference it cites, and every listed reference's passages are among "
                         "the passages the assistant's retriever returned for this question "
                         "(observed during the run) and belong to that reference's document. "
                         "Must be 100%.",
    "citation support": "Share of answer statements with a cited passage that supports them: "
                        "the passage contains at least 80% of the statement's normalised tokens, "
                        "or its embedding has cosine similarity of at least 0.70 with the "
                        "statement's (same embedder). The extractive composer quotes passages, so "
                        "it should be near 100%; the measure matters for generated answers.",
    "ALCE citation recall/precision": "Not computed: they need an entailment (NLI) judge, and "
                                      "no NLI model is available offline on these machines.",
    "answer shape": "Share of answers whose Markdown has the disclaimer, the guidelines section "
                    "before the research section, the references before the disclaimer, and, "
                    "for an abstention, the plain no-evidence notice. Must be 100%.",
    "abstention": "Out of scope: share of questions marked expect_abstain that the assistant "
                  "answered with 'the indexed evidence does not address this'. In scope: share "
                  "of the other questions on which it abstained (lower is better).",
    "answers citing a gold document": "Share of in-scope questions with gold documents whose "
                                      "answer cites at least one of them (references).",
    "latency": "Wall time of Assistant.ask for the question (condense, retrieve, compose), "
               "from the answer's timings; p50 and p95 over questions, in ms. Earlier turns of "
               "a conversation are not included.",
    "ingest time": "Seconds the index build took (load, chunk, embed, store), where the build "
                   "recorded it in <index>/ingest_time.json.",
}

COLUMNS = [("recall@5", "R@5"), ("recall@10", "R@10"), ("recall@20", "R@20"),
           ("ndcg@10", "nDCG@10"), ("mrr@10", "MRR@10"), ("rougeL_f1", "ROUGE-L"),
           ("rouge2_f1", "ROUGE-2"), ("token_f1", "token F1"), ("exact_factoid", "exact factoid"),
           ("exact_list", "exact list"), ("must_mention", "must-mention"),
           ("body_words_median", "body words p50")]


def git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ratios(result: EvalResult, method: str = ASSISTANT) -> dict[str, float]:
    """An assistant's score (the assistant or a variant) over the best baseline's."""
    baselines = [name for name in result.methods if not name.startswith(ASSISTANT)]
    out = {}
    for key, _ in COLUMNS:
        best = max((result.summary[b][key] for b in baselines
                    if not math.isnan(result.summary[b][key])), default=float("nan"))
        mine = result.summary[method][key]
        out[key] = mine / best if best and not math.isnan(best) else float("nan")
    return out


def summary_table(result: EvalResult) -> list[str]:
    lines = ["| method | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for method in result.methods:
        row = result.summary[method]
        lines.append(f"| {method} | " + " | ".join(_fmt(row[k]) for k, _ in COLUMNS) + " |")
    if any(not name.startswith(ASSISTANT) for name in result.methods):
        for method in [m for m in result.methods if m.startswith(ASSISTANT)]:
            r = ratios(result, method)
            lines.append(f"| **{method} / best baseline** | "
                         + " | ".join(_fmt(r[k], 2) for k, _ in COLUMNS) + " |")
    return lines


def by_type(result: EvalResult) -> dict[str, dict[str, dict[str, float]]]:
    types: dict[str, dict[str, dict[str, float]]] = {}
    for t in sorted({r["type"] or "(none)" for r in result.records}):
        records = [r for r in result.records if (r["type"] or "(none)") == t]
        types[t] = {"questions": {"n": len(records)}}
        for method in result.methods:
            scores = [r["scores"].get(method, {}) for r in records]
            types[t][method] = {k: m.mean([s[k] for s in scores if k in s])
                                for k in ("recall@10", "rougeL_f1", "must_mention", "gold_cited")}
        types[t]["questions"]["abstained"] = m.mean(
            [float(bool(r.get("abstained"))) for r in records if "answer" in r])
    return types


def _worst(result: EvalResult, key: str, n: int) -> list[dict[str, Any]]:
    scored = [r for r in result.records if key in r["scores"].get(ASSISTANT, {})]
    return sorted(scored, key=lambda r: r["scores"][ASSISTANT][key])[:n]


def _question_block(r: dict[str, Any]) -> list[str]:
    s = r["scores"].get(ASSISTANT, {})
    gold = r["gold_answer"] if isinstance(r["gold_answer"], str) else " | ".join(r["gold_answer"])
    lines = [f"#### {r['id']} ({r['type'] or 'no type'})", ""]
    if r["history"]:
        lines.append("Earlier questions: " + " → ".join(f"“{q}”" for q in r["history"]))
    lines += [f"Question: “{r['question']}”  ",
              f"Searched: “{r.get('standalone_query', '')}”  ",
              "Scores: " + ", ".join(f"{k} {_fmt(v)}" for k, v in s.items()
                                     if k != "recall_curve") + "  ",
              f"Gold documents: {', '.join(r['gold_doc_ids']) or '–'}  ",
              "Retrieved documents: "
              + ", ".join(r.get("retrieved", {}).get(ASSISTANT, {}).get("documents", [])[:10]),
              "", f"Gold answer: {gold[:600]}", "", "<details><summary>Answer</summary>", "",
              r.get("answer_markdown", r.get("error", "")), "</details>", ""]
    return lines


def render_markdown(result: EvalResult, data: dict[str, Any]) -> str:
    s = result.summary[ASSISTANT]
    lines = [f"# Evaluation report: {result.name}", "",
             f"{s['questions']} questions, {result.started}, {result.seconds:.0f} s in all. "
             f"Git commit {data['git']['commit']}" + (" (uncommitted changes)" if data["git"]["dirty"] else "")
             + ".", ""]
    lines += ["## Summary", "", *summary_table(result), ""]
    ingest = result.index.get("ingest") or {}
    lines += [
        "| assistant checks | value |", "|---|---|",
        f"| citation validity | {_fmt(s['citation_validity'])} |",
        f"| citation support | {_fmt(s['citation_support'])} |",
        "| ALCE citation recall / precision | not available (no entailment judge offline) |",
        f"| answer shape | {_fmt(s['answer_shape'])} |",
        f"| abstention, out-of-scope questions ({s['out_of_scope_questions']}) | "
        f"{_fmt(s['abstention_out_of_scope'])} |",
        f"| abstention, in-scope questions | {_fmt(s['abstention_in_scope'])} |",
        f"| latency p50 / p95 (ms) | {_fmt(s['latency_p50_ms'], 1)} / {_fmt(s['latency_p95_ms'], 1)} |",
        f"| ingest time (s) | {_fmt(ingest.get('seconds'), 1)} |",
        f"| statements per answer | {_fmt(s['mean_statements'], 2)} |",
        f"| well-formed quoted sentences | {_fmt(s['well_formed'])} |",
        f"| follow-ups: sentences repeated from earlier turns | {_fmt(s['repeated_in_follow_ups'])} |",
        f"| follow-ups: must-mention recall | {_fmt(s['must_mention_follow_up'])} |",
        f"| answers citing a gold document (all / follow-ups) | {_fmt(s.get('gold_cited'))} / "
        f"{_fmt(s.get('gold_cited_follow_up'))} |",
        f"| questions with errors | {s['errors']} |", ""]
    lines += [f"- {note}" for note in result.notes] + ([""] if result.notes else [])
    lines += ["Plots: `recall_at_k.png`, `latency.png`, `per_type.png`.", ""]
    lines += ["## Per question type", "",
              "| type | n | abstained | assistant must-mention | assistant cites gold | "
              + " | ".join(f"{mm} R@10 | {mm} ROUGE-L" for mm in result.methods) + " |",
              "|---|---|---|---|---|" + "---|---|" * len(result.methods)]
    for t, row in data["by_type"].items():
        cells = " | ".join(f"{_fmt(row[mm]['recall@10'])} | {_fmt(row[mm]['rougeL_f1'])}"
                           for mm in result.methods)
        own = row[ASSISTANT]
        lines.append(f"| {t} | {row['questions']['n']} | {_fmt(row['questions']['abstained'])} | "
                     f"{_fmt(own['must_mention'])} | {_fmt(own['gold_cited'])} | {cells} |")
    lines += ["", "## Definitions", ""]
    lines += [f"- **{name}**: {text}" for name, text in DEFINITIONS.items()]
    lines += ["", "## Worst questions", "", "### Lowest recall@10 (assistant)", ""]
    for r in _worst(result, "recall@10", 5):
        lines += _question_block(r)
    lines += ["### Lowest ROUGE-L (assistant)", ""]
    for r in _worst(result, "rougeL_f1", 5):
        lines += _question_block(r)
    failures = [r for r in result.records if r.get("citation_errors") or r.get("shape_errors")
                or (r["expect_abstain"] and not r.get("abstained"))]
    if failures:
        lines += ["### Failed checks (citations, shape, or out-of-scope answered)", ""]
        for r in failures[:10]:
            lines += [f"- {', '.join(r.get('citation_errors', []) + r.get('shape_errors', [])) or 'answered an out-of-scope question'}"]
            lines += _question_block(r)
    manifest = result.index["manifest"]
    lines += ["## Settings", "", "```json", json.dumps(result.settings, indent=1), "```", "",
              "## Index", "", f"Path `{result.index['path']}`, build `{result.index['build']}`.", "",
              "```json", json.dumps({**manifest, "ingest": result.index.get("ingest")}, indent=1),
              "```", ""]
    return "\n".join(lines)


def plot(result: EvalResult, data: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = list(range(1, CURVE_DEPTH + 1))
    for method in result.methods:
        curves = [r["scores"][method]["recall_curve"] for r in result.records
                  if "recall_curve" in r["scores"].get(method, {})]
        if curves:
            ax.plot(ks, [m.mean([c[i] for c in curves]) for i in range(len(ks))],
                    marker=".", label=method)
    ax.set(xlabel="k (documents)", ylabel="recall@k", title=f"Recall@k — {result.name}",
           ylim=(0, 1), xticks=[1, 5, 10, 15, 20])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=120)
    plt.close(fig)
    files.append("recall_at_k.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    latencies = [r["latency_ms"] for r in result.records if r.get("latency_ms") is not None]
    ax.hist(latencies, bins=40, color="tab:blue")
    for q, style in ((50, "--"), (95, ":")):
        if latencies:
            ax.axvline(m.percentile(latencies, q), color="k", linestyle=style, label=f"p{q}")
    ax.set(xlabel="Assistant.ask latency (ms)", ylabel="questions", title="Latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=120)
    plt.close(fig)
    files.append("latency.png")

    types = list(data["by_type"])
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(types) + 4), 4))
    width = 0.8 / len(result.methods)
    for ax, key, label in ((axes[0], "recall@10", "recall@10"), (axes[1], "rougeL_f1", "ROUGE-L F1")):
        for i, method in enumerate(result.methods):
            values = [data["by_type"][t][method][key] for t in types]
            ax.bar([x + i * width for x in range(len(types))],
                   [0 if math.isnan(v) else v for v in values], width, label=method)
        ax.set_xticks([x + width * (len(result.methods) - 1) / 2 for x in range(len(types))])
        ax.set_xticklabels(types, rotation=30, ha="right")
        ax.set(ylabel=label, ylim=(0, 1), title=f"{label} per question type")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "per_type.png", dpi=120)
    plt.close(fig)
    files.append("per_type.png")
    return files


def _clean(value: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_report(result: EvalResult, out: str | Path) -> Path:
    """Write report.json, report.md and the plots into ``out``; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "name": result.name, "started": result.started, "seconds": round(result.seconds, 1),
        "git": result.git or git_commit(), "methods": result.methods, "summary": result.summary,
        "ratio_to_best_baseline": ratios(result) if len(result.methods) > 1 else None,
        "by_type": None, "definitions": DEFINITIONS, "notes": result.notes,
        "settings": result.settings, "index": result.index, "questions": result.records,
    }
    data["by_type"] = by_type(result)
    (out / "report.json").write_text(json.dumps(_clean(data), indent=1, ensure_ascii=False))
    (out / "report.md").write_text(render_markdown(result, data))
    plot(result, data, out)
    return out
