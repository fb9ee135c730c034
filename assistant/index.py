"""The index on disk: FAISS vectors per kind, passage store and manifest.

Layout of ``indexes/NAME/``::

    CURRENT                 name of the live build (replaced atomically)
    builds/<build>/         manifest.json, documents.json, passages.jsonl,
                            vectors.npy, guideline.faiss, research.faiss

A build is written completely into a fresh folder before CURRENT is switched to it with
an atomic rename, so a crash or a bad file never leaves a half-written index and readers
always see a complete build. Ingest is a sync: unchanged documents keep their vectors,
changed ones are re-embedded, and documents whose files under the ingested paths are
gone are removed. Documents loaded from other paths are kept. Embeddings are checkpointed
as they are made (assistant/checkpoint.py): an ingest that was killed, run again, embeds
only what it had not embedded yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from assistant.checkpoint import EmbeddingCheckpoint
from assistant.chunking import Chunker, embedded_text
from assistant.embedding import Embedder, load_embedder
from assistant.readers import LoadError, load_paths
from assistant.settings import Settings
from assistant.types import KINDS, Document, Kind, Passage, ScoredPassage

FORMAT_VERSION = 1
KEEP_BUILDS = 2  # the live build and the one before it


class IndexError_(RuntimeError):
    """Base for index problems the user can fix."""


class IndexNotFoundError(IndexError_):
    pass


class IndexMismatchError(IndexError_):
    pass


class IngestError(IndexError_):
    pass


@dataclass
class DocumentInfo:
    id: str
    title: str
    kind: Kind
    source: str
    year: int | None
    url: str | None
    pmid: str | None
    doi: str | None
    path: str
    hash: str
    passages: int
    fingerprint: str = ""  # PDF and web page: what the file was read from (readers.py)

    @classmethod
    def from_document(cls, doc: Document, digest: str, passages: int) -> "DocumentInfo":
        return cls(id=doc.id, title=doc.title, kind=doc.kind, source=doc.source, year=doc.year,
                   url=doc.url, pmid=doc.pmid, doi=doc.doi, path=doc.path, hash=digest,
                   passages=passages, fingerprint=doc.fingerprint)


@dataclass
class IngestReport:
    index_path: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[LoadError] = field(default_factory=list)
    passages_embedded: int = 0
    passages_reused: int = 0  # of those, vectors kept by an interrupted ingest's checkpoint
    passages_total: int = 0
    seconds: float = 0.0
    written: bool = False
    where: str = ""  # the store, when it is not the folder index_path (Milvus)

    def summary(self) -> str:
        lines = [
            f"{self.where or f'index {self.index_path}'}: {len(self.added)} added, "
            f"{len(self.updated)} updated, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged; "
            f"{self.passages_embedded} passages embedded"
            + (f" ({self.passages_reused} of them reused from an interrupted ingest)"
               if self.passages_reused else "")
            + f", {self.passages_total} in the index "
            f"({self.seconds:.1f} s)" + ("" if self.written else " — index already up to date"),
        ]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} file(s):")
            lines += [f"  {error}" for error in self.skipped]
        return "\n".join(lines)


def _manifest_settings(settings: Settings, embedder: Embedder) -> dict:
    return {
        "embedder": settings.embedder,
        "dimension": embedder.dimension,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
    }


# How chunking.embedded_text writes a passage for the embedder. Part of every document's
# hash, so when it changes the next ingest embeds every document again (2: documents
# without a title of their own have no header).
PASSAGE_TEXT_VERSION = 2


def document_hash(doc: Document, params: dict) -> str:
    # Where sections are (pages, anchors) is part of the hash only where a document has it,
    # so documents of the other formats keep the hash they had before it existed.
    exclude = {"path", "fingerprint"} | {
        name for name in ("section_pages", "section_anchors") if not getattr(doc, name)}
    content = doc.model_dump(exclude=exclude)
    blob = json.dumps([content, params, PASSAGE_TEXT_VERSION], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


IVFPQ_MIN_PASSAGES = 10_000  # IVF-PQ training needs this many vectors; fewer: flat
IVFPQ_RERANK = 4  # IVF-PQ fetches 4k candidates and re-ranks them on the exact vectors


def choose_index_type(settings: Settings, passages: int) -> str:
    """The vector index for one kind of this size: exact (flat) unless it is large."""
    chosen = settings.index_type
    if chosen == "auto":
        chosen = "hnsw" if passages >= settings.ann_min_passages else "flat"
    if chosen == "ivfpq" and passages < IVFPQ_MIN_PASSAGES:
        chosen = "flat"
    return chosen


def build_faiss(vectors: np.ndarray, index_type: str, params: dict) -> faiss.Index:
    """A FAISS index over unit vectors, inner product (= cosine), of the given type;
    ``params`` holds hnsw_m and hnsw_ef_construction (see Settings)."""
    dimension = vectors.shape[1]
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["hnsw_ef_construction"]
    elif index_type == "ivfpq":  # 8-dimensional sub-vectors, 8 bits each: 48 bytes a vector
        lists = int(min(4 * np.sqrt(len(vectors)), len(vectors) // 39, 4096))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dimension), dimension, lists,
                                 dimension // 8, 8, faiss.METRIC_INNER_PRODUCT)
        # k-means on a sample: 40 vectors a list is enough and keeps training minutes long
        sample = np.random.default_rng(0).permutation(len(vectors))[:40 * lists]
        index.train(vectors[np.sort(sample)])
    else:
        index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(vectors)
    return index


def configure_search(index: faiss.Index, settings: Settings) -> None:
    """Search breadth of approximate indexes, from the settings (not stored in the file)."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = settings.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = settings.ivf_nprobe


