"""The index on Milvus: passages, vectors and BM25 in collections that several machines
share (``ASSISTANT_STORE=milvus``).

``ASSISTANT_MILVUS_URI`` is a local path (Milvus Lite, embedded in the process) or
``http://host:19530`` (a Milvus standalone server or cluster); the client, pymilvus, is the
same for both. Collections, for the name prefix ``P`` (``ASSISTANT_MILVUS_COLLECTION``)::

    P__meta                 small key/value rows: the pointer "current" to the live build,
                            and per build its manifest, documents and word counts (JSON,
                            cut into parts that fit a VARCHAR)
    P__<build>__guideline   one row a passage: row (its place in the build), the passage
    P__<build>__research    (JSON), its vector, the text BM25 reads and the sparse vector
                            Milvus's BM25 function makes of it

A build is written whole into new collections and checked before the single "current"
row is switched to it, so readers never see half of an ingest; the build before it stays
(a process that opened it keeps answering) and older ones are dropped. One collection per
kind because BM25 takes its statistics (document frequencies, mean length) over a whole
collection, as the FAISS store's BM25 takes them over one kind's passages.

Milvus does the searching: the dense candidates (its vector index) and the BM25
candidates (its sparse inverted index), and the BM25 scores of the dense candidates. The
fusion, the relevance bar and the composer are the project's own (retrieval.py), so an
answer is the same kind of answer as on the FAISS store. Each process still holds the
build's passages and vectors in memory, as the FAISS store does: the abbreviation senses,
the scope judge's word counts, the feedback step and the composer's neighbouring passages
read them there.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from assistant.chunking import embedded_text
from assistant.index import (
    DocumentInfo,
    Index,
    IndexError_,
    IndexNotFoundError,
    IngestReport,
    check_manifest,
    store_name,
)
from assistant.settings import Settings
from assistant.types import KINDS, Kind, Passage

PART_CHARS = 16_000  # a VARCHAR holds 65,535 bytes: 16,000 characters of any UTF-8
INSERT_ROWS = 1_000
READ_ROWS = 4_000
CURRENT = "current"


class IndexUnreachableError(IndexError_):
    pass


def _client(settings: Settings):
    """A client for the URI in the settings, or a plain error naming it."""
    from pymilvus import MilvusClient

    uri = settings.milvus_uri
    remote = re.match(r"^(https?|tcp|unix):", uri) is not None
    if not remote:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else ""
    try:
        # No keep-alive pings on an idle connection: gRPC servers with default settings
        # (Milvus Lite's) close a connection pinged more often than every 5 minutes
        # without calls ("too many pings"), and the client's recovery then fails.
        client = MilvusClient(uri=uri, token=token, timeout=settings.milvus_timeout_s,
                              grpc_options={"grpc.keepalive_time_ms": 300_000,
                                            "grpc.keepalive_permit_without_calls": False})
        client.list_collections()
    except Exception as exc:
        raise IndexUnreachableError(
            f"cannot reach Milvus at {uri} ({type(exc).__name__}: {str(exc)[:200]}): "
            + ("start the server or check ASSISTANT_MILVUS_URI and ASSISTANT_MILVUS_TOKEN"
               if remote else "is another process holding this Milvus Lite file? Several "
               "processes share a Milvus server (README: Milvus)")) from None
    return client


def _collection(prefix: str, build: str, kind: Kind) -> str:
    return f"{prefix}__{build}__{kind}"


def _meta(prefix: str) -> str:
    return f"{prefix}__meta"


class Meta:
    """The key/value collection: the "current" pointer, and JSON blobs cut into parts."""

    def __init__(self, client, prefix: str):
        self.client, self.name = client, _meta(prefix)

    def exists(self) -> bool:
        return self.client.has_collection(self.name)

    def create(self) -> None:
        from pymilvus import DataType, MilvusClient

        if self.exists():
            return
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("blob", DataType.VARCHAR, max_length=256)
        schema.add_field("part", DataType.INT64)
        schema.add_field("value", DataType.VARCHAR, max_length=65_535)
        # Milvus wants a vector field in every collection; this one is never searched.
        schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
        index = self.client.prepare_index_params()
        index.add_index("unused", index_type="FLAT", metric_type="L2")
        _create(self.client, self.name, schema, index)
        self.client.load_collection(self.name)

    def put(self, blob: str, text: str) -> None:
        parts = [text[i:i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
        rows = [{"key": f"{blob}#{n}", "blob": blob, "part": n, "value": part,
                 "unused": [0.0, 0.0]} for n, part in enumerate(parts)]
        for start in range(0, len(rows), 100):  # upsert: one row ("current") switches whole
            self.client.upsert(self.name, rows[start:start + 100])

    def get(self, blob: str) -> str | None:
        if not self.exists():
            return None
        self.client.load_collection(self.name)
        parts: list[dict] = []
        while True:  # a page of parts at a time: a blob may be megabytes
            page = self.client.query(
                self.name, filter=f'blob == "{blob}" and part >= {len(parts)} '
                                  f'and part < {len(parts) + 100}',
                output_fields=["part", "value"])
            parts += sorted(page, key=lambda r: r["part"])
            if len(page) < 100:
                break
        return "".join(p["value"] for p in parts) if parts else None

    def delete(self, blobs: list[str]) -> None:
        if blobs:
            self.client.delete(self.name, filter=f"blob in {json.dumps(blobs)}")


def _build_blobs(build: str) -> list[str]:
    return [f"{build}/manifest", f"{build}/documents", *(f"{build}/words-{k}" for k in KINDS)]


class MilvusIndex(Index):
    """A build in Milvus, loaded: passages and vectors in memory as Index has them; the
    dense and BM25 searches asked of Milvus."""

    def __init__(self, settings: Settings, client, build: str, manifest: dict,
                 documents: dict[str, DocumentInfo], passages: list[Passage],
                 vectors: np.ndarray, words: dict[str, dict]):
        super().__init__(Path(settings.index_path), Path(build), manifest, documents,
                         passages, vectors, {})
        self.client, self.settings, self.words = client, settings, words
        self.names = {k: _collection(settings.milvus_collection, build, k) for k in KINDS}

    @staticmethod
    def current_build_of(settings: Settings) -> str | None:
        return Meta(_client(settings), settings.milvus_collection).get(CURRENT)

    @classmethod
    def open(cls, settings: Settings, check: bool = True) -> "MilvusIndex":
        client = _client(settings)
        meta = Meta(client, settings.milvus_collection)
        where = store_name(settings)
        build = meta.get(CURRENT)
        if build is None:
            raise IndexNotFoundError(
                f"no index in {where}: build one with `ASSISTANT_STORE=milvus assistant "
                f"ingest corpus/` (or --from-index indexes/NAME to load a FAISS index)")
        manifest = json.loads(meta.get(f"{build}/manifest"))
        check_manifest(manifest, settings if check else None, where, "(ASSISTANT_STORE=milvus)")
        documents = {d["id"]: DocumentInfo(**d)
                     for d in json.loads(meta.get(f"{build}/documents"))}
        words = {k: json.loads(meta.get(f"{build}/words-{k}")) for k in KINDS}
        rows: list[tuple[int, Passage, list[float]]] = []
        total = manifest["counts"]["passages"]
        for kind in KINDS:
            name = _collection(settings.milvus_collection, build, kind)
            client.load_collection(name)
            # Pages of rows: one query returns 16,384 rows at most.
            for start in range(0, total, READ_ROWS):
                rows += [(r["row"], Passage.model_validate_json(r["passage"]), r["vector"])
                         for r in client.query(name, filter=f"row >= {start} and row < "
                                               f"{start + READ_ROWS}",
                                               output_fields=["row", "passage", "vector"])]
        rows.sort(key=lambda r: r[0])
        if [r[0] for r in rows] != list(range(total)):
            raise IndexNotFoundError(f"{where}: build {build} is incomplete ({len(rows)} rows)")
        vectors = (np.array([r[2] for r in rows], dtype=np.float32) if rows
                   else np.zeros((0, manifest["dimension"]), dtype=np.float32))
        return cls(settings, client, build, manifest, documents, [r[1] for r in rows],
                   vectors, words)

    def created(self) -> float:
        return datetime.fromisoformat(self.manifest["built_at"]).timestamp()

    # -- searching ----------------------------------------------------------------------

    def _local(self, kind: Kind, rows: list[int]) -> list[int]:
        """Positions within self.rows[kind] of build rows."""
        return [int(i) for i in np.searchsorted(self.rows[kind], rows)]

    def search_rows(self, query: np.ndarray, kind: Kind, k: int) -> list[int]:
        size = len(self.rows[kind])
        if not size:
            return []
        found = self.client.search(
            self.names[kind], data=[query.astype(np.float32).tolist()], anns_field="vector",
            limit=min(k, size), output_fields=["row"],
            search_params={"metric_type": "IP",
                           "params": {"ef": max(self.settings.hnsw_ef_search, k)}})
        return self._local(kind, [hit["entity"]["row"] for hit in found[0]])

    def lexical_indexes(self) -> dict[Kind, "MilvusLexical"]:
        return {kind: MilvusLexical(self, kind) for kind in KINDS}

    # -- writing ------------------------------------------------------------------------

    @staticmethod
    def write(settings: Settings, manifest: dict, documents: list[DocumentInfo],
              passages: list[Passage], vectors: np.ndarray) -> str:
        """A new build: its collections filled, indexed, loaded and counted, its blobs
        written, then the "current" row switched to it; on any failure the half-made build
        is dropped and the live one is untouched."""
        client = _client(settings)
        prefix = settings.milvus_collection
        meta = Meta(client, prefix)
        meta.create()
        build = f"b{datetime.now(timezone.utc):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}"
        manifest = {**manifest, "store": "milvus", "milvus_build": build,
                    "bm25_text": settings.milvus_bm25_text,
                    "bm25_k1": settings.bm25_k1, "bm25_b": settings.bm25_b}
        titles = {d.id: d.title for d in documents}
        try:
            words = {}
            for kind in KINDS:
                rows = [i for i, p in enumerate(passages) if p.kind == kind]
                texts = [embedded_text(titles[passages[i].doc_id], passages[i].section,
                                       passages[i].text) for i in rows]
                tokens = _project_words(texts)
                counts = Counter(w for passage_words in tokens for w in set(passage_words))
                words[kind] = {"size": len(rows), "counts": counts}
                lexical = ([" ".join(t) for t in tokens] if settings.milvus_bm25_text == "project"
                           else texts)
                name = _collection(prefix, build, kind)
                _create_passages(client, name, manifest, kind, settings)
                for start in range(0, len(rows), INSERT_ROWS):
                    client.insert(name, [
                        {"row": i, "passage": passages[i].model_dump_json(),
                         "lexical": lexical[n], "vector": vectors[i].astype(np.float32).tolist()}
                        for n, i in enumerate(rows[start:start + INSERT_ROWS], start)])
                # Flushed into a sealed segment: Milvus Lite scores BM25 over rows not yet
                # flushed with the statistics of the rows a filter keeps, not the collection's.
                client.flush(name)
                client.load_collection(name)
                stored = client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]
                if stored != len(rows):
                    raise IndexError_(f"Milvus holds {stored} of the {len(rows)} {kind} passages "
                                      f"written to {name}; the live index is unchanged")
            meta.put(f"{build}/manifest", json.dumps(manifest))
            meta.put(f"{build}/documents", json.dumps([d.__dict__ for d in documents],
                                                      ensure_ascii=False))
            for kind in KINDS:
                meta.put(f"{build}/words-{kind}", json.dumps(words[kind], ensure_ascii=False))
            previous = meta.get(CURRENT)
            meta.put(CURRENT, build)  # the switch: one row
        except BaseException:
            _drop(client, meta, prefix, build)
            raise
        _prune(client, meta, prefix, keep={build, previous})
        return build


def _project_words(texts: list[str]) -> list[list[str]]:
    """Each text as the project's BM25 reads it (bm25s tokens, stop words, stems)."""
    from assistant.retrieval import lexical_tokens, token_words

    return token_words(lexical_tokens(texts)) if texts else []


