"""PDF and web page guidelines, as clinicians keep them: real NCI PDQ summaries rendered to
HTML and printed to PDF by headless Chromium (two columns, Chromium's running header and
footer, ruled tables, hyphenated words, references lists; scripts/render_pdq.py), a
scanned (image-only) copy of a page, an encrypted, a truncated and a corrupt file. The
extracted text is checked against the Markdown source, passages against the pages that
PDFium finds their words on, and answers for "p. N"."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pypdfium2 as pdfium
import pytest
import yaml

from assistant import Assistant, Settings
from assistant.chunking import Chunker
from assistant.cli import main
from assistant.embedding import load_embedder
from assistant.index import Index, ingest
from assistant.readers import load_paths
from assistant.server import create_app
from assistant.types import pages_label
from scripts.render_pdq import chromium, render

from .conftest import SHARED_DATA
from .server_fixtures import LiveServer, server_settings
from .test_web import ARGS, CHROMIUM

PDQ = SHARED_DATA / "nci_pdq_hp" / "md"
CAR_T = "types-childhood-cancers-hp-stem-cell-transplant-car-t-cell-therapy"
# A longer summary with tables and many references lists.
MERKEL = "types-skin-hp-merkel-cell-treatment-pdq"

pytestmark = [
    pytest.mark.skipif(not PDQ.is_dir(), reason=f"{PDQ} is absent: no PDQ summaries to render"),
    pytest.mark.skipif(chromium() is None, reason="chromium is not installed: no PDFs to print"),
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """html/ and pdf/ folders of two PDQ summaries, each with its documents.yaml."""
    out = tmp_path_factory.mktemp("rendered")
    render([PDQ / f"{CAR_T}.md", PDQ / f"{MERKEL}.md"], out)
    return out


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def page_texts(pdf_path: Path) -> list[str]:
    """Each page's characters as PDFium reads them, without any whitespace: an
    independent check of which page a passage's words are printed on."""
    pdf = pdfium.PdfDocument(str(pdf_path))
    texts = [re.sub(r"[\s\x02\u2010-]", "", pdf[i].get_textpage().get_text_range())
             for i in range(len(pdf))]
    pdf.close()
    return texts


def first_word(text: str) -> str:
    return re.findall(r"[A-Za-z]{3,}", text)[0]


def last_word(text: str) -> str:
    return re.findall(r"[A-Za-z]{3,}", text)[-1]


def test_pdf_text_is_clean_against_its_source(rendered):
    [md_doc], _ = load_paths([PDQ / f"{CAR_T}.md"])
    [doc], errors = load_paths([rendered / "pdf" / f"{CAR_T}.pdf"])
    assert errors == []
    assert doc.kind == "guideline" and doc.year == 2024 and doc.title == md_doc.title
    text = doc.text
    # No running header or footer: Chromium prints the date, the title, the page's file
    # URL and "n/N" on every page.
    assert "file://" not in text and ".html" not in text
    assert not re.search(r"\d+/\d+/\d+, \d+:\d+", text)
    assert not re.search(r"(^|\n)\d+/\d+($|\n)", text)
    # No split or glued words: every word of the PDF's text is a word of the source.
    source = (PDQ / f"{CAR_T}.md").read_text()
    assert words(text) - words(source) == set()
    # Hyphenated at line ends (soft hyphens in the page), rejoined whole.
    for word in ("histocompatibility", "tisagenlecleucel", "lymphohistiocytosis",
                 "costimulatory", "hyperferritinemia"):
        assert word in text.lower()
    assert "T-Cell Therapy" in text  # a real hyphen at a line end is kept
    # Headings are section titles, as the Markdown reader makes them.
    assert [t for t, _ in md_doc.sections] == [t for t, _ in doc.sections][:len(md_doc.sections)]
    # The references lists and the table are not indexed as text.
    assert "PUBMED Abstract" not in text and "et al.:" not in text
    assert "Grade 1 Grade 2" not in text and "Parameter" not in text
    # Each section holds the source's paragraphs: the first one word for word.
    first = md_doc.sections[0][1].split("\n\n")[0]
    assert first in doc.sections[0][1]