def check_manifest(manifest: dict, settings: Settings | None, where: str, option: str) -> None:
    """Refuse a build this program cannot read, or one made with another embedder than
    the settings name (its vectors would not be comparable with the questions')."""
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"{where} has format version {manifest.get('format_version')}, this "
            f"program reads version {FORMAT_VERSION}: rebuild it with `assistant ingest "
            f"... {option} --rebuild`"
        )
    if settings is not None and manifest["embedder"] != settings.embedder:
        raise IndexMismatchError(
            f"{where} was built with embedder {manifest['embedder']!r} "
            f"({manifest['dimension']} dimensions) but the settings use "
            f"{settings.embedder!r}: set ASSISTANT_EMBEDDER={manifest['embedder']} or "
            f"rebuild with `assistant ingest ... {option} --rebuild`"
        )


def open_index(settings: Settings, check: bool = True) -> "Index":
    """The live build of the store the settings name: FAISS files in settings.index_path,
    or a Milvus collection (assistant/milvus.py). ``check``: refuse another embedder."""
    if settings.store == "milvus":
        from assistant.milvus import MilvusIndex

        return MilvusIndex.open(settings, check=check)
    return Index.open(settings.index_path, settings if check else None)


def has_index(settings: Settings) -> bool:
    if settings.store == "milvus":
        from assistant.milvus import MilvusIndex

        return MilvusIndex.current_build_of(settings) is not None
    return Index.current_build(Path(settings.index_path)) is not None


def store_name(settings: Settings) -> str:
    """How messages name a Milvus store ("" for the FAISS folder, named by its path)."""
    if settings.store != "milvus":
        return ""
    return f"Milvus index {settings.milvus_collection!r} at {settings.milvus_uri}"


def write_index(settings: Settings, manifest: dict, documents: list["DocumentInfo"],
                passages: list[Passage], vectors: np.ndarray) -> None:
    """A new build, switched in whole: see Index.write and MilvusIndex.write."""
    if settings.store == "milvus":
        from assistant.milvus import MilvusIndex

        MilvusIndex.write(settings, manifest, documents, passages, vectors)
    else:
        Index.write(Path(settings.index_path), manifest, documents, passages, vectors)


