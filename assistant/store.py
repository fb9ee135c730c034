"""Conversation storage for the HTTP service: SQLite (default) or PostgreSQL.

A conversation belongs to an owner (a digest of the API key that created it, or
"anonymous" when the service runs without keys) and holds numbered turns, each the
question and the complete structured answer as JSON. A turn is written in one
transaction after its answer exists, so a failed answer never leaves a half-written
turn, and two follow-ups racing on one conversation get distinct positions.

A turn may carry the client's idempotency key (the `Idempotency-Key` header): the key is
written with the turn, in the same transaction, so a retried request finds the turn it
already stored instead of storing it twice, across restarts and processes alike.

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


class IdempotencyKeyReused(StoreError):
    """The key was used before for another request."""


class Replayed(StoreError):
    """The turn of this idempotency key was already stored (by an earlier try)."""

    def __init__(self, conversation_id: str, turn: "StoredTurn"):
        super().__init__(conversation_id)
        self.conversation_id, self.turn = conversation_id, turn


@dataclass(frozen=True)
class IdempotencyKey:
    key: str  # as the client sent it
    fingerprint: str  # a digest of what the request asks (route, conversation, question)
    max_age_s: float  # older records are forgotten: the key may be used again


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
    def create(self, owner: str, question: str, answer_json: str,
               idempotency: IdempotencyKey | None = None) -> Conversation:
        """A new conversation with its first turn, written together. Replayed when the
        idempotency key already stored a turn; IdempotencyKeyReused for another request."""

    @abstractmethod
    def append(self, conversation_id: str, owner: str, question: str, answer_json: str,
               max_turns: int, idempotency: IdempotencyKey | None = None) -> StoredTurn:
        """Add the next turn; ConversationNotFound / ConversationFull otherwise, and
        Replayed / IdempotencyKeyReused as for create."""

    @abstractmethod
    def replay(self, owner: str, idempotency: IdempotencyKey) -> tuple[str, StoredTurn] | None:
        """(conversation id, turn) stored under this key, None if none (or expired);
        IdempotencyKeyReused when the key was used for another request."""

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
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (owner, key)
    )""",
]


