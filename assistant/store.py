"""Conversation storage for the HTTP service: SQLite (default) or PostgreSQL.

A conversation belongs to an owner (a digest of the API key that created it, or
"anonymous" when the service runs without keys) and holds numbered turns, each the
question and the complete structured answer as JSON. A turn is written in one
transaction after its answer exists, so a failed answer never leaves a half-written
turn, and two follow-ups racing on one conversation get distinct positions.

    store = open_store(settings)
    conversation = store.create(owner, question, answer_json)
    store.append(conversation.id, owner, question, answer_json, max_turns=50)
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from assistant.settings import Settings


class StoreError(RuntimeError):
    """Base for conversation storage problems a client can act on."""


class ConversationNotFound(StoreError):
    pass


class ConversationFull(StoreError):
    pass


@dataclass
class StoredTurn:
    position: int  # 1, 2, ...
    question: str
    answer_json: str
    created_at: float


@dataclass
class Conversation:
    id: str
    owner: str
    created_at: float
    turns: list[StoredTurn] = field(default_factory=list)


def new_conversation_id() -> str:
    """128 random bits, URL-safe: unguessable, so ids cannot be enumerated."""
    return secrets.token_urlsafe(16)


class ConversationStore(ABC):
    """What the service needs from storage; every method checks the owner."""

    @abstractmethod
    def create(self, owner: str, question: str, answer_json: str) -> Conversation:
        """A new conversation with its first turn, written together."""

    @abstractmethod
    def append(self, conversation_id: str, owner: str, question: str, answer_json: str,
               max_turns: int) -> StoredTurn:
        """Add the next turn; ConversationNotFound / ConversationFull otherwise."""

    @abstractmethod
    def get(self, conversation_id: str, owner: str) -> Conversation:
        """The conversation with all its turns, or ConversationNotFound."""

    @abstractmethod
    def delete(self, conversation_id: str, owner: str) -> None:
        """Remove the conversation and its turns, or ConversationNotFound."""

    @abstractmethod
    def count_turns(self) -> int:
        """Turns stored in all conversations (for checks and benchmarks)."""

    def close(self) -> None:
        pass


def open_store(settings: Settings) -> ConversationStore:
    """The store named by settings.conversations_db (default: SQLite beside the index)."""
    target = settings.conversations_db
    if target and target.startswith(("postgresql://", "postgres://")):
        return PostgresStore(target)
    path = Path(target) if target else Path(settings.index_path) / "conversations.sqlite3"
    return SQLiteStore(path)


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS turns (
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        question TEXT NOT NULL,
        answer_json TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (conversation_id, position)
    )""",
]


class _SQLStore(ConversationStore):
    """The SQL shared by both backends; subclasses give connections and placeholders."""

    lock_clause = ""  # row lock taken when appending (PostgreSQL: FOR UPDATE)

    @contextmanager
    def _transaction(self):  # yields a cursor; commits, or rolls back on error
        raise NotImplementedError

    def _sql(self, query: str) -> str:
        return query

    def create(self, owner: str, question: str, answer_json: str) -> Conversation:
        now = time.time()
        conversation = Conversation(new_conversation_id(), owner, now,
                                    [StoredTurn(1, question, answer_json, now)])
        with self._transaction() as cur:
            cur.execute(self._sql("INSERT INTO conversations (id, owner, created_at) "
                                  "VALUES (?, ?, ?)"), (conversation.id, owner, now))
            cur.execute(self._sql("INSERT INTO turns (conversation_id, position, question, "
                                  "answer_json, created_at) VALUES (?, 1, ?, ?, ?)"),
                        (conversation.id, question, answer_json, now))
        return conversation

    def append(self, conversation_id: str, owner: str, question: str, answer_json: str,
               max_turns: int) -> StoredTurn:
        now = time.time()
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT id FROM conversations WHERE id = ? AND owner = ?"
                                  + self.lock_clause), (conversation_id, owner))
            if cur.fetchone() is None:
                raise ConversationNotFound(conversation_id)
            cur.execute(self._sql("SELECT COALESCE(MAX(position), 0) FROM turns "
                                  "WHERE conversation_id = ?"), (conversation_id,))
            last = cur.fetchone()[0]
            if last >= max_turns:
                raise ConversationFull(
                    f"this conversation has reached its limit of {max_turns} turns "
                    "(ASSISTANT_MAX_TURNS_PER_CONVERSATION): start a new conversation")
            turn = StoredTurn(last + 1, question, answer_json, now)
            cur.execute(self._sql("INSERT INTO turns (conversation_id, position, question, "
                                  "answer_json, created_at) VALUES (?, ?, ?, ?, ?)"),
                        (conversation_id, turn.position, question, answer_json, now))
        return turn

    def get(self, conversation_id: str, owner: str) -> Conversation:
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT id, owner, created_at FROM conversations "
                                  "WHERE id = ? AND owner = ?"), (conversation_id, owner))
            row = cur.fetchone()
            if row is None:
                raise ConversationNotFound(conversation_id)
            cur.execute(self._sql("SELECT position, question, answer_json, created_at FROM "
                                  "turns WHERE conversation_id = ? ORDER BY position"),
                        (conversation_id,))
            turns = [StoredTurn(*r) for r in cur.fetchall()]
        return Conversation(row[0], row[1], row[2], turns)

    def delete(self, conversation_id: str, owner: str) -> None:
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT id FROM conversations WHERE id = ? AND owner = ?"),
                        (conversation_id, owner))
            if cur.fetchone() is None:
                raise ConversationNotFound(conversation_id)
            cur.execute(self._sql("DELETE FROM turns WHERE conversation_id = ?"),
                        (conversation_id,))
            cur.execute(self._sql("DELETE FROM conversations WHERE id = ?"), (conversation_id,))

    def count_turns(self) -> int:
        with self._transaction() as cur:
            cur.execute("SELECT COUNT(*) FROM turns")
            return cur.fetchone()[0]


class SQLiteStore(_SQLStore):
    """One file; a connection per operation (threads of the server share nothing) and
    BEGIN IMMEDIATE so concurrent appends to a conversation are serialised."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _transaction(self):
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn.cursor()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()


class PostgresStore(_SQLStore):
    """PostgreSQL via psycopg 3, for several API processes sharing conversations.
    Appends lock the conversation row (SELECT ... FOR UPDATE)."""

    lock_clause = " FOR UPDATE"

    def __init__(self, url: str, pool_size: int = 8):
        import psycopg  # only needed for this backend

        self._psycopg = psycopg
        self.url = url
        self._idle: list = []
        self._pool_size = pool_size
        self._lock = threading.Lock()
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(4242)")  # two processes starting
            for statement in _SCHEMA:
                cur.execute(statement)

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s")

    @contextmanager
    def _transaction(self):
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._psycopg.connect(self.url, autocommit=True)
        try:
            with conn.transaction():
                yield conn.cursor()
        finally:
            reusable = (not conn.closed and conn.info.transaction_status
                        == self._psycopg.pq.TransactionStatus.IDLE)
            with self._lock:
                if reusable and len(self._idle) < self._pool_size:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