class Index:
    """A loaded build: passages, their vectors and one FAISS index per kind."""

    def __init__(self, path: Path, build: Path, manifest: dict,
                 documents: dict[str, DocumentInfo], passages: list[Passage], vectors: np.ndarray,
                 faiss_indexes: dict[str, faiss.Index]):
        self.path, self.build, self.manifest = path, build, manifest
        self.documents, self.passages, self.vectors = documents, passages, vectors
        self.faiss = faiss_indexes
        self.rows = {k: np.array([i for i, p in enumerate(passages) if p.kind == k], dtype=np.int64)
                     for k in KINDS}
        self.row_of = {p.id: i for i, p in enumerate(passages)}

    def neighbours(self, passage: Passage) -> tuple[str | None, str | None]:
        """The texts of the passages just before and after one in its document section
        (passage ids are ``<doc id>#<n>`` in document order): where a passage was cut out
        of a sentence, they tell (see sentences.passage_sentences)."""
        doc_id, _, n = passage.id.rpartition("#")
        if not n.isdigit():
            return None, None
        around = []
        for other in (f"{doc_id}#{int(n) - 1}", f"{doc_id}#{int(n) + 1}"):
            row = self.row_of.get(other)
            near = self.passages[row] if row is not None else None
            around.append(near.text if near is not None and near.section == passage.section
                          else None)
        return around[0], around[1]

    # -- reading ----------------------------------------------------------------------

    @staticmethod
    def current_build(path: Path) -> Path | None:
        pointer = path / "CURRENT"
        if not pointer.is_file():
            return None
        return path / "builds" / pointer.read_text().strip()

    def created(self) -> float:
        """When this build was made (seconds since the epoch)."""
        return self.build.stat().st_mtime

    @classmethod
    def open(cls, path: str | Path, settings: Settings | None = None) -> "Index":
        if settings is not None and settings.store == "milvus":  # path is not used
            return open_index(settings)
        path = Path(path)
        build = cls.current_build(path)
        if build is None or not (build / "manifest.json").is_file():
            raise IndexNotFoundError(
                f"no index at {path}: build one with `assistant ingest corpus/ --index {path}`"
            )
        manifest = json.loads((build / "manifest.json").read_text())
        check_manifest(manifest, settings, f"index {path}", f"--index {path}")
        documents = {d["id"]: DocumentInfo(**d)
                     for d in json.loads((build / "documents.json").read_text())}
        with (build / "passages.jsonl").open() as f:
            passages = [Passage.model_validate_json(line) for line in f]
        # Memory-mapped: pages are read as searches touch them, and processes serving the
        # same build share them.
        vectors = np.load(build / "vectors.npy", mmap_mode="r")
        faiss_indexes = {k: faiss.read_index(str(build / f"{k}.faiss")) for k in KINDS}
        for index in faiss_indexes.values():
            configure_search(index, settings or Settings())
        return cls(path, build, manifest, documents, passages, vectors, faiss_indexes)

    def check_embedder(self, embedder: Embedder) -> None:
        if embedder.dimension != self.manifest["dimension"]:
            raise IndexMismatchError(
                f"index {self.path} holds {self.manifest['dimension']}-dimensional vectors "
                f"but embedder {embedder.name!r} makes {embedder.dimension}: rebuild the "
                f"index with this embedder (`assistant ingest ... --rebuild`)"
            )

    def search_rows(self, query: np.ndarray, kind: Kind, k: int) -> list[int]:
        """Positions within ``self.rows[kind]`` of the k nearest passages, best first."""
        index = self.faiss[kind]
        if index.ntotal == 0:
            return []
        if not isinstance(index, faiss.IndexIVFPQ):
            _, hits = index.search(query.reshape(1, -1), min(k, index.ntotal))
            return [int(h) for h in hits[0] if h >= 0]
        # Product-quantised scores are coarse: re-rank more candidates on exact vectors.
        _, hits = index.search(query.reshape(1, -1), min(IVFPQ_RERANK * k, index.ntotal))
        candidates = hits[0][hits[0] >= 0]
        exact = self.vectors[self.rows[kind][candidates]] @ query
        return [int(h) for h in candidates[np.argsort(-exact, kind="stable")[:k]]]

    def search(self, query: np.ndarray, kind: Kind, k: int) -> list[ScoredPassage]:
        """Dense search only: the k nearest passages of a kind with their cosine scores."""
        rows = self.rows[kind]
        return [ScoredPassage(passage=self.passages[rows[h]],
                              score=float(self.vectors[rows[h]] @ query))
                for h in self.search_rows(query, kind, k)]

    # -- writing ----------------------------------------------------------------------

    @staticmethod
    def write(path: Path, manifest: dict, documents: list[DocumentInfo],
              passages: list[Passage], vectors: np.ndarray) -> Path:
        builds = path / "builds"
        builds.mkdir(parents=True, exist_ok=True)
        name = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        staging = builds / f".staging-{name}"
        staging.mkdir()
        try:
            (staging / "documents.json").write_text(
                json.dumps([d.__dict__ for d in documents], indent=1, ensure_ascii=False))
            with (staging / "passages.jsonl").open("w") as f:
                for p in passages:
                    f.write(p.model_dump_json() + "\n")
            np.save(staging / "vectors.npy", vectors)
            for kind in KINDS:
                rows = [i for i, p in enumerate(passages) if p.kind == kind]
                index = build_faiss(vectors[rows],
                                    manifest.get("index_types", {}).get(kind, "flat"),
                                    manifest.get("index_params", {}))
                faiss.write_index(index, str(staging / f"{kind}.faiss"))
            # The manifest goes last: a build without one is never opened.
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
            _fsync_tree(staging)
            os.rename(staging, builds / name)
            pointer = path / f".CURRENT.{name}"
            pointer.write_text(name)
            os.replace(pointer, path / "CURRENT")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _prune(builds, keep=name)
        return builds / name


