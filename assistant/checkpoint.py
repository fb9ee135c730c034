"""Embedding checkpoint: what an ingest has embedded so far, so that a killed or crashed
ingest, run again, embeds only what is missing.

A SQLite file beside the builds (``indexes/NAME/ingest-checkpoint.sqlite3``), one row
per passage text (keyed by the SHA-256 of the text the embedder saw), committed after
every batch. It belongs to one embedder (name, precision, dimension): a checkpoint left
by another is discarded. It is removed once the new build is switched in; the live
index never depends on it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np

FILE_NAME = "ingest-checkpoint.sqlite3"


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCheckpoint:
    def __init__(self, index_path: Path, embedder_id: str, dimension: int):
        self.path = Path(index_path) / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dimension = dimension
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (embedder TEXT NOT NULL)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS vectors "
                          "(key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        stored = self.conn.execute("SELECT embedder FROM meta").fetchone()
        if stored is None or stored[0] != embedder_id:  # another embedder's vectors
            self.conn.execute("DELETE FROM vectors")
            self.conn.execute("DELETE FROM meta")
            self.conn.execute("INSERT INTO meta VALUES (?)", (embedder_id,))
        self.conn.commit()

    def get(self, texts: list[str]) -> dict[int, np.ndarray]:
        """The vectors already embedded, by position in ``texts``."""
        found: dict[int, np.ndarray] = {}
        positions: dict[bytes, list[int]] = {}
        for i, text in enumerate(texts):
            positions.setdefault(_key(text), []).append(i)
        keys = list(positions)
        for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = keys[start:start + 500]
            rows = self.conn.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})",
                chunk)
            for key, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape == (self.dimension,):
                    for i in positions[key]:
                        found[i] = vector
        return found

    def put(self, texts: list[str], vectors: np.ndarray) -> None:
        """Keep a batch, durably, before the next one is embedded."""
        rows = [(_key(t), np.asarray(v, dtype=np.float32).tobytes())
                for t, v in zip(texts, vectors)]
        self.conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
        self.conn.commit()

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    def remove(self) -> None:
        """After the build it served was switched in."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
