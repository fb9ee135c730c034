"""Ingest: incremental sync, atomic builds, malformed input, embedder mismatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from assistant import Assistant, Settings
from assistant.cli import main
from assistant.index import Index, IndexMismatchError, IngestError, ingest

from .conftest import CORPUS

DOCS = {
    "crs.md": """\
        ---
        id: gl-crs
        title: Cytokine release syndrome after CAR T-cell therapy
        kind: guideline
        source: Test Guideline Board
        year: 2024
        url: https://example.org/crs
        ---
        # Cytokine release syndrome after CAR T-cell therapy

        ## Recognition
        Cytokine release syndrome presents with fever, hypotension and hypoxia after CAR T-cell infusion.
        The severity of cytokine release syndrome is graded with a consensus scale.

        ## Management
        Tocilizumab, an interleukin-6 receptor antibody, is used to treat cytokine release syndrome.
        """,
    "gd2.md": """\
        ---
        id: rs-gd2
        title: GD2-directed CAR T cells in neuroblastoma
        kind: research
        source: Test Journal
        year: 2023
        pmid: "00000001"
        ---
        # GD2-directed CAR T cells in neuroblastoma

        ## Findings
        GD2-directed CAR T cells produced responses in children with relapsed neuroblastoma.
        """,
}


def write_docs(folder: Path, docs: dict[str, str] = DOCS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_ingest_reingest_change_delete(tmp_path):
    corpus = write_docs(tmp_path / "docs")
    settings = Settings(index_path=tmp_path / "index")

    first = ingest([corpus], settings, progress=False)
    assert sorted(first.added) == ["gl-crs", "rs-gd2"] and first.written
    index = Index.open(settings.index_path, settings)
    assert set(index.documents) == {"gl-crs", "rs-gd2"}
    assert index.manifest["embedder"] == "all-MiniLM-L6-v2" and index.manifest["dimension"] == 384
    assert {p.section for p in index.passages} >= {"Recognition", "Management", "Findings"}

    again = ingest([corpus], settings, progress=False)
    assert again.passages_embedded == 0 and not again.written
    assert sorted(again.unchanged) == ["gl-crs", "rs-gd2"]
    assert Index.current_build(settings.index_path) == index.build  # nothing rewritten

    crs = corpus / "crs.md"
    crs.write_text(crs.read_text().replace("fever,", "high fever,"))
    (corpus / "gd2.md").unlink()
    changed = ingest([corpus], settings, progress=False)
    assert changed.updated == ["gl-crs"] and changed.removed == ["rs-gd2"]
    assert changed.passages_embedded == Index.open(settings.index_path).documents["gl-crs"].passages
    index = Index.open(settings.index_path, settings)
    assert set(index.documents) == {"gl-crs"}
    assert any("high fever" in p.text for p in index.passages)
    assert all(p.doc_id == "gl-crs" for p in index.passages)
    assert index.faiss["research"].ntotal == 0


def test_ingest_from_other_paths_is_kept(tmp_path):
    guidelines = write_docs(tmp_path / "g", {"crs.md": DOCS["crs.md"]})
    research = write_docs(tmp_path / "r", {"gd2.md": DOCS["gd2.md"]})
    settings = Settings(index_path=tmp_path / "index")
    ingest([guidelines], settings, progress=False)
    report = ingest([research], settings, progress=False)
    assert report.added == ["rs-gd2"] and report.removed == []
    assert set(Index.open(settings.index_path).documents) == {"gl-crs", "rs-gd2"}


def test_malformed_files_are_reported_and_skipped(tmp_path):
    corpus = write_docs(tmp_path / "docs")
    (corpus / "no-front-matter.md").write_text("# Just a heading\n\nSome text.\n")
    (corpus / "bad-kind.md").write_text("---\ntitle: X\nkind: opinion\n---\n# X\n\nText here.\n")
    (corpus / "broken-yaml.md").write_text("---\ntitle: [unclosed\nkind: guideline\n---\nText.\n")
    (corpus / "lines.jsonl").write_text('{"id": "j1", "title": "T", "kind": "research", "text": "ok"}\nnot json\n')
    settings = Settings(index_path=tmp_path / "index")
    report = ingest([corpus], settings, progress=False)
    skipped = {Path(e.path).name: e.problem for e in report.skipped}
    assert set(skipped) == {"no-front-matter.md", "bad-kind.md", "broken-yaml.md", "lines.jsonl"}
    assert "front matter" in skipped["no-front-matter.md"]
    assert "kind" in skipped["bad-kind.md"]
    assert "line 2" in skipped["lines.jsonl"]
    assert sorted(report.added) == ["gl-crs", "rs-gd2"]
    summary = report.summary()
    assert "skipped 4 file(s)" in summary and "bad-kind.md" in summary


def test_failed_ingest_leaves_previous_index_usable(tmp_path):
    corpus = write_docs(tmp_path / "docs")
    settings = Settings(index_path=tmp_path / "index")
    ingest([corpus], settings, progress=False)
    before = Index.current_build(settings.index_path)

    # A file that breaks on the next run is skipped and its document kept, not deleted.
    (corpus / "gd2.md").write_text("---\ntitle: [unclosed\n---\n")
    report = ingest([corpus], settings, progress=False)
    assert report.removed == [] and len(report.skipped) == 1
    assert "rs-gd2" in Index.open(settings.index_path).documents

    # Nothing loadable into an empty index: an error, and nothing written.
    with pytest.raises(IngestError, match="no documents"):
        ingest([tmp_path / "missing"], Settings(index_path=tmp_path / "other"), progress=False)
    assert not (tmp_path / "other" / "CURRENT").exists()

    Assistant.open(settings.index_path).ask("How is cytokine release syndrome treated?")
    assert Index.current_build(settings.index_path) == before


def test_killed_ingest_leaves_previous_index_usable(tmp_path):
    """SIGKILL an ingest mid-embedding: the previous build stays live and complete."""
    settings = Settings(index_path=tmp_path / "index")
    ingest([write_docs(tmp_path / "docs")], settings, progress=False)
    before = Index.current_build(settings.index_path)

    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "ingest", str(CORPUS), "--index",
         str(settings.index_path)], stderr=subprocess.PIPE, text=True)
    seen = ""
    while "embedding" not in seen:  # the progress bar has started
        chunk = process.stderr.read(1)
        if not chunk:
            break
        seen += chunk
    process.kill()
    process.wait(timeout=30)
    assert process.returncode != 0, "ingest finished before it could be killed"
    assert Index.current_build(settings.index_path) == before
    index = Index.open(settings.index_path, settings)
    assert set(index.documents) == {"gl-crs", "rs-gd2"}
    assert Assistant.open(settings.index_path).ask("How is cytokine release syndrome treated?").references


def test_wrong_embedder_is_refused(tmp_path):
    corpus = write_docs(tmp_path / "docs")
    settings = Settings(index_path=tmp_path / "index")
    ingest([corpus], settings, progress=False)
    other = settings.with_overrides(embedder="some-other-embedder")
    with pytest.raises(IndexMismatchError, match="built with embedder 'all-MiniLM-L6-v2'"):
        Assistant.open(settings.index_path, other)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        ingest([corpus], settings.with_overrides(chunk_tokens=120), progress=False)

    # A manifest whose dimension disagrees with the embedder is caught too.
    build = Index.current_build(settings.index_path)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["dimension"] = 768
    (build / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="768-dimensional"):
        Assistant.open(settings.index_path)


def test_cli_ingest_and_errors(tmp_path, capsys):
    corpus = write_docs(tmp_path / "docs")
    index = tmp_path / "index"
    assert main(["ingest", str(corpus), "--index", str(index), "--quiet"]) == 0
    assert "2 added" in capsys.readouterr().out
    assert main(["ask", "", "--index", str(index)]) == 2
    assert "question is empty" in capsys.readouterr().err
    assert main(["ask", "x", "--index", str(tmp_path / "nowhere")]) == 2
    assert "assistant ingest" in capsys.readouterr().err


def test_a_killed_ingest_resumes_from_its_checkpoint(tmp_path):
    """`assistant ingest` killed (-9) half-way: the live index is the previous build, and
    the re-run embeds only what the killed one had not; the result equals a clean build."""
    import signal
    import sqlite3
    import time

    from assistant.checkpoint import FILE_NAME

    index = tmp_path / "idx"
    env = {**os.environ, "ASSISTANT_EMBED_BATCH_SIZE": "2"}  # a checkpoint every 16 passages
    command = [sys.executable, "-m", "assistant.cli", "ingest", str(CORPUS),
               "--index", str(index), "--quiet"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    checkpoint, done = index / FILE_NAME, 0
    deadline = time.monotonic() + 600
    while done < 32 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if checkpoint.exists():
            try:
                with sqlite3.connect(checkpoint) as conn:
                    done = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            except sqlite3.OperationalError:  # the table is being created
                pass
    assert process.poll() is None, "the ingest finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert Index.current_build(index) is None  # nothing half-written went live

    resumed = ingest([CORPUS], Settings(index_path=index, embed_batch_size=2), progress=False)
    assert resumed.written and resumed.passages_reused >= 32
    assert resumed.passages_reused < resumed.passages_embedded == resumed.passages_total
    assert "reused from an interrupted ingest" in resumed.summary()
    assert not checkpoint.exists()  # removed once the build is live

    clean = ingest([CORPUS], Settings(index_path=tmp_path / "clean"), progress=False)
    assert clean.passages_reused == 0
    a, b = Index.open(index), Index.open(tmp_path / "clean")
    assert [p.id for p in a.passages] == [p.id for p in b.passages]
    assert np.allclose(a.vectors, b.vectors, atol=1e-5)
