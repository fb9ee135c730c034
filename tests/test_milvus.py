"""The Milvus store against Milvus Lite (a real Milvus, embedded; no mock): ingest as a
sync, builds switched whole, the same answers as the FAISS store, follow-ups, the
embedder check, an unreachable server."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from assistant import Assistant, Settings  # noqa: E402
from assistant.cli import main  # noqa: E402
from assistant.index import Index, IndexMismatchError, IndexNotFoundError, ingest  # noqa: E402
from assistant.milvus import (  # noqa: E402
    CURRENT,
    IndexUnreachableError,
    Meta,
    MilvusIndex,
    _client,
    import_index,
)

from .test_ingest import DOCS, write_docs  # noqa: E402


def milvus_settings(tmp_path, **changes) -> Settings:
    return Settings(**{"index_path": tmp_path / "work", "store": "milvus",
                       "milvus_uri": str(tmp_path / "milvus.db"), **changes})


def builds(settings: Settings) -> set[str]:
    return {name.split("__")[1] for name in _client(settings).list_collections()
            if name.count("__") == 2}


def test_ingest_reingest_change_delete(tmp_path):
    corpus = write_docs(tmp_path / "docs")
    settings = milvus_settings(tmp_path)

    first = ingest([corpus], settings, progress=False)
    assert sorted(first.added) == ["gl-crs", "rs-gd2"] and first.written
    index = Index.open(settings.index_path, settings)
    assert isinstance(index, MilvusIndex)
    assert set(index.documents) == {"gl-crs", "rs-gd2"}
    assert index.manifest["embedder"] == "all-MiniLM-L6-v2" and index.manifest["store"] == "milvus"
    assert {p.section for p in index.passages} >= {"Recognition", "Management", "Findings"}
    assert index.vectors.shape == (len(index.passages), 384)
    build = MilvusIndex.current_build_of(settings)

    again = ingest([corpus], settings, progress=False)
    assert again.passages_embedded == 0 and not again.written
    assert sorted(again.unchanged) == ["gl-crs", "rs-gd2"]
    assert MilvusIndex.current_build_of(settings) == build  # nothing rewritten

    crs = corpus / "crs.md"
    crs.write_text(crs.read_text().replace("fever,", "high fever,"))
    (corpus / "gd2.md").unlink()
    changed = ingest([corpus], settings, progress=False)
    assert changed.updated == ["gl-crs"] and changed.removed == ["rs-gd2"]
    index = Index.open(settings.index_path, settings)
    assert changed.passages_embedded == index.documents["gl-crs"].passages
    assert set(index.documents) == {"gl-crs"}
    assert any("high fever" in p.text for p in index.passages)
    assert all(p.doc_id == "gl-crs" for p in index.passages)
    assert index.lexical_indexes()["research"].size == 0
    answer = Assistant(index, settings).ask("How is cytokine release syndrome treated?")
    assert [r.doc_id for r in answer.references] == ["gl-crs"]

    # The build before the live one stays (a process may still read it); older ones go.
    write_docs(corpus, {"gd2.md": DOCS["gd2.md"]})
    ingest([corpus], settings, progress=False)
    assert len(builds(settings)) == 2 and build not in builds(settings)


def test_a_failed_build_leaves_the_live_one(tmp_path, monkeypatch):
    corpus = write_docs(tmp_path / "docs")
    settings = milvus_settings(tmp_path)
    ingest([corpus], settings, progress=False)
    live, collections = MilvusIndex.current_build_of(settings), builds(settings)

    put = Meta.put

    def failing_put(self, blob, text):
        if blob.endswith("/documents"):  # after the new collections were filled
            raise RuntimeError("disk full")
        put(self, blob, text)

    monkeypatch.setattr(Meta, "put", failing_put)
    crs = corpus / "crs.md"
    crs.write_text(crs.read_text().replace("fever,", "high fever,"))
    with pytest.raises(RuntimeError, match="disk full"):
        ingest([corpus], settings, progress=False)
    assert MilvusIndex.current_build_of(settings) == live
    assert builds(settings) == collections  # the half-made build was dropped
    index = Index.open(settings.index_path, settings)
    assert not any("high fever" in p.text for p in index.passages)


@pytest.fixture(scope="module")
def milvus_starter(starter_index, tmp_path_factory) -> Settings:
    """The starter FAISS index loaded into Milvus Lite with its vectors (--from-index)."""
    settings = milvus_settings(tmp_path_factory.mktemp("milvus"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ASSISTANT_STORE", "milvus")
        env.setenv("ASSISTANT_MILVUS_URI", settings.milvus_uri)
        assert main(["ingest", "--from-index", str(starter_index)]) == 0
    index = MilvusIndex.open(settings)
    assert len(index.passages) == len(Index.open(starter_index).passages)
    assert index.manifest["documents"] == Index.open(starter_index).manifest["documents"]
    return settings


def test_answers_and_follow_ups_match_the_faiss_store(milvus_starter, starter_assistant):
    on_milvus = Assistant.open(settings=milvus_starter)
    assert len(on_milvus.index.passages) == len(starter_assistant.index.passages)
    history = {"faiss": [], "milvus": []}
    for question in ["What is the role of CAR T cells in the treatment of solid tumours?",
                     "What about its toxicities?",
                     "How is cytokine release syndrome managed?"]:
        answers = {}
        for store, assistant in (("faiss", starter_assistant), ("milvus", on_milvus)):
            answers[store] = assistant.ask(question, history=history[store])
            history[store].append(answers[store])
        faiss, milvus = answers["faiss"], answers["milvus"]
        assert milvus.standalone_query == faiss.standalone_query
        assert milvus.references and not milvus.abstained
        # Milvus's BM25 scores are not bm25s's to the digit (README: Milvus), so the
        # fused order may differ a little; the evidence is the same evidence.
        cited = {r.doc_id for r in milvus.references}
        assert len(cited & {r.doc_id for r in faiss.references}) >= len(faiss.references) / 2
        assert milvus.to_text().rstrip().endswith("Have a follow-up question?")
    assert "toxicit" in history["milvus"][1].standalone_query
    # The composer's neighbouring passages come from Milvus too.
    passage = next(p for p in on_milvus.index.passages if p.id.endswith("#1"))
    assert on_milvus.index.neighbours(passage) == starter_assistant.index.neighbours(passage)


def test_milvus_bm25_ranks_as_bm25s(milvus_starter, starter_assistant):
    """With the project's words as BM25 text, Milvus's BM25 finds mostly bm25s's passages,
    and scores a dense candidate as in its own ranking."""
    words_of = starter_assistant.retriever.lexical
    on_milvus = Assistant.open(settings=milvus_starter).retriever.lexical
    from assistant.retrieval import lexical_words

    text = "cytokine release syndrome tocilizumab"
    for kind in ("guideline", "research"):
        ours, _ = words_of[kind].candidates(text, lexical_words(text), 10, [])
        theirs, _ = on_milvus[kind].candidates(text, lexical_words(text), 10, [])
        assert len({r for r, _ in theirs[:5]} & {r for r, _ in ours[:5]}) >= 3
        _, scores = on_milvus[kind].candidates(text, lexical_words(text), 3, [theirs[-1][0], 0])
        assert scores[0] == pytest.approx(theirs[-1][1], rel=1e-4)


def test_wrong_embedder_is_refused(milvus_starter, starter_index):
    other = milvus_starter.with_overrides(embedder="some-other-embedder")
    with pytest.raises(IndexMismatchError, match="built with embedder 'all-MiniLM-L6-v2'"):
        Assistant.open(settings=other)
    with pytest.raises(IndexMismatchError, match="built with embedder"):
        import_index(Index.open(starter_index), other)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        ingest([write_docs(starter_index.parent / "more")],
               milvus_starter.with_overrides(chunk_tokens=120), progress=False)


def test_unreachable_server_and_missing_index(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = milvus_settings(tmp_path, milvus_uri=f"http://127.0.0.1:{port}",
                               milvus_timeout_s=2)
    with pytest.raises(IndexUnreachableError,
                       match=f"cannot reach Milvus at http://127.0.0.1:{port}"):
        Assistant.open(settings=settings)
    monkeypatch.setenv("ASSISTANT_STORE", "milvus")
    monkeypatch.setenv("ASSISTANT_MILVUS_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("ASSISTANT_MILVUS_TIMEOUT_S", "2")
    assert main(["ask", "x"]) == 2
    assert "cannot reach Milvus" in capsys.readouterr().err

    empty = milvus_settings(tmp_path)
    with pytest.raises(IndexNotFoundError, match="ASSISTANT_STORE=milvus assistant ingest"):
        Assistant.open(settings=empty)
    assert Meta(_client(empty), empty.milvus_collection).get(CURRENT) is None
