"""Render NCI PDQ Markdown summaries as the documents clinicians actually keep: a web page
(HTML) and a printed PDF (headless Chromium), with a ``documents.yaml`` sidecar naming
each file's title, kind, source, year and URL.

The PDF is laid out the hard way on purpose: two columns (CSS columns), Chromium's own
running header (date, title) and footer (URL, "page/pages"), tables with borders, long
words hyphenated at line ends (soft hyphens), and the references lists of the summary
printed as they are. Used by the tests (tests/test_pdf_html.py), the PDF-versus-Markdown
evaluation (eval/README.md) and benchmarks/pdf_ingest.py.

    python scripts/render_pdq.py ../shared/data/nci_pdq_hp/md/X.md ... --out /tmp/pdq-pdf
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.readers import split_front_matter  # noqa: E402

CSS = """
@page { size: A4; margin: 22mm 16mm; }
body { font: 10pt/1.35 "DejaVu Serif", serif; column-count: 2; column-gap: 9mm;
       text-align: justify; }
h1 { column-span: all; font: bold 17pt "DejaVu Sans", sans-serif; }
h2 { font: bold 14pt "DejaVu Sans", sans-serif; }
h3 { font: bold 12.5pt "DejaVu Sans", sans-serif; }
h4 { font: bold 11.5pt "DejaVu Sans", sans-serif; }
h5, h6 { font: bold 10.5pt "DejaVu Sans", sans-serif; }
table { border-collapse: collapse; width: 100%; font-size: 8pt; margin: 6pt 0;
        text-align: left; overflow-wrap: anywhere; }
td, th { border: 0.6pt solid #444; padding: 2pt 3pt; text-align: left; vertical-align: top; }
"""

_SLUG = re.compile(r"[^a-z0-9]+")
_WORD = re.compile(r"(?<![&#\w])([A-Za-z]{12,})(?![\w;])")


def _anchor(title: str, used: set[str]) -> str:
    base = _SLUG.sub("-", title.lower()).strip("-")[:60] or "section"
    anchor, n = base, 2
    while anchor in used:
        anchor, n = f"{base}-{n}", n + 1
    used.add(anchor)
    return anchor


def _hyphenate(text: str) -> str:
    """Soft hyphens in long words, so that Chromium hyphenates them at line ends."""
    return _WORD.sub(lambda m: m.group(1)[:6] + "\u00ad" + m.group(1)[6:], text)


def pdq_html(markdown_file: Path) -> tuple[str, dict]:
    """A PDQ summary as a standalone web page, and its sidecar metadata."""
    meta, body = split_front_matter(markdown_file.read_text(encoding="utf-8"))
    headings = re.findall(r"^# (.+)$", body, re.M)
    title = next((h for h in headings if "Health Professional Version" in h),
                 headings[0] if headings else meta.get("title", markdown_file.stem))
    body = re.sub(r"^# .+\n", "", body, flags=re.M)  # the title is printed once, below
    updated = re.search(r"Latest Updates to This Summary \((\d\d)/(\d\d)/(\d{4})\)", body)
    rendered = MarkdownIt("commonmark").enable("table").render(body)
    used: set[str] = set()

    def heading(m: re.Match) -> str:
        level, inner = m.group(1), m.group(2)
        text = html.unescape(re.sub(r"<[^>]+>", "", inner))
        return f'<h{level} id="{_anchor(text, used)}">{inner}</h{level}>'

    rendered = re.sub(r"<h([2-6])>(.*?)</h\1>", heading, rendered)
    # Soft hyphens go into text only, never into tags or attributes.
    rendered = re.sub(r">([^<]+)<", lambda m: ">" + _hyphenate(m.group(1)) + "<", rendered)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n{rendered}</body></html>\n")
    sidecar = {"title": title, "kind": "guideline", "source": "National Cancer Institute PDQ",
               "year": int(updated.group(3)) if updated else None, "url": meta.get("url")}
    return page, sidecar


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def print_pdf(html_files: list[Path], out_dir: Path, timeout: float = 300) -> list[Path]:
    """Print each web page to ``out_dir/<stem>.pdf`` with headless Chromium (its default
    header and footer on: date, title, URL and page numbers)."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
    pdfs = []
    with tempfile.TemporaryDirectory() as profile:
        for page in html_files:
            pdf = out_dir / f"{page.stem}.pdf"
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu",
                 f"--user-data-dir={profile}",
                 f"--print-to-pdf={pdf}", page.resolve().as_uri()],
                check=True, capture_output=True, timeout=timeout)
            if not pdf.is_file():
                raise RuntimeError(f"chromium printed nothing for {page}")
            pdfs.append(pdf)
    return pdfs


def render(markdown_files: list[Path], out_dir: Path, pdf: bool = True) -> dict[str, dict]:
    """Write ``out_dir/html/<stem>.html`` (and ``out_dir/pdf/<stem>.pdf``) for each summary,
    each folder with its ``documents.yaml`` sidecar; returns the metadata by stem."""
    (out_dir / "html").mkdir(parents=True, exist_ok=True)
    metadata, pages = {}, []
    for md in markdown_files:
        page, meta = pdq_html(md)
        pages.append(out_dir / "html" / f"{md.stem}.html")
        pages[-1].write_text(page, encoding="utf-8")
        metadata[md.stem] = meta
    folders = {"html": "html"}
    if pdf:
        (out_dir / "pdf").mkdir(exist_ok=True)
        print_pdf(pages, out_dir / "pdf")
        folders["pdf"] = "pdf"
    for folder, ext in folders.items():
        entries = {f"{stem}.{ext}": meta for stem, meta in metadata.items()}
        (out_dir / folder / "documents.yaml").write_text(
            yaml.safe_dump(entries, sort_keys=True, allow_unicode=True))
    return metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("markdown", nargs="+", type=Path, help="PDQ Markdown files or folders")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--html-only", action="store_true")
    args = parser.parse_args()
    files = sorted(f for p in args.markdown for f in (p.glob("*.md") if p.is_dir() else [p]))
    render(files, args.out, pdf=not args.html_only)
    print(f"{len(files)} summaries rendered into {args.out}")


if __name__ == "__main__":
    main()
