"""Loaders: turn files into Documents.

Formats
- Markdown with YAML front matter (the project's own): ``title`` and ``kind`` required;
  ``id``, ``source``, ``year``, ``url``, ``pmid``, ``doi`` optional. ``#`` is the title,
  ``##``/``###`` headings become section titles.
- NCI PDQ health-professional Markdown (``../shared/data/nci_pdq_hp/md``): recognised by
  its cancer.gov URL; citation markers, link targets, tables and the boilerplate
  sections (references, trials, updates, about) are removed; kind = guideline.
- JSONL (the project's own): one document per line with the front-matter fields plus
  ``text`` (or ``sections``: [{"title", "text"}]).
- PubMedQA ``ori_pqal.json`` (one research document per PMID: the abstract without its
  conclusion, which is the gold answer) and BioASQ Task B golden JSON (one research
  document per PMID: its gold snippets, the title snippet as title).
- PDF (``assistant/pdf.py``) and web pages, ``.html``/``.htm`` (``assistant/html.py``):
  headings become section titles, references lists are left out, and each section keeps
  its pages (PDF) or anchor (web page) for citations. Their metadata comes from a sidecar
  beside them, ``documents.yaml`` (or ``.yml``) mapping each file name to its fields, or
  ``documents.csv`` with a ``file`` column and one column per field; then from the file
  itself (the PDF's title; a web page's <title>, citation_* and Dublin Core meta tags,
  ``<meta name="kind">``); ``--kind`` gives the kind of them all. A PDF without text
  (a scan) is read with tesseract when asked (``ocr``: its language).

A file that cannot be read becomes a LoadError naming the file and the problem; the
other files still load.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from assistant.types import Block, Document, Kind, untitled_name

FORMATS = ("auto", "markdown", "pdq", "jsonl", "pubmedqa", "bioasq", "pdf", "html")
_SUFFIXES = {".md", ".markdown", ".jsonl", ".json", ".pdf", ".html", ".htm"}
SIDECARS = ("documents.yaml", "documents.yml", "documents.csv")
# Part of every PDF and web page's fingerprint: when the way they are read changes, the
# next ingest reads them again.
READER_VERSION = 1


@dataclass
class LoadError:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class DocumentError(ValueError):
    """A file's content is not a valid document."""