def _fsync_tree(folder: Path) -> None:
    for file in folder.iterdir():
        with file.open("rb") as f:
            os.fsync(f.fileno())


def _prune(builds: Path, keep: str) -> None:
    finished = sorted(p for p in builds.iterdir() if not p.name.startswith("."))
    for old in finished[:-KEEP_BUILDS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
    for staging in builds.glob(".staging-*"):  # left by a crash
        if time.time() - staging.stat().st_mtime > 3600:
            shutil.rmtree(staging, ignore_errors=True)


def _under(path: str, roots: list[Path]) -> bool:
    resolved = Path(path).resolve()
    return any(resolved == r or r in resolved.parents for r in roots)


def ingest(paths: list[str | Path], settings: Settings, kind: Kind | None = None,
           fmt: str = "auto", rebuild: bool = False, progress: bool = True) -> IngestReport:
    """Load, chunk, embed and store; see the module docstring for the sync rules."""
    started = time.perf_counter()
    index_path = Path(settings.index_path)
    report = IngestReport(index_path=index_path, where=store_name(settings))
    previous = None
    if not rebuild and has_index(settings):
        previous = open_index(settings, check=False)
    # PDFs and web pages whose file, sidecar entry and options are unchanged are not read
    # again (reading a PDF costs more than hashing it); their passages are kept.
    known = {str(Path(info.path).resolve()): info.fingerprint
             for info in (previous.documents.values() if previous else []) if info.fingerprint}
    unchanged_files: set[str] = set()
    documents, report.skipped = load_paths(paths, kind=kind, fmt=fmt,
                                           ocr=settings.ocr_language if settings.ocr else None,
                                           known=known, unchanged=unchanged_files)

    embedder = load_embedder(settings.embedder, settings.device, settings.embed_batch_size,
                             settings.embed_precision)
    if settings.chunk_tokens + 2 > embedder.max_tokens:
        raise IngestError(f"chunk_tokens={settings.chunk_tokens} does not fit embedder "
                          f"{settings.embedder!r} window of {embedder.max_tokens} tokens")
    params = _manifest_settings(settings, embedder)

    if previous is not None:
        old_params = {k: previous.manifest.get(k) for k in params}
        if old_params != params:
            raise IndexMismatchError(
                f"{store_name(settings) or f'index {index_path}'} was built with "
                f"{old_params}, the settings ask for "
                f"{params}: use --rebuild to re-embed everything, or another --index"
            )
    if not documents and not unchanged_files and previous is None:
        raise IngestError("no documents could be loaded; nothing was written\n"
                          + "\n".join(f"  {e}" for e in report.skipped))

    old_docs = previous.documents if previous else {}
    old_rows: dict[str, list[int]] = {}
    if previous:
        for row, passage in enumerate(previous.passages):
            old_rows.setdefault(passage.doc_id, []).append(row)

    roots = [Path(p).resolve() for p in paths]
    failed = {Path(e.path).resolve() for e in report.skipped}
    loaded_ids = {d.id for d in documents}
    kept: list[DocumentInfo] = []
    for doc_id, info in old_docs.items():
        if doc_id in loaded_ids:
            continue
        if str(Path(info.path).resolve()) in unchanged_files:
            report.unchanged.append(doc_id)
            kept.append(info)
        elif _under(info.path, roots) and Path(info.path).resolve() not in failed:
            report.removed.append(doc_id)
        else:
            kept.append(info)  # from other paths, or its file failed to load this time

    chunker = Chunker(embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap)
    infos: list[DocumentInfo] = []
    passages: list[Passage] = []
    vector_parts: list[np.ndarray] = []
    to_embed: list[Passage] = []
    titles: dict[str, str] = {}
    for info in kept:
        infos.append(info)
        rows = old_rows.get(info.id, [])
        passages += [previous.passages[r] for r in rows]
        vector_parts.append(previous.vectors[rows])
    for doc in documents:
        digest = document_hash(doc, params)
        old = old_docs.get(doc.id)
        if old is not None and old.hash == digest:
            report.unchanged.append(doc.id)
            rows = old_rows.get(doc.id, [])
            infos.append(DocumentInfo.from_document(doc, digest, len(rows)))
            passages += [previous.passages[r] for r in rows]
            vector_parts.append(previous.vectors[rows])
            continue
        (report.updated if old is not None else report.added).append(doc.id)
        new = chunker.chunk(doc)
        infos.append(DocumentInfo.from_document(doc, digest, len(new)))
        titles[doc.id] = doc.title
        to_embed += new

    if not (report.added or report.updated or report.removed) and previous is not None:
        report.passages_total = len(previous.passages)
        report.seconds = time.perf_counter() - started
        return report

    checkpoint = None
    if to_embed:
        checkpoint = EmbeddingCheckpoint(
            index_path, f"{settings.embedder}|{embedder.precision}|{embedder.dimension}",
            embedder.dimension)
        if settings.ingest_threads:
            import torch

            torch.set_num_threads(settings.ingest_threads)
        texts = [embedded_text(titles[p.doc_id], p.section, p.text) for p in to_embed]
        embedded = checkpoint.get(texts)
        report.passages_reused = len(embedded)
        missing = [i for i in range(len(texts)) if i not in embedded]
        step = settings.embed_batch_size * 8
        with tqdm(total=len(texts), initial=len(embedded), unit="passage", desc="embedding",
                  disable=not progress) as bar:
            for start in range(0, len(missing), step):
                batch = missing[start:start + step]
                batch_texts = [texts[i] for i in batch]
                vectors = embedder.embed(batch_texts)
                checkpoint.put(batch_texts, vectors)
                embedded.update(zip(batch, vectors))
                bar.update(len(batch))
        passages += to_embed
        vector_parts.append(np.stack([embedded[i] for i in range(len(texts))]))
    report.passages_embedded = len(to_embed)

    # fp32 or bf16; "bf16+fp32" when an incremental ingest mixed them (they are compatible).
    precisions = (set(previous.manifest.get("embed_precision", "fp32").split("+"))
                  if previous is not None and len(passages) > len(to_embed) else set())
    precisions |= {embedder.precision} if to_embed else set()
    dimension = embedder.dimension
    vectors = (np.concatenate(vector_parts) if vector_parts
               else np.zeros((0, dimension), dtype=np.float32)).astype(np.float32)
    manifest = {
        "format_version": FORMAT_VERSION,
        **params,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "embed_precision": "+".join(sorted(precisions)),
        "index_types": {k: choose_index_type(settings, sum(p.kind == k for p in passages))
                        for k in KINDS},
        "index_params": {"hnsw_m": settings.hnsw_m,
                         "hnsw_ef_construction": settings.hnsw_ef_construction},
        "documents": {i.id: i.hash for i in infos},
        "counts": {
            "documents": len(infos), "passages": len(passages),
            **{f"{k}_passages": sum(p.kind == k for p in passages) for k in KINDS},
        },
    }
    from assistant import __version__
    manifest["assistant_version"] = __version__
    write_index(settings, manifest, infos, passages, vectors)
    if checkpoint is not None:
        checkpoint.remove()  # the build it served is live
    report.passages_total = len(passages)
    report.written = True
    report.seconds = time.perf_counter() - started
    return report
