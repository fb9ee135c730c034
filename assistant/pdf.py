"""PDF reader: the text of a PDF as headings and paragraphs in reading order, each with the
page it is on.

Library: pypdfium2 (Apache-2.0/BSD-3, Google's PDFium, the engine of Chrome's PDF viewer):
it opens what Chrome opens, reports each character with its box, font size and weight,
and reads a page of text in about 15 ms, several times faster than the pure-Python
pdfminer.six. Its own text extraction is not used: on PDFs printed by browsers, which
place every glyph separately, it breaks lines between characters. Layout is read here
from the characters' positions:

- characters that follow each other in the page's content stream on one baseline make a
  line (columns are drawn one after the other, so a column's lines are never joined to
  the next column's);
- a page with many lines starting right of the middle has two columns: each band between
  full-width lines (a title spanning both) is read left column, then right column;
- headers and footers are lines at the top or bottom of a page whose text, digits aside,
  repeats on most pages, or that are only a page number ("3", "Page 3 of 12", "3/12");
- ruled tables (text inside cells of thin drawn lines) are left out: their cells read as
  broken sentences (the Markdown reader leaves tables out too);
- a line in a larger font than the body, or all bold, that does not end a sentence is a
  heading; the larger the font, the higher its level;
- a word hyphenated at a line end is rejoined: a soft or typographic hyphen (U+00AD,
  U+2010, what browsers print when they hyphenate) is dropped; a plain hyphen, which
  PDFium marks at line ends, is dropped only when the document writes the word whole
  elsewhere, kept otherwise ("T-" + "Cell", "best-" + "studied").

A page without text (a scan) is read by the local OCR engine, tesseract, when asked.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from assistant.types import Block


class PdfError(ValueError):
    """The file cannot be read as a PDF: encrypted, corrupt, truncated or without text."""


@dataclass
class _Line:
    text: str
    x0: float
    x1: float
    y: float  # baseline
    size: float
    bold: bool
    page: int
    hyphen: bool = False  # ends with a line-end hyphen


_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl",
                            "ﬅ": "st", "ﬆ": "st", "\u00a0": " ", "\u00ad": ""})
_PAGE_NUMBER = re.compile(r"^(page\s*)?\d{1,4}(\s*(/|of)\s*\d{1,4})?$", re.I)
_LIST_START = re.compile(r"^(\d{1,2}[.)]|[a-z][.)]|[•▪◦·‣–-])\s")
_SENTENCE_END = re.compile(r"[.:;!?]$")
_SOURCE_MARKER = re.compile(r"\s*\[\d+(?:\s*[,\u2013-]\s*\d+)*\]")
_HYPHEN = "\x02"  # PDFium's mark for a hyphen ("-") at a line end
_SOFT_HYPHENS = ("\u2010", "\u00ad")  # typographic and soft hyphens: only break words


def read_pdf(path: Path, ocr: str | None = None) -> tuple[dict, list[Block]]:
    """The document's metadata (``title`` from the PDF's information) and its blocks;
    ``ocr``: tesseract's language (e.g. "eng") to read pages without text, or None."""
    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise PdfError(_describe_open_error(path, exc)) from None
    try:
        if len(pdf) == 0:
            raise PdfError("the PDF has no pages (truncated or corrupt?)")
        meta = {"title": (pdf.get_metadata_dict().get("Title") or "").strip() or None}
        lines_by_page: list[list[_Line]] = []
        widths: list[float] = []
        scanned: list[int] = []
        for number in range(len(pdf)):
            page = pdf[number]
            widths.append(page.get_width())
            lines = _page_lines(page, number + 1)
            if not lines and _has_images(page):
                scanned.append(number + 1)
                if ocr:
                    lines = _ocr_lines(page, number + 1, ocr)
            lines_by_page.append(lines)
    finally:
        pdf.close()
    if not any(lines_by_page):
        if scanned and not ocr:
            raise PdfError("has no text layer (a scanned document?): ingest it again with "
                           "--ocr to read it with tesseract")
        if scanned:
            raise PdfError("OCR found no text on its scanned pages")
        raise PdfError("has no text")
    return meta, _blocks(_drop_headers_footers(lines_by_page), widths)


