"""Benchmark (not a test): PDF ingest rate, in pages per second, on NCI PDQ summaries
printed to PDF by headless Chromium (scripts/render_pdq.py).

    python benchmarks/pdf_ingest.py [--limit 10] [--pdfs FOLDER] [--index /tmp/bench-pdf]

Prints, for the same PDFs: reading alone (assistant/pdf.py: characters, layout,
headings, page starts) in pages/s and MB/s, then a fresh ingest (read + chunk + embed +
store) in pages/s and passages/s, and the time of a re-ingest of the unchanged files
(which reads none of them). ``--pdfs`` reuses a folder rendered before (with its
documents.yaml); otherwise the first ``--limit`` summaries are rendered into a temporary
folder first (not timed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pypdfium2 as pdfium

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant import Settings  # noqa: E402
from assistant.index import ingest  # noqa: E402
from assistant.pdf import read_pdf  # noqa: E402
from scripts.render_pdq import render  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdq", type=Path, default=SHARED / "nci_pdq_hp" / "md")
    parser.add_argument("--limit", type=int, default=10, help="summaries to render")
    parser.add_argument("--pdfs", type=Path, help="a folder of PDFs rendered before")
    parser.add_argument("--index", type=Path, default=Path("/tmp/bench-pdf"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.pdfs
        if folder is None:
            files = sorted(args.pdq.glob("*.md"))[: args.limit]
            if not files:
                print(f"no PDQ summaries at {args.pdq}", file=sys.stderr)
                return 2
            render(files, Path(tmp))
            folder = Path(tmp) / "pdf"
        pdfs = sorted(folder.glob("*.pdf"))
        pages = 0
        for pdf in pdfs:
            document = pdfium.PdfDocument(str(pdf))
            pages += len(document)
            document.close()
        megabytes = sum(p.stat().st_size for p in pdfs) / 1e6

        started = time.perf_counter()
        for pdf in pdfs:
            read_pdf(pdf)
        reading = time.perf_counter() - started
        print(f"read: {len(pdfs)} PDFs, {pages} pages, {megabytes:.1f} MB in {reading:.1f} s: "
              f"{pages / reading:.1f} pages/s, {megabytes / reading:.2f} MB/s")

        shutil.rmtree(args.index, ignore_errors=True)
        settings = Settings(index_path=args.index)
        report = ingest([folder], settings, progress=False)
        print(f"ingest (read + chunk + embed + store): {pages} pages, "
              f"{report.passages_total} passages in {report.seconds:.1f} s: "
              f"{pages / report.seconds:.2f} pages/s, "
              f"{report.passages_total / report.seconds:.1f} passages/s")
        again = ingest([folder], settings, progress=False)
        print(f"re-ingest, unchanged: {again.seconds:.1f} s, {len(again.unchanged)} unchanged, "
              f"{again.passages_embedded} passages embedded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
