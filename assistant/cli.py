"""The `assistant` command: ingest, ask, chat. A thin layer over Assistant and ingest()."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from assistant.readers import FORMATS
from assistant.settings import Settings

SEED_QUESTION = (
    "What is the role of Chimeric Antigen Receptor (CAR) T cells in the treatment of "
    "solid organ malignancies?"
)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings().with_overrides(index_path=args.index, top_k=getattr(args, "top_k", None),
                                     composer=getattr(args, "composer", None))


def cmd_ingest(args: argparse.Namespace) -> int:
    from assistant.index import Index, ingest

    if args.from_index:  # a FAISS build loaded into Milvus with its vectors (no embedding)
        settings = _settings(args)
        if settings.store != "milvus" or args.paths:
            raise ValueError("--from-index loads a FAISS index into Milvus: set "
                             "ASSISTANT_STORE=milvus, and give no paths")
        from assistant.milvus import import_index

        print(import_index(Index.open(args.from_index), settings).summary())
        return 0
    if not args.paths:
        raise ValueError("give the files or folders to ingest (or --from-index)")
    report = ingest(args.paths, _settings(args).with_overrides(ocr=args.ocr or None),
                    kind=args.kind, fmt=args.format,
                    rebuild=args.rebuild, progress=not args.quiet)
    print(report.summary())
    return 0


def _open(args: argparse.Namespace):
    from assistant.assistant import Assistant

    return Assistant.open(settings=_settings(args))


def cmd_ask(args: argparse.Namespace) -> int:
    answer = _open(args).ask(args.question)
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        print(answer.to_markdown() if args.markdown else answer.to_text())
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from assistant.assistant import QuestionError

    assistant = _open(args)
    history = []
    print("Clinical follow-up assistant. Ask a question; /new starts over, /quit leaves.")
    while True:
        try:
            question = input("\n> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if question in ("/quit", "/exit"):
            return 0
        if question == "/new":
            history.clear()
            print("(new conversation)")
            continue
        if not question:
            continue
        try:
            answer = assistant.ask(question, history=history)
        except QuestionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        if answer.standalone_query != answer.question:
            print(f"(searched: {answer.standalone_query})")
        print(answer.to_text())
        history.append(answer)


def cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import os

    import uvicorn

    settings = _settings(args).with_overrides(host=args.host, port=args.port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    if args.workers > 1:  # each process builds its app from the environment
        os.environ["ASSISTANT_INDEX_PATH"] = str(settings.index_path)
        os.environ["ASSISTANT_COMPOSER"] = settings.composer
        uvicorn.run("assistant.server:app_from_env", factory=True, host=settings.host,
                    port=settings.port, workers=args.workers)
        return 0
    from assistant.assistant import Assistant
    from assistant.server import create_app

    assistant = Assistant.open(settings=settings)  # a missing index fails here, clearly
    print(f"serving http://{settings.host}:{settings.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(create_app(settings, assistant=assistant), host=settings.host,
                port=settings.port)
    return 0


def _open_with_its_embedder(path: Path, settings):
    """An assistant over another index, with the embedder that index was built with."""
    from assistant.assistant import Assistant
    from assistant.index import Index

    index = Index.open(path)
    return Assistant(index, settings.with_overrides(index_path=path,
                                                    embedder=index.manifest["embedder"]))


def cmd_eval(args: argparse.Namespace) -> int:
    from assistant.eval import evaluate, load_gold, write_report

    items = load_gold(args.questions, args.format, args.limit)
    name = args.out.name if args.out else args.questions.stem.split(".")[0]
    variants = {path.name: _open_with_its_embedder(path, _settings(args))
                for path in args.compare_index or []}
    if args.compare_reranker:  # the assistant (and each compared index) with the reranker
        reranking = _settings(args).with_overrides(reranker=str(args.compare_reranker))
        indexes = [_settings(args).index_path, *(args.compare_index or [])]
        variants.update({("" if n == 0 else f"{path.name}+") + "rerank":
                         _open_with_its_embedder(path, reranking)
                         for n, path in enumerate(indexes)})
    for store in args.compare_store or []:  # the same assistant on another store
        from assistant.assistant import Assistant

        variants[store] = Assistant.open(settings=_settings(args).with_overrides(store=store))
    result = evaluate(_open(args), items, baselines=args.baselines,
                      progress=not args.quiet, name=name, variants=variants)
    out = write_report(result, args.out or Path("eval/reports") / name)
    from assistant.eval.report import summary_table

    print("\n".join(summary_table(result)))
    s = result.summary["assistant"]
    print(f"citation validity {s['citation_validity']:.3f}, answer shape {s['answer_shape']:.3f}, "
          f"latency p50 {s['latency_p50_ms']:.0f} ms; report: {out}/report.md")
    if args.compare_store:
        print(f"{_settings(args).store} store: latency p50 {s['latency_p50_ms']:.0f} ms, "
              f"p95 {s['latency_p95_ms']:.0f} ms")
    for store in args.compare_store or []:
        import numpy as np

        times = [r["variants"][store]["latency_ms"] for r in result.records
                 if r.get("variants", {}).get(store, {}).get("latency_ms") is not None]
        if times:
            print(f"{store} store: latency p50 {np.percentile(times, 50):.0f} ms, "
                  f"p95 {np.percentile(times, 95):.0f} ms")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="assistant", description="Cited guideline-then-research answers to clinical questions.")
    sub = top.add_subparsers(dest="command", required=True)

    def with_index(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--index", type=Path, help="index folder (default: settings.index_path)")
        return p

    def with_composer(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--composer", choices=["extractive", "llm"],
                       help="who writes the answer: quoted sentences (extractive, default) or "
                            "a language model at settings.llm_base_url, citation-checked (llm)")
        return p

    p = with_index(sub.add_parser("ingest", help="load, chunk, embed and store documents"))
    p.add_argument("paths", nargs="*", help="files or folders (.md, .jsonl, PubMedQA/BioASQ "
                   ".json, .pdf, .html); a folder's documents.yaml or documents.csv gives its "
                   "PDFs' and web pages' titles, kinds, years, URLs, DOIs")
    p.add_argument("--kind", choices=["guideline", "research"], help="override the documents' kind")
    p.add_argument("--ocr", action="store_true",
                   help="read PDF pages without text (scans) with tesseract")
    p.add_argument("--format", choices=FORMATS, default="auto")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything into a fresh index")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--from-index", type=Path, metavar="INDEX",
                   help="with ASSISTANT_STORE=milvus: load this FAISS index into Milvus as it "
                        "is, its vectors included (same embedder), instead of ingesting files")
    p.set_defaults(func=cmd_ingest)

    p = with_composer(with_index(sub.add_parser("ask", help="answer one question")))
    p.add_argument("question", nargs="?", default=SEED_QUESTION)
    p.add_argument("--top-k", type=int, dest="top_k")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the structured answer as JSON")
    out.add_argument("--markdown", action="store_true", help="the answer as Markdown")
    p.set_defaults(func=cmd_ask)

    p = with_composer(with_index(
        sub.add_parser("chat", help="interactive session with follow-up questions")))
    p.set_defaults(func=cmd_chat)

    # --- serve (HTTP API and web page): subparser added here -------------------------
    p = with_composer(with_index(
        sub.add_parser("serve", help="HTTP API, OpenAI-compatible API and web page")))
    p.add_argument("--host", help="address to listen on (default: settings.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: settings.port, 8000)")
    p.add_argument("--workers", type=int, default=1,
                   help="API processes, each loading the index; they share the "
                        "conversation store (SQLite file or PostgreSQL)")
    p.set_defaults(func=cmd_serve)

    # --- eval (offline evaluation): subparser added here ------------------------------
    p = with_composer(with_index(sub.add_parser(
        "eval", help="score answers and retrieval against a gold set (see eval/README.md)")))
    p.add_argument("--questions", required=True, type=Path,
                   help="gold set: own JSONL, PubMedQA ori_pqal.json, BioASQ golden JSON "
                        "(file or folder) or MedQuAD JSONL(.gz)")
    p.add_argument("--format", choices=["auto", "jsonl", "pubmedqa", "bioasq", "medquad"],
                   default="auto")
    p.add_argument("--baselines", action="store_true",
                   help="also run BM25, dense and RRF baselines over the same passages")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--compare-index", type=Path, action="append", metavar="INDEX",
                   help="also score the assistant over this index, with the embedder it was "
                        "built with (e.g. a fine-tuned one), as method assistant@NAME; "
                        "may be repeated")
    p.add_argument("--compare-reranker", type=Path, metavar="MODEL",
                   help="also score the assistant (and each --compare-index) with this "
                        "reranker (scripts/train_reranker.py), as assistant@rerank and "
                        "assistant@NAME+rerank")
    p.add_argument("--compare-store", choices=["faiss", "milvus"], action="append",
                   help="also score the assistant on this store (ASSISTANT_MILVUS_* settings "
                        "name the Milvus one), as method assistant@STORE, with its latency")
    p.add_argument("--out", type=Path, help="report folder (default: eval/reports/<name>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    return top


def main(argv: list[str] | None = None) -> int:
    from assistant.assistant import QuestionError
    from assistant.index import IndexError_

    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (QuestionError, IndexError_, ValidationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