def load_paths(
    paths: Iterable[str | Path], kind: Kind | None = None, fmt: str = "auto",
    ocr: str | None = None, known: dict[str, str] | None = None, unchanged: set[str] | None = None,
) -> tuple[list[Document], list[LoadError]]:
    """Load every supported file under ``paths``; ``kind`` overrides the documents' kind;
    ``ocr`` (tesseract's language, e.g. "eng") reads scanned PDF pages.

    ``known`` maps resolved file paths to the fingerprints they had when last read: a PDF
    or web page whose fingerprint is the same is not read again, and its path is added
    to ``unchanged``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    documents: dict[str, Document] = {}
    errors: list[LoadError] = []
    for file in _files(paths, errors):
        try:
            file_fmt = _detect(file) if fmt == "auto" else fmt
            if file_fmt in ("pdf", "html"):
                meta = sidecar_entry(file)
                fingerprint = file_fingerprint(file, meta, kind, ocr)
                if known and known.get(str(file.resolve())) == fingerprint:
                    if unchanged is not None:
                        unchanged.add(str(file.resolve()))
                    continue
                loaded = [_load_pdf_or_html(file, file_fmt, meta, kind, ocr, fingerprint)]
            else:
                loaded = list(load_file(file, file_fmt))
        except (DocumentError, ValidationError, OSError, UnicodeDecodeError) as exc:
            errors.append(LoadError(str(file), _describe(exc)))
            continue
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            errors.append(LoadError(str(file), f"cannot be parsed: {exc}".splitlines()[0]))
            continue
        for doc in loaded:
            if kind is not None:
                doc.kind = kind
            earlier = documents.get(doc.id)
            if earlier is not None and doc.id.startswith("pmid:"):
                # The same article in several public files (e.g. BioASQ batches): one document.
                earlier.sections += [s for s in doc.sections if s not in earlier.sections]
                continue
            if earlier is not None:
                errors.append(
                    LoadError(str(file), f"document id {doc.id!r} is already used by "
                              f"{earlier.path}; give it a unique `id`")
                )
                continue
            documents[doc.id] = doc
    return list(documents.values()), errors


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        fields = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid document metadata ({fields})"
    return str(exc)


def _files(paths: Iterable[str | Path], errors: list[LoadError]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in _SUFFIXES
                and p.name.lower() != "readme.md"
            )
        elif path.is_file():
            yield path
        else:
            errors.append(LoadError(str(path), "no such file or directory"))


def load_file(path: Path, fmt: str = "auto") -> Iterator[Document]:
    if fmt == "auto":
        fmt = _detect(path)
    loader = {
        "markdown": _load_markdown,
        "pdq": _load_pdq,
        "jsonl": _load_jsonl,
        "pubmedqa": _load_pubmedqa,
        "bioasq": _load_bioasq,
        "pdf": lambda p: [_load_pdf_or_html(p, "pdf", sidecar_entry(p))],
        "html": lambda p: [_load_pdf_or_html(p, "html", sidecar_entry(p))],
    }[fmt]
    yield from loader(path)


def _detect(path: Path) -> str:
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".json":
        with path.open(encoding="utf-8") as f:
            head = f.read(4096)
        if '"questions"' in head:
            return "bioasq"
        if '"QUESTION"' in head or '"CONTEXTS"' in head:
            return "pubmedqa"
        raise DocumentError("unrecognised JSON: expected PubMedQA or BioASQ; use JSONL "
                            "for the project's own documents")
    if path.suffix in (".md", ".markdown"):
        return "markdown"  # PDQ files are told apart after reading the front matter
    if path.suffix.lower() == ".pdf":
        return "pdf"
    if path.suffix.lower() in (".html", ".htm"):
        return "html"
    raise DocumentError(f"unsupported file type {path.suffix!r}; use .md, .jsonl, .json, "
                        ".pdf or .html")


# --- Markdown ------------------------------------------------------------------------

_LINK = re.compile(r"!?\[([^\]]*)\]\((?:[^()]|\([^)]*\))*\)")
_EMPHASIS = re.compile(r"(\*\*|__|(?<!\w)\*(?=\S)|(?<=\S)\*(?!\w))")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def split_front_matter(text: str) -> tuple[dict, str]:
    if not text.startswith("---"):
        raise DocumentError("no YAML front matter: start the file with a '---' block "
                            "holding at least `title` and `kind`")
    try:
        _, header, body = text.split("---", 2)
    except ValueError:
        raise DocumentError("front matter is not closed by a '---' line") from None
    meta = yaml.safe_load(header) or {}
    if not isinstance(meta, dict):
        raise DocumentError("front matter must be a YAML mapping of fields")
    return meta, body


def clean_inline(text: str) -> str:
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _EMPHASIS.sub("", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def markdown_sections(body: str, skip: re.Pattern[str] | None = None,
                      stop: re.Pattern[str] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Split a Markdown body by headings: (H1 titles, [(section path, text)])."""
    h1: list[str] = []
    path: list[tuple[int, str]] = []
    sections: list[tuple[str, str]] = []
    lines: list[str] = []
    skipping = False

    def flush() -> None:
        text = "\n".join(lines).strip()
        if text and not skipping:
            title = " > ".join(t for _, t in path[-2:])
            paragraphs = [clean_inline(p) for p in re.split(r"\n\s*\n", text)]
            sections.append((title, "\n\n".join(p for p in paragraphs if p)))
        lines.clear()

    for line in body.splitlines():
        match = _HEADING.match(line)
        if not match:
            if not line.lstrip().startswith("|"):  # tables quote badly; leave them out
                lines.append(line)
            continue
        flush()
        level, title = len(match.group(1)), clean_inline(match.group(2))
        if stop and stop.search(title):
            break
        if level == 1:
            h1.append(title)
            path = []
            continue
        path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        skipping = bool(skip and any(skip.search(t) for _, t in path))
    flush()
    return h1, sections


def _document(meta: dict, sections: list[tuple[str, str]], path: Path, default_id: str) -> Document:
    if not sections:
        raise DocumentError("has no text after its front matter")
    fields = {k: meta.get(k) for k in ("title", "kind", "source", "year", "url", "pmid", "doi")}
    missing = [k for k in ("title", "kind") if not fields[k]]
    if missing:
        raise DocumentError(f"front matter lacks {', '.join(missing)} "
                            "(kind must be 'guideline' or 'research')")
    for key in ("pmid", "doi", "url", "source"):
        if fields[key] is not None:
            fields[key] = str(fields[key]).strip() or None
    fields["source"] = fields["source"] or ""
    return Document(id=str(meta.get("id") or default_id), path=str(path),
                    sections=sections, **fields)


def _is_pdq(meta: dict) -> bool:
    """The PDQ scrape has no `kind`, and a cancer.gov URL with source NCI."""
    return "kind" not in meta and meta.get("source") == "NCI" and "cancer.gov" in str(meta.get("url"))


