"""Web page reader: the text of an HTML guideline as headings and paragraphs, each section
with the anchor (the ``id`` of its heading) that a citation links to.

Library: BeautifulSoup over lxml (MIT and BSD): lxml parses real-world, broken HTML fast,
BeautifulSoup walks it plainly. Page furniture (navigation, scripts, forms, asides,
footers) is dropped; the text is read from ``<main>`` or ``<article>`` when the page has
one. Tables are kept as readable rows ("cell | cell | cell"), which the composer never
quotes as sentences; superscript citation numbers and "[1]"-style markers are removed.
"""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag

from assistant.types import Block

_DROP = ("script", "style", "noscript", "template", "nav", "aside", "form", "button",
         "select", "svg", "iframe", "footer", "img", "figure")
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = {"p", "li", "dd", "dt", "blockquote", "pre", "figcaption", "caption", "address"}
_CONTAINERS = _BLOCKS | set(_HEADINGS) | {"div", "section", "article", "main", "ul", "ol",
                                          "dl", "table", "header", "body", "details"}
_SOURCE_MARKER = re.compile(r"\s*\[\d+(?:\s*[,\u2013-]\s*\d+)*\]")
_CITATION_SUP = re.compile(r"^[\d,\s\u2013-]+$")


def read_html(path: Path) -> tuple[dict, list[Block]]:
    """The page's metadata (title, url, doi, year, source, kind where it states them)
    and its blocks."""
    soup = BeautifulSoup(path.read_bytes(), "lxml")
    meta = _metadata(soup)
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for sup in soup.find_all("sup"):
        if _CITATION_SUP.match(sup.get_text()):
            sup.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    blocks: list[Block] = []
    _walk(root, blocks)
    return meta, [b for b in blocks if b.text]


def _text(node: Tag | NavigableString) -> str:
    text = node.get_text(" ") if isinstance(node, Tag) else str(node)
    text = re.sub(r"\s+", " ", text.replace("\u00ad", "")).strip()
    return re.sub(r"\s+([,.;:)])", r"\1", _SOURCE_MARKER.sub("", text))


def _anchor(tag: Tag) -> str | None:
    """Where a link to this heading points: its id, an anchor inside it, or the id of the
    section it opens."""
    if tag.get("id"):
        return tag["id"]
    inner = tag.find(lambda t: t.name == "a" and (t.get("id") or t.get("name")))
    if inner is not None:
        return inner.get("id") or inner.get("name")
    parent = tag.parent
    if parent is not None and parent.name in ("section", "div", "article") and parent.get("id"):
        first = parent.find(list(_HEADINGS))
        if first is tag:
            return parent["id"]
    return None


def _walk(node: Tag, blocks: list[Block]) -> None:
    inline: list[str] = []

    def flush() -> None:
        text = re.sub(r"\s+", " ", " ".join(inline).replace("\u00ad", "")).strip()
        if text:
            blocks.append(Block(_SOURCE_MARKER.sub("", text)))
        inline.clear()

    for child in node.children:
        if isinstance(child, NavigableString):
            if child.__class__.__name__ in ("Comment", "Doctype", "Declaration",
                                            "ProcessingInstruction"):
                continue
            inline.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        if child.name in _HEADINGS:
            flush()
            blocks.append(Block(_text(child), level=_HEADINGS[child.name],
                                anchor=_anchor(child)))
        elif child.name == "table":
            flush()
            rows = [" | ".join(_text(cell) for cell in row.find_all(["th", "td"]))
                    for row in child.find_all("tr")]
            rows = [row for row in rows if row.strip(" |")]
            caption = child.find("caption")
            if caption is not None:
                blocks.append(Block(_text(caption)))
            if rows:
                blocks.append(Block("\n".join(rows)))
        elif child.name in _CONTAINERS or child.find(list(_CONTAINERS)):
            flush()
            if child.name in _BLOCKS and not child.find(list(_CONTAINERS)):
                blocks.append(Block(_text(child)))
            else:  # a container, or a list item holding paragraphs or a nested list
                _walk(child, blocks)
        else:
            inline.append(child.get_text(" "))
    flush()


def _metadata(soup: BeautifulSoup) -> dict:
    """Title, URL, DOI, year, source and kind, from the page's own metadata: the
    ``citation_*`` tags journals publish for indexers, Dublin Core, Open Graph, <title>."""
    def meta(*names: str) -> str | None:
        for name in names:
            tag = soup.find("meta", attrs={"name": name}) or soup.find(
                "meta", attrs={"property": name})
            if tag is not None and tag.get("content", "").strip():
                return tag["content"].strip()
        return None

    title = meta("citation_title", "dc.title", "DC.title", "og:title")
    if title is None and soup.title is not None:
        title = _text(soup.title) or None
    canonical = soup.find("link", rel="canonical")
    date = meta("citation_publication_date", "citation_date", "dc.date", "DC.date",
                "article:published_time")
    year = re.search(r"\b(19|20)\d\d\b", date or "")
    doi = meta("citation_doi", "dc.identifier", "DC.identifier")
    return {
        "title": title,
        "url": (canonical.get("href") if canonical is not None else None) or meta("og:url"),
        "doi": doi.removeprefix("doi:").strip() if doi and "10." in doi else None,
        "year": int(year.group(0)) if year else None,
        "source": meta("citation_journal_title", "citation_publisher", "dc.publisher",
                       "DC.publisher", "og:site_name"),
        "kind": meta("kind"),
    }