def test_two_column_reading_order(rendered):
    """Paragraphs that continue from the left column into the right one, and across
    pages, read in order."""
    [md_doc], _ = load_paths([PDQ / f"{MERKEL}.md"])
    [doc], errors = load_paths([rendered / "pdf" / f"{MERKEL}.pdf"])
    assert errors == []

    def plain(text: str) -> str:  # no citation markers (the Markdown reader keeps some), no spaces
        return re.sub(r"\s+", "", re.sub(r"\s*\[\d+(?:\s*[,\u2013-]\s*\d+)*\]", "", text))

    # Long paragraphs, but not lists (bullets are drawn, not printed as "-") nor figures
    # (an image's alt text in the source).
    md_paragraphs = [plain(p) for _, t in md_doc.sections for p in t.split("\n\n")
                     if len(p) > 200 and "Enlarge" not in p
                     and not re.search(r"(^|\n)\s*(-|\d+\.) ", p)]
    pdf_text = plain(doc.text)
    found = [p for p in md_paragraphs if p in pdf_text]
    # They come out whole (most cross a column or a page) and in order.
    assert len(found) >= 0.95 * len(md_paragraphs), [p for p in md_paragraphs if p not in found]
    cursor = 0
    for paragraph in found:  # in the source's order (a paragraph may occur twice)
        cursor = pdf_text.find(paragraph, cursor)
        assert cursor >= 0, paragraph[:80]


def test_passages_keep_their_pages(rendered):
    pdf = rendered / "pdf" / f"{MERKEL}.pdf"
    [doc], _ = load_paths([pdf])
    settings = Settings()
    embedder = load_embedder(settings.embedder, "cpu", 8, "fp32")
    passages = Chunker(embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap).chunk(doc)
    pages = page_texts(pdf)
    assert all(p.pages for p in passages)
    # Pages follow the document, and most pages hold passages (others only references).
    firsts = [p.pages[0] for p in passages]
    assert firsts == sorted(firsts) and firsts[0] == 1
    assert len({page for p in passages for page in p.pages}) >= len(pages) // 2
    for passage in passages:
        # Its first and last words are printed on its first and last page.
        assert first_word(passage.text) in pages[passage.pages[0] - 1], passage.id
        assert last_word(passage.text) in pages[passage.pages[-1] - 1], passage.id
        # (Not always consecutive: a page holding only a table is skipped.)
        assert passage.pages == sorted(set(passage.pages))


def test_html_sections_have_anchors_and_tables_are_rows(rendered):
    page = rendered / "html" / f"{CAR_T}.html"
    [doc], errors = load_paths([page])
    assert errors == []
    assert doc.kind == "guideline" and doc.url.startswith("https://www.cancer.gov/")
    ids = set(re.findall(r'id="([^"]+)"', page.read_text()))
    assert doc.section_anchors and all(a in ids for a in doc.section_anchors)
    sections = dict(zip((t for t, _ in doc.sections), doc.section_anchors))
    assert sections["CAR T-Cell Toxicities > Cytokine release syndrome (CRS)"] == \
        "cytokine-release-syndrome-crs"
    text = doc.text
    assert "\u00ad" not in text and "PUBMED Abstract" not in text and "[1]" not in text
    # The table's rows are readable, one a line, cells apart.
    assert re.search(r"^CRS Parameter \| Grade 1 \| Grade 2 \| Grade 3 \| Grade 4$", text, re.M)


def scanned_copy(pdf: Path, out: Path) -> Path:
    """The PDF's first page as an image-only PDF (what a scanner makes)."""
    document = pdfium.PdfDocument(str(pdf))
    image = document[0].render(scale=200 / 72).to_pil().convert("L")
    document.close()
    image.save(out, "PDF", resolution=200)
    return out