# Milvus's standard analyzer with the stop words bm25s removes; "project" text is already
# tokenized, so the analyzer only splits it again on the same word boundaries.
def _analyzer() -> dict:
    from bm25s.stopwords import STOPWORDS_EN

    return {"tokenizer": "standard",
            "filter": ["lowercase", {"type": "stop", "stop_words": list(STOPWORDS_EN)}]}


def _create_passages(client, name: str, manifest: dict, kind: Kind, settings: Settings) -> None:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("row", DataType.INT64, is_primary=True)
    schema.add_field("passage", DataType.VARCHAR, max_length=65_535)
    schema.add_field("lexical", DataType.VARCHAR, max_length=65_535, enable_analyzer=True,
                     analyzer_params=_analyzer())
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=manifest["dimension"])
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                 input_field_names=["lexical"], output_field_names=["sparse"]))
    index = client.prepare_index_params()
    # The FAISS store's choice per kind (flat below ann_min_passages, else HNSW with the
    # same graph settings); IVF-PQ has no counterpart here and is searched exactly.
    if manifest.get("index_types", {}).get(kind) == "hnsw":
        index.append(_IndexParam("vector", "HNSW", "", metric_type="IP", M=settings.hnsw_m,
                                 efConstruction=settings.hnsw_ef_construction))
    else:
        index.append(_IndexParam("vector", "FLAT", "", metric_type="IP"))
    index.append(_IndexParam("sparse", "SPARSE_INVERTED_INDEX", "", metric_type="BM25",
                             bm25_k1=settings.bm25_k1, bm25_b=settings.bm25_b))
    _create(client, name, schema, index)