def _load_markdown(path: Path) -> Iterator[Document]:
    meta, body = split_front_matter(path.read_text(encoding="utf-8"))
    if _is_pdq(meta):
        yield from _load_pdq(path, meta, body)
        return
    h1, sections = markdown_sections(body)
    meta.setdefault("title", h1[0] if h1 else None)
    yield _document(meta, sections, path, path.stem)


_PDQ_DROP = re.compile(r"^(References|Current Clinical Trials)$", re.I)
_PDQ_END = re.compile(r"^(Latest Updates to This Summary|About This PDQ Summary)", re.I)
_PDQ_UPDATED = re.compile(r"Latest Updates to This Summary \((\d\d)/(\d\d)/(\d{4})\)")
_PDQ_CITATION = re.compile(r"\[(?:\[\d+\]\([^)]*\)[,\s]*)+\]")


def _load_pdq(path: Path, meta: dict | None = None, body: str | None = None) -> Iterator[Document]:
    if meta is None or body is None:
        meta, body = split_front_matter(path.read_text(encoding="utf-8"))
    updated = _PDQ_UPDATED.search(body)
    h1, sections = markdown_sections(_PDQ_CITATION.sub("", body), skip=_PDQ_DROP, stop=_PDQ_END)
    titles = [t for t in h1 if "Health Professional Version" in t] or h1 or [meta.get("title")]
    yield _document(
        {
            "title": titles[0],
            "kind": "guideline",
            "source": "National Cancer Institute PDQ",
            "year": int(updated.group(3)) if updated else None,
            "url": meta.get("url"),
        },
        sections, path, path.stem,
    )


# --- JSON formats --------------------------------------------------------------------

def _load_jsonl(path: Path) -> Iterator[Document]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise DocumentError("each line must be a JSON object")
                if "sections" in record:
                    sections = [(s.get("title", ""), s["text"]) for s in record["sections"]]
                else:
                    sections = [("", record.get("text") or "")]
                sections = [(t, x.strip()) for t, x in sections if x and x.strip()]
                yield _document(record, sections, path, f"{path.stem}-{number}")
            except (DocumentError, ValidationError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DocumentError(f"line {number}: {_describe(exc) if isinstance(exc, ValidationError) else exc}") from None


def pubmed_url(pmid: str) -> str:
    return f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/"


def _load_pubmedqa(path: Path) -> Iterator[Document]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DocumentError("PubMedQA file must be an object keyed by PMID")
    for pmid, item in data.items():
        sections = [(label.title(), text) for label, text in zip(item["LABELS"], item["CONTEXTS"])]
        year = item.get("YEAR")
        yield Document(
            id=f"pmid:{pmid}", title=item["QUESTION"], kind="research", source="PubMed",
            year=int(year) if year else None, pmid=str(pmid), url=pubmed_url(pmid),
            path=str(path), sections=sections,
        )


_PMID = re.compile(r"(\d+)\s*$")


def _load_bioasq(path: Path) -> Iterator[Document]:
    data = json.loads(path.read_text(encoding="utf-8"))
    titles: dict[str, str] = {}
    snippets: dict[str, list[str]] = {}
    for question in data["questions"]:
        for snippet in question.get("snippets", []):
            match = _PMID.search(snippet["document"])
            if not match:
                continue
            pmid, text = match.group(1), snippet["text"].strip()
            if snippet.get("beginSection") == "title":
                titles.setdefault(pmid, text)
            elif text not in snippets.setdefault(pmid, []):
                snippets[pmid].append(text)
    for pmid in sorted(set(titles) | set(snippets)):
        body = snippets.get(pmid) or [titles[pmid]]
        yield Document(
            id=f"pmid:{pmid}", title=titles.get(pmid) or untitled_name(pmid),
            kind="research", source="PubMed", pmid=pmid, url=pubmed_url(pmid),
            path=str(path), sections=[("Abstract excerpts", "\n\n".join(body))],
        )


# --- PDF and web pages ------------------------------------------------------------------

_FIELDS = ("id", "title", "kind", "source", "year", "url", "pmid", "doi")
_REFERENCES = re.compile(r"^(references?|bibliography|works cited|literature cited|"
                         r"cited literature|reference list)$", re.I)


@lru_cache(maxsize=64)
def _sidecar(folder: Path, _mtime: float) -> dict[str, dict]:
    """The metadata of a folder's PDFs and web pages, by file name (see the module doc)."""
    for name in SIDECARS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            if path.suffix == ".csv":
                with path.open(encoding="utf-8", newline="") as f:
                    rows = list(csv.DictReader(f))
                if rows and "file" not in rows[0]:
                    raise DocumentError(f"{path}: needs a `file` column")
                entries = {row.pop("file"): row for row in rows}
            else:
                entries = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, csv.Error, UnicodeDecodeError) as exc:
            raise DocumentError(f"{path} cannot be parsed: {exc}".splitlines()[0]) from None
        if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
            raise DocumentError(f"{path} must map each file name to its fields")
        for file, entry in entries.items():
            unknown = set(entry) - set(_FIELDS)
            if unknown:
                raise DocumentError(f"{path}: {file}: unknown field(s) {', '.join(sorted(unknown))}"
                                    f"; use {', '.join(_FIELDS)}")
        return {str(k): {f: v for f, v in e.items() if v not in (None, "")}
                for k, e in entries.items()}
    return {}