def test_bad_pdfs_are_reported_by_name_and_skipped(rendered, tmp_path):
    from pypdf import PdfWriter

    folder = tmp_path / "pdfs"
    folder.mkdir()
    good = rendered / "pdf" / f"{CAR_T}.pdf"
    shutil.copy(good, folder / "good.pdf")
    writer = PdfWriter(clone_from=good)
    writer.encrypt("secret")
    with (folder / "encrypted.pdf").open("wb") as f:
        writer.write(f)
    data = good.read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 2])
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")
    (folder / "renamed.pdf").write_text("<html>not a PDF</html>")
    scanned_copy(good, folder / "scan.pdf")
    (folder / "documents.yaml").write_text(yaml.safe_dump(
        {name: {"title": name, "kind": "guideline"} for name in (
            "good.pdf", "encrypted.pdf", "truncated.pdf", "corrupt.pdf", "renamed.pdf",
            "scan.pdf")}))
    report = ingest([folder], Settings(index_path=tmp_path / "index"), progress=False)
    skipped = {Path(e.path).name: e.problem for e in report.skipped}
    assert "encrypted" in skipped.pop("encrypted.pdf")
    assert "truncated" in skipped.pop("truncated.pdf")
    assert "corrupt" in skipped.pop("corrupt.pdf")
    assert "not a PDF" in skipped.pop("renamed.pdf")
    assert "no text layer" in skipped["scan.pdf"] and "--ocr" in skipped.pop("scan.pdf")
    assert skipped == {} and report.added == ["good"]
    assert "scan.pdf: " in report.summary()


@pytest.mark.skipif(shutil.which("tesseract") is None,
                    reason="tesseract is not installed (Debian: tesseract-ocr)")