def _IndexParam(*args, **kwargs):
    """An index's settings sent both ways: pymilvus 3 sends each knob as its own key (what a
    Milvus server reads), Milvus Lite 3.2 reads them only from a JSON "params" key, and
    without it built BM25 with k1 1.5 and b 0.75 and HNSW with its own graph settings."""
    from pymilvus.milvus_client.index import IndexParam

    class BothWays(IndexParam):
        def get_index_configs(self) -> dict:
            configs = dict(super().get_index_configs())
            knobs = {k: v for k, v in configs.items() if k not in ("index_type", "metric_type")}
            return {**configs, "params": knobs} if knobs else configs

    return BothWays(*args, **kwargs)


def _create(client, name: str, schema, index) -> None:
    # The indexes without waiting for them: a new collection is empty, loading it waits
    # anyway, and the wait asks for a timestamp that Milvus Lite does not give.
    client.create_collection(name, schema=schema)
    client.create_index(name, index, sync=False)


def _drop(client, meta: Meta, prefix: str, build: str) -> None:
    for kind in KINDS:
        name = _collection(prefix, build, kind)
        if client.has_collection(name):
            client.drop_collection(name)
    meta.delete(_build_blobs(build))


def _prune(client, meta: Meta, prefix: str, keep: set[str | None]) -> None:
    """Drop builds older than the live one and the one before it (a build newer than the
    live one is another ingest's, still being written)."""
    live = max(b for b in keep if b)
    builds = {name.split("__")[1] for name in client.list_collections()
              if name.startswith(prefix + "__b") and name.count("__") == 2}
    for build in sorted(builds):
        if build not in keep and build < live:
            _drop(client, meta, prefix, build)