def _describe_open_error(path: Path, exc: pdfium.PdfiumError) -> str:
    message = str(exc).lower()
    if "password" in message or "security" in message:
        return "the PDF is encrypted (password protected); decrypt it first"
    data = path.read_bytes() if path.is_file() else b""
    if b"%PDF" not in data[:1024]:
        return "not a PDF file (no %PDF header)"
    if b"%%EOF" not in data[-2048:]:
        return "the PDF is truncated (it does not end with %%EOF); copy it again"
    return f"the PDF is corrupt ({exc})"


# --- characters into lines -------------------------------------------------------------

def _page_lines(page: pdfium.PdfPage, number: int) -> list[_Line]:
    textpage = page.get_textpage()
    rules = _rules(page)
    count = textpage.count_chars()
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    x, y = ctypes.c_double(), ctypes.c_double()
    font, flags = ctypes.create_string_buffer(128), ctypes.c_int()
    lines: list[_Line] = []
    chars: list[str] = []
    weights: list[bool] = []
    sizes: list[float] = []
    current: _Line | None = None
    pending_space = False

    def close() -> None:
        if current is not None and chars:
            current.text = re.sub(r"\s+", " ", "".join(chars)).strip()
            current.size = Counter(sizes).most_common(1)[0][0]  # not a symbol's fallback font
            current.bold = all(weights)
            if current.text.endswith(_HYPHEN):
                current.text, current.hyphen = current.text[:-1] + "-", True
            elif current.text.endswith(_SOFT_HYPHENS) and len(current.text) > 1:
                # A hyphen that only breaks a word (Chromium prints soft hyphens so).
                current.text, current.hyphen = current.text[:-1], True
            # Ligatures written out; soft hyphens where the word was not broken dropped.
            current.text = current.text.replace(_HYPHEN, "-").translate(_LIGATURES)
            if current.text and not _in_table(current, rules):
                lines.append(current)

    for i in range(count):
        code = pdfium_c.FPDFText_GetUnicode(textpage, i)
        if pdfium_c.FPDFText_IsGenerated(textpage, i) or code in (10, 13):
            pending_space = pending_space or code == 32
            continue
        char = chr(code)
        if char.isspace():
            pending_space = True
            continue
        pdfium_c.FPDFText_GetCharBox(textpage, i, left, right, bottom, top)
        pdfium_c.FPDFText_GetCharOrigin(textpage, i, x, y)
        size = pdfium_c.FPDFText_GetFontSize(textpage, i) or (top.value - bottom.value)
        # The next character in the content stream, on the same baseline, further right:
        # the same line, however wide the space (justified titles). Columns are drawn one
        # after the other, so the stream leaves a column's last line for another baseline.
        same_line = (
            current is not None
            and abs(y.value - current.y) < 0.35 * current.size
            and left.value - current.x1 > -0.5 * size
        )
        if not same_line:
            close()
            current = _Line("", left.value, right.value, y.value, size, False, number)
            chars, weights, sizes, pending_space = [], [], [], False
        elif pending_space or left.value - current.x1 > 0.2 * size:
            chars.append(" ")
        pending_space = False
        chars.append(char)
        # Bold by the font's name: PDFium's weights are unreliable (455 for DejaVu Bold).
        pdfium_c.FPDFText_GetFontInfo(textpage, i, font, len(font), flags)
        weights.append(b"Bold" in font.value or pdfium_c.FPDFText_GetFontWeight(textpage, i) >= 600)
        current.x1 = max(current.x1, right.value)
        sizes.append(round(size, 1))
    close()
    textpage.close()
    return lines


def _rules(page: pdfium.PdfPage) -> list[tuple[float, float, float, float, bool]]:
    """The page's thin drawn lines (table borders, underlines): box and whether vertical."""
    rules = []
    for obj in page.get_objects():
        if obj.type == pdfium_c.FPDF_PAGEOBJ_PATH:
            left, bottom, right, top = obj.get_bounds()
            if (right - left < 2.5) != (top - bottom < 2.5):  # horizontal or vertical
                rules.append((left, bottom, right, top, right - left < 2.5))
    return rules


def _in_table(line: _Line, rules: list[tuple[float, float, float, float, bool]]) -> bool:
    """Is the line inside a ruled table's cell: a rule above and below it, and beside it
    (left or right: a table wider than the page loses its right border)? Not merely near
    rules: an underlined link has no rule beside it."""
    middle, y = (line.x0 + line.x1) / 2, line.y
    above = below = left = right = False
    for l, b, r, t, vertical in rules:
        if vertical:
            if b <= y <= t:
                left = left or r <= middle  # (the middle: text may overflow a narrow cell)
                right = right or l >= middle
        elif l <= middle <= r:
            above = above or b >= y
            below = below or t <= y
    return above and below and (left or right)


