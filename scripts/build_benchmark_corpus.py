"""Build the benchmark index from ../shared/data with the project's own ingest().

    python scripts/build_benchmark_corpus.py [--data ../shared/data] [--index indexes/benchmark]
        [--pdq N] [--pubmedqa N] [--bioasq N]

The three limits build a reduced benchmark for slow machines: every k-th PDQ summary
(N of them), the first N PubMedQA items, the snippets of the first N BioASQ questions
(in the order `assistant eval --limit` takes them, so a limited evaluation finds its gold
documents). The slices are written under <index>/sources/ and ingested from there.

Documents (nothing is copied into the repository; the index lives under indexes/):
- guidelines: the 242 NCI PDQ health-professional summaries (nci_pdq_hp/md);
- research: the 1,000 PubMedQA abstracts (pubmedqa/ori_pqal.json, without their
  conclusions, which are the gold answers) and the BioASQ Task B gold snippets grouped by
  PMID (bioasq_taskb_golden_mirage/Task*B*/*_golden.json).

About 31,600 passages; embedding them takes 10+ minutes on a 2-core CPU. Re-running on an
unchanged corpus embeds nothing (ingest is a sync). The ingest time is written to
<index>/ingest_time.json, which the evaluation report quotes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bioasq_files(data: Path) -> list[Path]:
    return sorted((data / "bioasq_taskb_golden_mirage").rglob("*_golden.json"))


def sources(data: Path, index: Path, pdq: int | None = None, pubmedqa: int | None = None,
            bioasq: int | None = None) -> list[Path]:
    """The files to ingest: the full data, or slices of it written under <index>/sources."""
    pdq_files = sorted((data / "nci_pdq_hp" / "md").glob("*.md"))
    paths: list[Path] = [data / "nci_pdq_hp" / "md"]
    if pdq:
        paths = pdq_files[:: max(1, len(pdq_files) // pdq)][:pdq]
    slices = index / "sources"
    pubmed = data / "pubmedqa" / "ori_pqal.json"
    if pubmedqa:
        items = dict(list(json.loads(pubmed.read_text()).items())[:pubmedqa])
        pubmed = _write(slices / "pubmedqa_slice.json", items)
    paths.append(pubmed)
    if bioasq:
        questions = [q for f in bioasq_files(data) for q in json.loads(f.read_text())["questions"]]
        paths.append(_write(slices / "bioasq_slice_golden.json", {"questions": questions[:bioasq]}))
    else:
        paths += bioasq_files(data)
    return paths


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def main(argv: list[str] | None = None) -> int:
    from assistant.index import ingest
    from assistant.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--index", type=Path, default=ROOT / "indexes" / "benchmark")
    parser.add_argument("--pdq", type=int, help="only N PDQ summaries (every k-th)")
    parser.add_argument("--pubmedqa", type=int, help="only the first N PubMedQA items")
    parser.add_argument("--bioasq", type=int, help="only the snippets of the first N BioASQ questions")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    if not (args.data / "pubmedqa" / "ori_pqal.json").is_file() or not bioasq_files(args.data):
        print(f"error: PubMedQA/BioASQ data not found under {args.data}", file=sys.stderr)
        return 2
    paths = sources(args.data, args.index, args.pdq, args.pubmedqa, args.bioasq)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: data not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    report = ingest(paths, Settings().with_overrides(index_path=args.index),
                    rebuild=args.rebuild, progress=not args.quiet)
    print(report.summary())
    if report.written:
        (args.index / "ingest_time.json").write_text(json.dumps({
            "seconds": round(report.seconds, 1), "passages_embedded": report.passages_embedded,
            "passages_total": report.passages_total, "sources": [str(p) for p in paths]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