class MilvusLexical:
    """BM25 of one kind's passages, asked of Milvus; the same questions as LexicalIndex."""

    def __init__(self, index: MilvusIndex, kind: Kind):
        self.index, self.kind = index, kind
        self.name = index.names[kind]
        self.size = len(index.rows[kind])
        self.document_frequency = Counter(index.words[kind]["counts"])
        self.project = index.manifest.get("bm25_text", "project") == "project"

    def _search(self, query: str, limit: int, rows: list[int] | None = None
                ) -> list[tuple[int, float]]:
        found = self.index.client.search(
            self.name, data=[query], anns_field="sparse", limit=limit, output_fields=["row"],
            filter=f"row in {rows}" if rows is not None else "",
            search_params={"metric_type": "BM25"})
        # Milvus Lite gives the BM25 score negated as a distance, a server gives it as is.
        return [(hit["entity"]["row"], abs(float(hit["distance"]))) for hit in found[0]]

    def candidates(self, text: str, words: list[str], depth: int, rows: list[int]
                   ) -> tuple[list[tuple[int, float]], list[float]]:
        query = " ".join(words) if self.project else text
        if not self.size or not re.search(r"\w", query):
            return [], [0.0] * len(rows)
        local = self.index._local
        top = self._search(query, min(depth, self.size))
        # Ties in row order, as LexicalIndex.search orders them.
        best = sorted(zip(local(self.kind, [r for r, _ in top]), (s for _, s in top)),
                      key=lambda hit: (-hit[1], hit[0]))
        known = dict(best)
        missing = [r for r in rows if r not in known]
        if missing:
            build_rows = [int(self.index.rows[self.kind][r]) for r in missing]
            found = self._search(query, len(missing), build_rows)
            known.update(zip(local(self.kind, [r for r, _ in found]), (s for _, s in found)))
        return best, [known.get(r, 0.0) for r in rows]


def import_index(source: Index, settings: Settings) -> IngestReport:
    """A FAISS build loaded into Milvus as it is: its passages, documents and vectors (no
    embedding; the embedder it was built with must be the settings')."""
    import time

    started = time.perf_counter()
    check_manifest(source.manifest, settings, f"index {source.path}", f"--index {source.path}")
    documents = list(source.documents.values())
    MilvusIndex.write(settings, dict(source.manifest), documents, source.passages,
                      np.asarray(source.vectors, dtype=np.float32))
    report = IngestReport(index_path=source.path, where=store_name(settings),
                          added=[d.id for d in documents], passages_total=len(source.passages),
                          written=True)
    report.seconds = time.perf_counter() - started
    return report