def test_scanned_pdf_is_read_with_ocr_when_asked(rendered, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    scanned_copy(rendered / "pdf" / f"{CAR_T}.pdf", folder / "scan.pdf")
    docs, errors = load_paths([folder], kind="guideline")
    assert docs == [] and "--ocr" in errors[0].problem and "scan.pdf" in errors[0].path
    [doc], errors = load_paths([folder], kind="guideline", ocr="eng")
    assert errors == [] and doc.section_pages and doc.section_pages[0][0][1] == 1
    found = words(doc.text)
    printed = words("T cells attack cellular targets (viruses or cancer cells) by binding to "
                    "class I major histocompatibility complex (MHC) molecules on the surface")
    assert len(printed & found) >= 0.9 * len(printed)


def test_metadata_from_csv_sidecar_the_pdf_itself_or_kind(rendered, tmp_path):
    folder = tmp_path / "pdfs"
    folder.mkdir()
    shutil.copy(rendered / "pdf" / f"{CAR_T}.pdf", folder / "car-t.pdf")
    docs, errors = load_paths([folder])
    assert docs == [] and "no kind" in errors[0].problem and "--kind" in errors[0].problem
    [doc], _ = load_paths([folder], kind="guideline")
    assert doc.title.startswith("Pediatric Chimeric Antigen Receptor")  # the PDF's own title
    (folder / "documents.csv").write_text(
        "file,id,title,kind,source,year,doi\n"
        "car-t.pdf,pdq-car-t,Pediatric CAR T-cell therapy,guideline,NCI PDQ,2024,10.1000/x1\n")
    [doc], errors = load_paths([folder])
    assert errors == []
    assert (doc.id, doc.title, doc.source, doc.year, doc.doi) == (
        "pdq-car-t", "Pediatric CAR T-cell therapy", "NCI PDQ", 2024, "10.1000/x1")
    (folder / "documents.csv").write_text("file,title,colour\ncar-t.pdf,X,red\n")
    _, errors = load_paths([folder], kind="guideline")
    assert "colour" in errors[0].problem and "documents.csv" in errors[0].problem


def test_pages_label():
    assert pages_label([12]) == "p. 12"
    assert pages_label([13, 12]) == "pp. 12\u201313"
    assert pages_label([3, 7, 8, 9]) == "pp. 3, 7\u20139"
    assert pages_label([]) == ""


def test_answers_cite_the_page_and_reingest_reads_nothing(rendered, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "guidelines"
    shutil.copytree(rendered / "pdf", folder)
    shutil.copy(rendered / "html" / f"{MERKEL}.html", folder / "merkel-web.html")
    (folder / "merkel-web.html").write_text(
        (folder / "merkel-web.html").read_text().replace(
            "<head>", '<head><meta name="kind" content="guideline">'
                      '<link rel="canonical" href="https://example.org/merkel">'))
    index = tmp_path / "index"
    assert main(["ingest", str(folder), "--index", str(index), "--quiet"]) == 0
    assert "3 added" in capsys.readouterr().out

    assistant = Assistant.open(index)
    answer = assistant.ask("How is cytokine release syndrome graded and treated after CAR "
                           "T-cell therapy in children?")
    [ref] = [r for r in answer.references if r.doc_id == CAR_T]
    assert ref.pages and all(p.pages for p in ref.passages)
    assert f"{pages_label(ref.pages)}." in answer.to_text()
    assert re.search(r"\[\d+\] .*— National Cancer Institute PDQ, 2024\. pp?\. \d", answer.to_text())
    data = answer.model_dump(mode="json")
    cited = next(r for r in data["references"] if r["doc_id"] == CAR_T)
    assert cited["pages"] == ref.pages and cited["passages"][0]["pages"]
    # Each cited passage is printed on the pages it names.
    pages = page_texts(folder / f"{CAR_T}.pdf")
    for passage in ref.passages:
        assert first_word(passage.text) in pages[passage.pages[0] - 1]

    web = assistant.ask("What is the role of adjuvant radiation therapy after surgery for "
                        "Merkel cell carcinoma?")
    anchored = [r for r in web.references if r.url == "https://example.org/merkel"]
    assert anchored and anchored[0].link.startswith("https://example.org/merkel#")
    assert anchored[0].link in web.to_text()

    # Re-ingest: nothing read again, nothing embedded.
    import assistant.pdf as pdf_reader

    reads = []  # the real reader, counting its calls
    real = pdf_reader.read_pdf
    monkeypatch.setattr(pdf_reader, "read_pdf", lambda *a, **k: reads.append(a) or real(*a, **k))
    report = ingest([folder], Settings(index_path=index), progress=False)
    assert reads == [] and report.passages_embedded == 0 and not report.written
    assert sorted(report.unchanged) == sorted([CAR_T, MERKEL, "merkel-web"])
    # A changed sidecar entry is read again (and only that file).
    sidecar = yaml.safe_load((folder / "documents.yaml").read_text())
    sidecar[f"{CAR_T}.pdf"]["year"] = 2025
    (folder / "documents.yaml").write_text(yaml.safe_dump(sidecar))
    report = ingest([folder], Settings(index_path=index), progress=False)
    assert len(reads) == 1 and report.updated == [CAR_T]
    assert Index.open(index).documents[CAR_T].year == 2025


def test_web_citation_panel_shows_the_page_and_links_the_section(rendered, tmp_path):
    """The chat page in headless Chromium: a PDF's cited passage shows "p. N", a web
    page's links to its section's anchor."""
    sync_api = pytest.importorskip("playwright.sync_api")
    folder = tmp_path / "guidelines"
    folder.mkdir()
    shutil.copy(rendered / "pdf" / f"{CAR_T}.pdf", folder)
    shutil.copy(rendered / "pdf" / "documents.yaml", folder)
    (folder / "merkel.html").write_text(
        (rendered / "html" / f"{MERKEL}.html").read_text().replace(
            "<head>", '<head><meta name="kind" content="guideline">'
                      '<link rel="canonical" href="https://example.org/merkel">'))
    index = tmp_path / "index"
    ingest([folder], Settings(index_path=index), progress=False)
    app = create_app(server_settings(index, tmp_path / "conversations.sqlite3"))
    with LiveServer(app) as server, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.set_default_timeout(120_000)
        page.goto(server.url + "/")

        def ask(question: str):
            page.fill("#question", question)
            page.click("#ask")
            turn = page.locator("#conversation > li.turn:not(.pending)").last
            turn.wait_for()
            return turn

        turn = ask("How is cytokine release syndrome treated after CAR T-cell therapy in children?")
        assert re.search(r"pp?\. \d", turn.locator(".references").inner_text())
        turn.locator(".references button.cite").first.click()
        page.locator("#citation").wait_for(state="visible")
        where = page.locator("#citation-passages .passage .section").first.inner_text()
        assert re.search(r" — pp?\. \d+", where), where
        page.click("#close-citation")

        page.click("#new-conversation")
        turn = ask("What is the role of adjuvant radiation therapy after surgery for Merkel "
                   "cell carcinoma?")
        button = turn.locator(".references li", has_text="example.org/merkel").locator("button.cite")
        button.click()
        link = page.locator("#citation-passages .passage .section a").first
        assert link.get_attribute("href").startswith("https://example.org/merkel#")
        browser.close()
