"""Shared fixtures: the real embedder and a real FAISS index over the starter corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.index import ingest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def starter_index(tmp_path_factory) -> Path:
    """The starter corpus, ingested once per test session."""
    path = tmp_path_factory.mktemp("indexes") / "starter"
    ingest([CORPUS], Settings(index_path=path), progress=False)
    return path


@pytest.fixture(scope="session")
def starter_assistant(starter_index) -> Assistant:
    return Assistant.open(starter_index)