def _has_images(page: pdfium.PdfPage) -> bool:
    return any(obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE for obj in page.get_objects())


def _ocr_lines(page: pdfium.PdfPage, number: int, language: str) -> list[_Line]:
    """A scanned page read by tesseract: its text lines, as paragraphs of body text."""
    tesseract = shutil.which("tesseract")
    if tesseract is None:
        raise PdfError("--ocr needs the tesseract command (Debian: apt-get install "
                       "tesseract-ocr)")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "page.png"
        page.render(scale=300 / 72).to_pil().save(image)
        done = subprocess.run([tesseract, str(image), "-", "-l", language],
                              capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise PdfError(f"tesseract failed on page {number}: {done.stderr.strip()[:200]}")
    # Tesseract writes a paragraph's lines one after the other and a blank line between
    # paragraphs: laid out here as lines 12 points apart, paragraphs 24.
    lines, y = [], 1000.0
    for raw in done.stdout.splitlines():
        y -= 12
        text = raw.strip()
        if text:
            hyphen = text.endswith("-") and len(text) > 1 and text[-2].isalpha()
            lines.append(_Line(text, 0, 100, y, 10, False, number, hyphen))
    return lines


# --- headers, footers, reading order -------------------------------------------------

def _drop_headers_footers(pages: list[list[_Line]]) -> list[list[_Line]]:
    """Lines at the top or bottom of their page that repeat on most pages (digits aside),
    or that are only a page number."""
    def edges(lines: list[_Line]) -> list[_Line]:
        ordered = sorted(lines, key=lambda ln: -ln.y)
        return ordered[:3] + ordered[-3:]

    def shape(line: _Line) -> str:
        return re.sub(r"\d+", "#", line.text.lower())

    seen = Counter(s for lines in pages for s in {shape(ln) for ln in edges(lines)})
    repeated = {s for s, n in seen.items() if len(pages) >= 2 and n >= max(2, 0.5 * len(pages))}
    kept = []
    for lines in pages:
        drop = {id(ln) for ln in edges(lines)
                if shape(ln) in repeated or _PAGE_NUMBER.match(ln.text)}
        # Only lines outside the body: not between two body lines of the same column.
        kept.append([ln for ln in lines if id(ln) not in drop])
    return kept


def _reading_order(lines: list[_Line], width: float) -> list[_Line]:
    middle = width / 2
    right = [ln for ln in lines if ln.x0 >= middle - 2]
    if len(right) < 0.2 * len(lines):  # one column
        return sorted(lines, key=lambda ln: (-round(ln.y, 1), ln.x0))
    ordered: list[_Line] = []
    band: list[_Line] = []

    def flush() -> None:
        left_col = [ln for ln in band if ln.x1 <= middle + 2]
        right_col = [ln for ln in band if ln.x1 > middle + 2]
        for column in (left_col, right_col):
            ordered.extend(sorted(column, key=lambda ln: (-round(ln.y, 1), ln.x0)))
        band.clear()

    for line in sorted(lines, key=lambda ln: -ln.y):
        if line.x0 < middle - 2 and line.x1 > middle + 2:  # spans both columns
            flush()
            ordered.append(line)
        else:
            band.append(line)
    flush()
    return ordered


# --- lines into headings and paragraphs ------------------------------------------------

def _blocks(pages: list[list[_Line]], widths: list[float]) -> list[Block]:
    lines = [ln for page in pages for ln in page]
    sizes = Counter()
    for ln in lines:
        sizes[round(ln.size, 1)] += len(ln.text)
    body = sizes.most_common(1)[0][0]

    def is_heading(ln: _Line) -> bool:
        # Bold at the body's size: a run-in heading, unless it is a list item in bold.
        return ((ln.size >= 1.08 * body or (ln.bold and not _LIST_START.match(ln.text)))
                and len(ln.text.split()) <= 20
                and not _SENTENCE_END.search(ln.text) and not _PAGE_NUMBER.match(ln.text))

    heading_sizes = sorted({round(ln.size, 1) for ln in lines if is_heading(ln)}, reverse=True)
    # The largest heading font is the document title when it is only on the first page.
    title_size = heading_sizes[0] if heading_sizes and heading_sizes[0] > 1.3 * body and all(
        ln.page == lines[0].page for ln in lines if round(ln.size, 1) == heading_sizes[0]
        and is_heading(ln)) else None

    def level(ln: _Line) -> int:
        size = round(ln.size, 1)
        if size == title_size:
            return 1
        bigger = [s for s in heading_sizes if s != title_size]
        return 2 + (bigger.index(size) if size in bigger else len(bigger))

    # Words as the document writes them, to tell a hyphenated word from a compound.
    words = Counter(w for ln in lines for w in re.findall(r"[a-z]+", ln.text.lower()))
    ordered = _join_fragments([ln for page_lines, width in zip(pages, widths)
                               for ln in _reading_order(page_lines, width)])
    # Line spacing, as a multiple of the font size: the most common step between lines
    # of the body. A wider step between two lines starts a new paragraph.
    steps = Counter(round((a.y - b.y) / a.size, 2) for a, b in zip(ordered, ordered[1:])
                    if a.page == b.page and a.size == b.size == body and 0 < a.y - b.y < 3 * a.size)
    spacing = steps.most_common(1)[0][0] if steps else 1.2
    blocks: list[Block] = []
    previous: _Line | None = None
    for ln in ordered:
        heading = is_heading(ln)
        block = blocks[-1] if blocks else None
        continues = (
            block is not None and previous is not None
            and (block.level > 0) == heading
            and round(ln.size, 1) == round(previous.size, 1)
            and not (not heading and _LIST_START.match(ln.text))
            and _continues(previous, ln, spacing)
        )
        if continues:
            text = block.text
            if text.endswith("-") and previous.hyphen:
                text = _dehyphenate(text[:-1], ln.text, words)
            elif not previous.hyphen and not text.endswith(("\u2013", "/")):
                text += " "  # (a range or a path broken after its dash or slash: no space)
            if ln.page != block.pages[-1][1]:
                block.pages.append((len(text), ln.page))
            block.text = text + ln.text
        else:
            if block is not None and previous is not None and previous.hyphen and not block.text.endswith("-"):
                block.text += "-"  # a word broken at the end of a paragraph: keep it as printed
            blocks.append(Block(ln.text, level(ln) if heading else 0, [(0, ln.page)]))
        previous = ln
    for block in blocks:
        if block.level == 0:
            block.text = _SOURCE_MARKER.sub("", block.text)
    return [b for b in blocks if b.text.strip()]


def _join_fragments(lines: list[_Line]) -> list[_Line]:
    """Pieces of one printed line (split at a wide justified space) back into one line."""
    joined: list[_Line] = []
    for ln in lines:
        last = joined[-1] if joined else None
        if (last is not None and last.page == ln.page and abs(last.y - ln.y) < 0.35 * last.size
                and ln.x0 > last.x1 and round(ln.size, 1) == round(last.size, 1)):
            last.text = f"{last.text} {ln.text}" if not last.hyphen else last.text + ln.text
            last.x1, last.hyphen, last.bold = ln.x1, ln.hyphen, last.bold and ln.bold
        else:
            joined.append(ln)
    return joined


def _continues(previous: _Line, line: _Line, spacing: float) -> bool:
    """Does ``line`` go on with ``previous``'s paragraph (next line of the column, or the
    top of the next column or page when the paragraph was not finished)?"""
    gap = previous.y - line.y
    if (line.page == previous.page and 0 < gap < 1.25 * spacing * previous.size
            and abs(line.x0 - previous.x0) < 3 * previous.size):
        return True
    # A new column or page: the paragraph goes on if it had not ended.
    moved = line.page != previous.page or line.y > previous.y
    return moved and not _SENTENCE_END.search(previous.text)


def _dehyphenate(before: str, after: str, words: Counter) -> str:
    """Rejoin a word split after a plain hyphen at a line end: without the hyphen only
    when the document writes the word whole elsewhere ("lympho-" + "cytes"), with it
    otherwise ("T-" + "Cell", "best-" + "studied"). (Soft and typographic hyphens, which
    only break words, are dropped before this.)"""
    head = re.search(r"(\w+)$", before)
    tail = re.match(r"(\w+)", after)
    if head and tail and words.get((head.group(1) + tail.group(1)).lower()):
        return before
    return before + "-"