def sidecar_entry(path: Path) -> dict:
    """This file's fields from the sidecar in its folder, if there is one."""
    folder = path.parent
    # The sidecars' times are part of the cache key: an edited sidecar is read again.
    mtime = max(((folder / n).stat().st_mtime for n in SIDECARS if (folder / n).is_file()),
                default=0.0)
    return dict(_sidecar(folder.resolve(), mtime).get(path.name, {}))


def file_fingerprint(path: Path, meta: dict, kind: Kind | None, ocr: str | None) -> str:
    """What a PDF or web page was read from: its bytes, its sidecar entry, the kind and
    OCR options, and the reader's version."""
    digest = hashlib.sha256(path.read_bytes())
    digest.update(json.dumps([meta, kind, ocr, READER_VERSION], sort_keys=True,
                             default=str).encode())
    return digest.hexdigest()


def block_sections(blocks: list[Block]) -> tuple[list[str], list[tuple[str, str]],
                                                  list[list[tuple[int, int]]], list[str | None]]:
    """Headings and paragraphs into (level-1 titles, [(section path, text)], each
    section's page starts, each section's anchor), as ``markdown_sections`` does for
    Markdown; a references list ("References", "Bibliography") is left out up to the next
    heading of its level or higher."""
    h1: list[str] = []
    path: list[tuple[int, str, str | None]] = []
    sections: list[tuple[str, str]] = []
    pages: list[list[tuple[int, int]]] = []
    anchors: list[str | None] = []
    body: list[Block] = []

    def flush() -> None:
        skipping = any(_REFERENCES.match(t) for _, t, _ in path)
        if body and not skipping:
            text, starts = "", []
            for block in body:
                text += "\n\n" if text else ""
                for offset, page in block.pages:
                    if not starts or starts[-1][1] != page:
                        starts.append((len(text) + offset, page))
                text += block.text
            sections.append((" > ".join(t for _, t, _ in path[-2:]), text))
            pages.append(starts)
            anchors.append(next((a for _, _, a in reversed(path) if a), None))
        body.clear()

    for block in blocks:
        text = block.text.strip()
        if block.level == 0 and not _REFERENCES.match(text):
            body.append(block)
            continue
        flush()
        if block.level == 1:
            h1.append(text)
            path = []
            continue
        # A "References" line set as a paragraph: a heading just below the current one.
        level = block.level or (path[-1][0] + 1 if path else 2)
        path = [entry for entry in path if entry[0] < level] + [(level, text, block.anchor)]
    flush()
    return h1, sections, pages, anchors


def _load_pdf_or_html(path: Path, fmt: str, meta: dict, kind: Kind | None = None,
                      ocr: str | None = None, fingerprint: str | None = None) -> Document:
    if fmt == "pdf":
        from assistant.pdf import PdfError, read_pdf

        try:
            found, blocks = read_pdf(path, ocr=ocr)
        except PdfError as exc:
            raise DocumentError(str(exc)) from None
    else:
        from assistant.html import read_html

        found, blocks = read_html(path)
    h1, sections, pages, anchors = block_sections(blocks)
    # The sidecar first, then what the file says of itself, then --kind for a missing kind.
    fields = {k: v for k, v in found.items() if v} | meta
    fields.setdefault("title", h1[0] if h1 else path.stem)
    if kind is not None:
        fields["kind"] = kind
    if not fields.get("kind"):
        raise DocumentError(
            f"no kind: give --kind guideline|research, or list {path.name} with its `kind` "
            f"in a {SIDECARS[0]} or {SIDECARS[2]} beside it")
    if not sections:
        raise DocumentError("no text was found in it (only headings or references?)")
    doc = _document(fields, sections, path, path.stem)
    doc.section_pages = pages if fmt == "pdf" else []
    doc.section_anchors = anchors if fmt == "html" and any(anchors) else []
    doc.fingerprint = fingerprint or file_fingerprint(path, meta, kind, ocr)
    return doc
