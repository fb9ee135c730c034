"""The conversation store: one contract, checked on SQLite and on a real PostgreSQL 15
cluster started on loopback for the test session."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient

from assistant.server import create_app
from assistant.store import (
    ConversationFull,
    ConversationNotFound,
    IdempotencyKey,
    IdempotencyKeyReused,
    PostgresStore,
    Replayed,
    SQLiteStore,
    open_store,
)
from assistant.limits import SharedRateLimiter
from tests.server_fixtures import postgres_url, server_settings  # noqa: F401

ANSWER = json.dumps({"stand-in": "answer json"})


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "conversations.sqlite3")
    else:
        url = request.getfixturevalue("postgres_url")
        store = PostgresStore(url)
        with store._transaction() as cur:  # a clean slate for each test
            cur.execute("DELETE FROM idempotency_keys")
            cur.execute("DELETE FROM turns")
            cur.execute("DELETE FROM conversations")
    yield store
    store.close()


def test_create_append_get_delete(store):
    conversation = store.create("alice", "first question", ANSWER)
    assert len(conversation.id) >= 22  # 128 random bits, URL-safe
    turn = store.append(conversation.id, "alice", "second question", ANSWER, max_turns=5)
    assert turn.position == 2
    read = store.get(conversation.id, "alice")
    assert [(t.position, t.question) for t in read.turns] == [
        (1, "first question"), (2, "second question")]
    assert read.turns[0].answer_json == ANSWER
    store.delete(conversation.id, "alice")
    with pytest.raises(ConversationNotFound):
        store.get(conversation.id, "alice")
    assert store.count_turns() == 0


def test_ids_are_unguessable_and_distinct(store):
    ids = {store.create("alice", "q", ANSWER).id for _ in range(20)}
    assert len(ids) == 20


def test_an_owner_sees_only_its_own_conversations(store):
    conversation = store.create("alice", "question", ANSWER)
    with pytest.raises(ConversationNotFound):
        store.get(conversation.id, "bob")
    with pytest.raises(ConversationNotFound):
        store.append(conversation.id, "bob", "question", ANSWER, max_turns=5)
    with pytest.raises(ConversationNotFound):
        store.delete(conversation.id, "bob")
    assert len(store.get(conversation.id, "alice").turns) == 1


def test_conversation_length_limit_writes_nothing(store):
    conversation = store.create("alice", "q1", ANSWER)
    store.append(conversation.id, "alice", "q2", ANSWER, max_turns=2)
    with pytest.raises(ConversationFull):
        store.append(conversation.id, "alice", "q3", ANSWER, max_turns=2)
    assert len(store.get(conversation.id, "alice").turns) == 2


def test_a_failed_write_leaves_no_half_written_turn(store):
    conversation = store.create("alice", "q1", ANSWER)
    with pytest.raises(Exception):
        store.append(conversation.id, "alice", "q2", None, max_turns=5)  # NOT NULL fails
    with pytest.raises(Exception):
        store.create("alice", "q1", None)  # the conversation row is rolled back too
    assert store.count_turns() == 1
    turn = store.append(conversation.id, "alice", "q2", ANSWER, max_turns=5)
    assert turn.position == 2


def test_concurrent_follow_ups_get_distinct_positions(store):
    conversation = store.create("alice", "q0", ANSWER)
    errors = []

    def ask(i):
        try:
            store.append(conversation.id, "alice", f"q{i}", ANSWER, max_turns=100)
        except Exception as exc:  # collected: assertions run in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    positions = [t.position for t in store.get(conversation.id, "alice").turns]
    assert positions == list(range(1, 10))


def test_an_idempotency_key_stores_its_turn_once(store):
    first_key = IdempotencyKey("k-1", "asks A", max_age_s=3600)
    conversation = store.create("alice", "A?", ANSWER, first_key)
    with pytest.raises(Replayed) as replayed:
        store.create("alice", "A?", ANSWER, first_key)
    assert replayed.value.conversation_id == conversation.id
    assert replayed.value.turn.position == 1
    assert store.replay("alice", first_key)[0] == conversation.id
    assert store.replay("bob", first_key) is None  # keys belong to their owner

    follow_key = IdempotencyKey("k-2", "asks B", max_age_s=3600)
    store.append(conversation.id, "alice", "B?", ANSWER, 10, follow_key)
    with pytest.raises(Replayed) as replayed:
        store.append(conversation.id, "alice", "B?", ANSWER, 10, follow_key)
    assert replayed.value.turn.position == 2
    with pytest.raises(IdempotencyKeyReused):
        store.append(conversation.id, "alice", "C?", ANSWER, 10,
                     IdempotencyKey("k-2", "asks C", max_age_s=3600))
    assert [t.question for t in store.get(conversation.id, "alice").turns] == ["A?", "B?"]

    # An expired key is forgotten: the same key may start something new.
    expired = IdempotencyKey("k-1", "asks D", max_age_s=0)
    assert store.replay("alice", expired) is None
    store.create("alice", "D?", ANSWER, expired)
    store.delete(conversation.id, "alice")  # its keys go with it
    assert store.replay("alice", follow_key) is None


def test_concurrent_tries_with_one_key_store_one_conversation(store):
    key = IdempotencyKey("same-key", "asks A", max_age_s=3600)
    before = store.count_turns()
    ids, errors = [], []

    def create():
        try:
            ids.append(store.create("alice", "A?", ANSWER, key).id)
        except Replayed as replayed:
            ids.append(replayed.conversation_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(ids) == 8 and len(set(ids)) == 1
    assert store.count_turns() == before + 1


def test_shared_rate_limit_buckets(postgres_url):  # noqa: F811
    """Buckets in PostgreSQL: one budget for every process, refilled on the database's
    clock; a look (consume=False) takes nothing."""
    one, two = PostgresStore(postgres_url), PostgresStore(postgres_url)
    limiters = SharedRateLimiter(one), SharedRateLimiter(two)
    bucket = f"key:test-{threading.get_ident()}"
    assert limiters[0].wait_s(bucket, 3, consume=False) == 0
    waits = [limiters[n % 2].wait_s(bucket, 3) for n in range(5)]
    assert waits[:3] == [0, 0, 0] and all(w > 15 for w in waits[3:])  # 1 token per 20 s
    one.close()
    two.close()


def test_open_store_follows_the_settings(tmp_path, starter_index):
    default = open_store(server_settings(starter_index, "").model_copy(
        update={"conversations_db": None}))
    assert isinstance(default, SQLiteStore)
    assert default.path == starter_index / "conversations.sqlite3"  # beside the index
    named = open_store(server_settings(starter_index, tmp_path / "c.sqlite3"))
    assert named.path == tmp_path / "c.sqlite3"


def test_the_service_on_postgresql(postgres_url, starter_index, starter_assistant):  # noqa: F811
    """Two app instances (as two API processes would) share conversations in PostgreSQL."""
    settings = server_settings(starter_index, postgres_url)
    with TestClient(create_app(settings, assistant=starter_assistant)) as one, \
            TestClient(create_app(settings, assistant=starter_assistant)) as two:
        first = one.post("/v1/conversations",
                         json={"question": "How is cytokine release syndrome graded?"})
        assert first.status_code == 201, first.text
        cid = first.json()["conversation_id"]
        follow = two.post(f"/v1/conversations/{cid}/turns",
                          json={"question": "And how is it managed?"})
        assert follow.status_code == 201, follow.text
        assert follow.json()["turn"]["position"] == 2
        assert "cytokine" in follow.json()["turn"]["answer"]["standalone_query"].lower()
        turns = one.get(f"/v1/conversations/{cid}").json()["turns"]
        assert [t["question"] for t in turns] == [
            "How is cytokine release syndrome graded?", "And how is it managed?"]
