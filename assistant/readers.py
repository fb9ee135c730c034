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

A file that cannot be read becomes a LoadError naming the file and the problem; the
other files still load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from assistant.types import Document, Kind, untitled_name

FORMATS = ("auto", "markdown", "pdq", "jsonl", "pubmedqa", "bioasq")
_SUFFIXES = {".md", ".markdown", ".jsonl", ".json"}


@dataclass
class LoadError:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class DocumentError(ValueError):
    """A file's content is not a valid document."""


def load_paths(
    paths: Iterable[str | Path], kind: Kind | None = None, fmt: str = "auto"
) -> tuple[list[Document], list[LoadError]]:
    """Load every supported file under ``paths``; ``kind`` overrides the documents' kind."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    documents: dict[str, Document] = {}
    errors: list[LoadError] = []
    for file in _files(paths, errors):
        try:
            loaded = list(load_file(file, fmt))
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
                if p.is_file() and p.suffix in _SUFFIXES and p.name.lower() != "readme.md"
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
    raise DocumentError(f"unsupported file type {path.suffix!r}; use .md, .jsonl or .json")


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