class _SQLStore(ConversationStore):
    """The SQL shared by both backends; subclasses give connections and placeholders."""

    lock_clause = ""  # row lock taken when appending (PostgreSQL: FOR UPDATE)
    integrity_errors: tuple[type[Exception], ...] = ()  # a primary key collision

    @contextmanager
    def _transaction(self):  # yields a cursor; commits, or rolls back on error
        raise NotImplementedError

    def _sql(self, query: str) -> str:
        return query

    def create(self, owner: str, question: str, answer_json: str,
               idempotency: IdempotencyKey | None = None) -> Conversation:
        now = time.time()
        conversation = Conversation(new_conversation_id(), owner, now,
                                    [StoredTurn(1, question, answer_json, now)])
        with self._idempotent(owner, idempotency) as cur:
            cur.execute(self._sql("INSERT INTO conversations (id, owner, created_at) "
                                  "VALUES (?, ?, ?)"), (conversation.id, owner, now))
            cur.execute(self._sql("INSERT INTO turns (conversation_id, position, question, "
                                  "answer_json, created_at) VALUES (?, 1, ?, ?, ?)"),
                        (conversation.id, question, answer_json, now))
            self._remember(cur, owner, idempotency, conversation.id, 1, now)
        return conversation

    def append(self, conversation_id: str, owner: str, question: str, answer_json: str,
               max_turns: int, idempotency: IdempotencyKey | None = None) -> StoredTurn:
        now = time.time()
        with self._idempotent(owner, idempotency, conversation_id) as cur:
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
            self._remember(cur, owner, idempotency, conversation_id, turn.position, now)
        return turn

    @contextmanager
    def _idempotent(self, owner: str, idempotency: IdempotencyKey | None,
                    conversation_id: str | None = None):
        """A write transaction that first locks the conversation (when appending) and
        looks the idempotency key up: Replayed when an earlier try stored the turn. Two
        tries racing past the look-up (PostgreSQL, new conversations) collide on the
        key's primary key; the loser is then replayed too."""
        try:
            with self._transaction() as cur:
                if conversation_id is not None:
                    cur.execute(self._sql("SELECT id FROM conversations WHERE id = ? AND "
                                          "owner = ?" + self.lock_clause),
                                (conversation_id, owner))
                    if cur.fetchone() is None:
                        raise ConversationNotFound(conversation_id)
                if idempotency is not None:
                    stored = self._replay(cur, owner, idempotency)
                    if stored is not None:
                        raise Replayed(*stored)
                yield cur
        except self.integrity_errors:
            stored = self.replay(owner, idempotency) if idempotency is not None else None
            if stored is None:
                raise
            raise Replayed(*stored) from None

    def replay(self, owner: str, idempotency: IdempotencyKey) -> tuple[str, StoredTurn] | None:
        with self._transaction() as cur:
            return self._replay(cur, owner, idempotency)

    def _replay(self, cur, owner: str, idempotency: IdempotencyKey
                ) -> tuple[str, StoredTurn] | None:
        cur.execute(self._sql("DELETE FROM idempotency_keys WHERE owner = ? AND key = ? "
                              "AND created_at < ?"),
                    (owner, idempotency.key, time.time() - idempotency.max_age_s))
        cur.execute(self._sql(
            "SELECT k.fingerprint, k.conversation_id, t.position, t.question, t.answer_json, "
            "t.created_at FROM idempotency_keys k JOIN turns t ON t.conversation_id = "
            "k.conversation_id AND t.position = k.position WHERE k.owner = ? AND k.key = ?"),
            (owner, idempotency.key))
        row = cur.fetchone()
        if row is None:
            return None
        if row[0] != idempotency.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request: send a "
                "new key for a new question")
        return row[1], StoredTurn(*row[2:])

    def _remember(self, cur, owner: str, idempotency: IdempotencyKey | None,
                  conversation_id: str, position: int, now: float) -> None:
        if idempotency is not None:
            cur.execute(self._sql("INSERT INTO idempotency_keys (owner, key, fingerprint, "
                                  "conversation_id, position, created_at) VALUES "
                                  "(?, ?, ?, ?, ?, ?)"),
                        (owner, idempotency.key, idempotency.fingerprint, conversation_id,
                         position, now))

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

    integrity_errors = (sqlite3.IntegrityError,)

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
    Appends lock the conversation row (SELECT ... FOR UPDATE). It also keeps the service's
    rate-limit buckets (assistant/limits.py), shared by every process."""

    lock_clause = " FOR UPDATE"
    RATE_LIMITS = """CREATE TABLE IF NOT EXISTS rate_limits (
        bucket TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION,
        updated_at DOUBLE PRECISION NOT NULL
    )"""

    def __init__(self, url: str, pool_size: int = 8):
        import psycopg  # only needed for this backend

        self._psycopg = psycopg
        self.integrity_errors = (psycopg.errors.UniqueViolation,)
        self.url = url
        self._idle: list = []
        self._pool_size = pool_size
        self._lock = threading.Lock()
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(4242)")  # two processes starting
            for statement in [*_SCHEMA, self.RATE_LIMITS]:
                cur.execute(statement)

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s")

    def update_bucket(self, bucket: str, update) -> float:
        """Apply `update(tokens or None when new, updated_at, now) -> (tokens, result)` to
        a rate-limit bucket under a row lock, on the database's clock (the API processes'
        clocks may differ); returns the result."""
        with self._transaction() as cur:
            cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
            now = cur.fetchone()[0]
            cur.execute("INSERT INTO rate_limits (bucket, tokens, updated_at) VALUES "
                        "(%s, NULL, %s) ON CONFLICT (bucket) DO NOTHING", (bucket, now))
            cur.execute("SELECT tokens, updated_at FROM rate_limits WHERE bucket = %s "
                        "FOR UPDATE", (bucket,))
            tokens, updated_at = cur.fetchone()
            tokens, result = update(tokens, updated_at, now)
            cur.execute("UPDATE rate_limits SET tokens = %s, updated_at = %s WHERE "
                        "bucket = %s", (tokens, now, bucket))
            if secrets.randbelow(100) == 0:  # a bucket idle for a minute is full again
                cur.execute("DELETE FROM rate_limits WHERE updated_at < %s", (now - 60,))
        return result

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
