"""The HTTP service against a real uvicorn server on loopback (TestClient where that is
enough): conversations with follow-ups, streaming, restart, auth, limits, bad input,
the OpenAI-compatible API with the real `openai` client, and schema-based fuzzing."""

from __future__ import annotations

import json
import logging
import re
import uuid

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from assistant.server import create_app
from assistant.types import DISCLAIMER
from tests.server_fixtures import (  # noqa: F401
    LiveServer,
    live_server,
    serve_process,
    server_settings,
    stop_process,
    wait_ready,
    free_port,
)

SEED = ("What is the role of Chimeric Antigen Receptor (CAR) T cells in the treatment of "
        "solid organ malignancies?")
FOLLOW_UP = "What about its toxicities?"
EXAMPLES_PER_OPERATION = 25  # each valid question is really answered: keep it lean


def sse_events(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        events.append((name, "\n".join(data)))
    return events


def check_answer(turn: dict, question: str) -> None:
    answer = turn["answer"]
    assert answer["question"] == question
    assert answer["guidelines"]["heading"] == "From the Guidelines"
    assert answer["research"]["heading"] == "From the Research"
    assert answer["disclaimer"] == DISCLAIMER
    assert answer["references"], "the seed topic is in the corpus: expect citations"
    markdown = turn["markdown"]
    assert markdown.index("From the Guidelines") < markdown.index("From the Research")
    assert DISCLAIMER in markdown


@pytest.fixture
def client(starter_index, starter_assistant, tmp_path):
    app = create_app(server_settings(starter_index, tmp_path / "c.sqlite3"),
                     assistant=starter_assistant)
    with TestClient(app) as client:
        yield client


def make_client(starter_index, starter_assistant, tmp_path, **changes) -> TestClient:
    """A TestClient over an app with changed settings. The app loads its own Assistant
    at start-up (as `assistant serve` does) when a change concerns it."""
    settings = server_settings(starter_index, tmp_path / "c.sqlite3", **changes)
    own = "max_question_chars" in changes
    return TestClient(create_app(settings, assistant=None if own else starter_assistant))


# -- conversations on a live server ---------------------------------------------------

def test_conversation_round_trip_with_follow_up(live_server):
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        first = http.post("/v1/conversations", json={"question": SEED})
        assert first.status_code == 201, first.text
        cid = first.json()["conversation_id"]
        check_answer(first.json()["turn"], SEED)

        follow = http.post(f"/v1/conversations/{cid}/turns", json={"question": FOLLOW_UP})
        assert follow.status_code == 201, follow.text
        turn = follow.json()["turn"]
        assert turn["position"] == 2
        standalone = turn["answer"]["standalone_query"]
        assert standalone != FOLLOW_UP and "car" in standalone.lower()  # read in context
        assert "toxicit" in standalone.lower()
        # The follow-up adds to the first answer instead of repeating it.
        shown = {s["text"] for section in ("guidelines", "research")
                 for key in ("statements", "key_points")
                 for s in first.json()["turn"]["answer"][section][key]}
        repeated = [s["text"] for section in ("guidelines", "research")
                    for key in ("statements", "key_points")
                    for s in turn["answer"][section][key] if s["text"] in shown]
        assert not repeated, repeated

        read = http.get(f"/v1/conversations/{cid}")
        assert read.status_code == 200
        assert [t["question"] for t in read.json()["turns"]] == [SEED, FOLLOW_UP]
        assert read.json()["turns"][1]["answer"] == turn["answer"]

        assert http.delete(f"/v1/conversations/{cid}").status_code == 204
        gone = http.get(f"/v1/conversations/{cid}")
        assert gone.status_code == 404 and "no such conversation" in gone.json()["error"]["message"]


def test_streaming_answers_arrive_as_server_sent_events(live_server):
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        with http.stream("POST", "/v1/conversations",
                         json={"question": SEED, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.read().decode())
        names = [name for name, _ in events]
        assert names[-1] == "answer" and names.count("delta") >= 3
        final = json.loads(events[-1][1])
        streamed = "".join(json.loads(data)["text"] for name, data in events if name == "delta")
        assert streamed == final["turn"]["markdown"]
        check_answer(final["turn"], SEED)

        cid = final["conversation_id"]
        with http.stream("POST", f"/v1/conversations/{cid}/turns",
                         json={"question": FOLLOW_UP, "stream": True}) as response:
            events = sse_events(response.read().decode())
        assert json.loads(events[-1][1])["turn"]["position"] == 2
        assert len(http.get(f"/v1/conversations/{cid}").json()["turns"]) == 2

        bad = http.post(f"/v1/conversations/{cid}/turns", json={"question": " ", "stream": True})
        assert bad.status_code == 422  # refused before any event is sent


def test_conversations_survive_a_server_restart(starter_index, tmp_path):
    """`assistant serve` as a process: killed (-9) after storing a turn, started again; the
    client, which never saw the answer, retries with its Idempotency-Key and gets the
    stored turn back, not a second one; then the conversation goes on."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"ASSISTANT_CONVERSATIONS_DB": str(tmp_path / "c.sqlite3")}
    key = {"Idempotency-Key": "8c1d7a52-retry-after-crash"}
    server = serve_process(starter_index, port, env, tmp_path / "serve.log")
    try:
        wait_ready(url, server)
        first = httpx.post(f"{url}/v1/conversations", json={"question": SEED}, headers=key,
                           timeout=120)
        assert first.status_code == 201
        cid = first.json()["conversation_id"]
    finally:
        server.kill()
        server.wait(timeout=30)

    server = serve_process(starter_index, port, env, tmp_path / "serve.log")
    try:
        wait_ready(url, server)
        retry = httpx.post(f"{url}/v1/conversations", json={"question": SEED}, headers=key,
                           timeout=120)
        assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()
        read = httpx.get(f"{url}/v1/conversations/{cid}", timeout=60)
        assert read.status_code == 200
        assert len(read.json()["turns"]) == 1
        assert read.json()["turns"][0]["answer"] == first.json()["turn"]["answer"]
        follow = httpx.post(f"{url}/v1/conversations/{cid}/turns",
                            json={"question": FOLLOW_UP}, timeout=120)
        assert follow.status_code == 201
        assert "car" in follow.json()["turn"]["answer"]["standalone_query"].lower()
    finally:
        stop_process(server)
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log
    assert "toxicities" not in log and "Chimeric" not in log  # questions are not logged


def test_health_and_readiness(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["passages"] > 0
    assert client.get("/docs").status_code == 200
    assert "/v1/conversations" in client.get("/openapi.json").json()["paths"]


# -- safety: auth, limits, bad input ----------------------------------------------------

def test_api_keys_and_isolation(starter_index, starter_assistant, tmp_path):
    keys = ["key-alice-0123456789", "key-bob-0123456789"]
    with make_client(starter_index, starter_assistant, tmp_path, api_keys=keys) as client:
        alice = {"Authorization": f"Bearer {keys[0]}"}
        bob = {"X-API-Key": keys[1]}
        no_key = client.post("/v1/conversations", json={"question": SEED})
        assert no_key.status_code == 401
        assert no_key.headers["www-authenticate"] == "Bearer"
        assert "API key" in no_key.json()["error"]["message"]
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get("/healthz").status_code == 200  # probes need no key

        created = client.post("/v1/conversations", json={"question": SEED}, headers=alice)
        assert created.status_code == 201
        cid = created.json()["conversation_id"]
        assert client.get(f"/v1/conversations/{cid}", headers=bob).status_code == 404
        assert client.post(f"/v1/conversations/{cid}/turns", json={"question": FOLLOW_UP},
                           headers=bob).status_code == 404
        assert client.delete(f"/v1/conversations/{cid}", headers=bob).status_code == 404
        assert client.get(f"/v1/conversations/{cid}").status_code == 401
        assert len(client.get(f"/v1/conversations/{cid}", headers=alice).json()["turns"]) == 1


def test_limits(starter_index, starter_assistant, tmp_path):
    with make_client(starter_index, starter_assistant, tmp_path, max_turns_per_conversation=2,
                     max_request_bytes=4096, max_question_chars=300) as client:
        long = client.post("/v1/conversations", json={"question": "why " * 100})
        assert long.status_code == 422 and "limit is 300" in long.json()["error"]["message"]

        big = client.post("/v1/conversations", content=b'{"question": "' + b"x" * 5000 + b'"}',
                          headers={"Content-Type": "application/json"})
        assert big.status_code == 413 and "4096 bytes" in big.json()["error"]["message"]
        chunked = client.post("/v1/conversations", content=iter([b'{"question": "', b"y" * 5000,
                                                                  b'"}']),
                              headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413

        cid = client.post("/v1/conversations", json={"question": SEED}).json()["conversation_id"]
        assert client.post(f"/v1/conversations/{cid}/turns",
                           json={"question": FOLLOW_UP}).status_code == 201
        full = client.post(f"/v1/conversations/{cid}/turns", json={"question": FOLLOW_UP})
        assert full.status_code == 409 and "limit of 2 turns" in full.json()["error"]["message"]
        assert len(client.get(f"/v1/conversations/{cid}").json()["turns"]) == 2

    with make_client(starter_index, starter_assistant, tmp_path,
                     rate_limit_per_minute=3) as client:
        statuses = [client.get("/v1/models").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.get("/v1/models")
        assert int(limited.headers["retry-after"]) >= 1
        assert "3 requests per minute" in limited.json()["error"]["message"]


@pytest.mark.parametrize("body, status, words", [
    (b'{"question": "unterminated', 400, "not valid JSON"),
    (b'{"question": 42}', 422, "question"),
    (b'{"question": ""}', 422, "question"),
    (b'{"question": "   "}', 422, "question"),
    (b'{"question": "\\u0000\\u0010 "}', 422, "question: String should match pattern"),
    (b'{"question": "\\ud800 lone"}', 422, "unicode"),
    (b'{}', 422, "question: Field required"),
    (b'[]', 422, "dictionary"),
    (b'{"question": "CAR T?", "colour": 1}', 422, "colour"),
    (b'{"question": "CAR T?", "stream": "maybe"}', 422, "stream"),
    (b'{"question": "CAR T?", "stream": 0.0}', 422, "stream"),  # found by the fuzzer
])
def test_bad_input_gets_a_clear_4xx_and_leaves_the_conversation_intact(
        client, body, status, words):
    headers = {"Content-Type": "application/json"}
    created = client.post("/v1/conversations", content=body, headers=headers)
    assert created.status_code == status
    assert words in created.json()["error"]["message"]
    cid = client.post("/v1/conversations", json={"question": SEED}).json()["conversation_id"]
    follow = client.post(f"/v1/conversations/{cid}/turns", content=body, headers=headers)
    assert follow.status_code == status
    assert len(client.get(f"/v1/conversations/{cid}").json()["turns"]) == 1


def test_unknown_things_are_404(client):
    assert client.get("/v1/conversations/not-a-real-id").status_code == 404
    assert client.post("/v1/conversations/not-a-real-id/turns",
                       json={"question": SEED}).status_code == 404
    assert client.get(f"/v1/conversations/{'x' * 65}").status_code == 422
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and "/docs" in missing.json()["error"]["message"]
    assert client.put("/v1/conversations").status_code == 405


def test_questions_are_not_logged_unless_configured(starter_index, starter_assistant,
                                                    tmp_path, caplog):
    secret = "Is CAR T safe for Mrs Jane Example, born 1950-02-03, with CRS?"
    for log_questions in (False, True):
        caplog.clear()
        with caplog.at_level(logging.DEBUG), make_client(
                starter_index, starter_assistant, tmp_path, log_questions=log_questions) as c:
            assert c.post("/v1/conversations", json={"question": secret}).status_code == 201
            assert c.post("/v1/chat/completions", json={
                "model": "clinical-assistant",
                "messages": [{"role": "user", "content": secret}]}).status_code == 200
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "answered conversation=" in logged
        assert ("Jane Example" in logged) is log_questions


# -- OpenAI-compatible API with the real openai client ---------------------------------

def test_openai_client_against_the_live_server(live_server):
    import openai

    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", timeout=120,
                           max_retries=0)
    assert "clinical-assistant" in [m.id for m in client.models.list().data]

    messages = [{"role": "user", "content": SEED}]
    first = client.chat.completions.create(model="clinical-assistant", messages=messages)
    content = first.choices[0].message.content
    assert "From the Guidelines" in content and "From the Research" in content
    assert DISCLAIMER in content and first.choices[0].finish_reason == "stop"

    messages += [{"role": "assistant", "content": content},
                 {"role": "user", "content": FOLLOW_UP}]
    follow = client.chat.completions.create(model="clinical-assistant", messages=messages)
    follow_content = follow.choices[0].message.content
    assert follow_content.startswith(f"**{FOLLOW_UP}**") and DISCLAIMER in follow_content
    # What the assistant message already said is not said again.
    body = follow_content.split("References")[0]
    quoted = re.findall(r"([A-Z][^\n\[\]]{40,}?\.) \[\d", body)
    assert quoted and not [q for q in quoted if q in content]

    stream = client.chat.completions.create(model="clinical-assistant", messages=messages,
                                            stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream]
    assert len(pieces) > 3 and "".join(pieces) == follow_content  # extractive: same answer

    with pytest.raises(openai.BadRequestError, match="last message must be the user"):
        client.chat.completions.create(model="clinical-assistant", messages=[
            {"role": "user", "content": SEED}, {"role": "assistant", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError, match="question is empty"):
        client.chat.completions.create(model="clinical-assistant",
                                       messages=[{"role": "user", "content": " "}])


def test_openai_client_needs_a_key_when_keys_are_set(starter_index, starter_assistant,
                                                     tmp_path):
    import openai

    app = create_app(server_settings(starter_index, tmp_path / "c.sqlite3",
                                     api_keys=["sk-test-123456"]), assistant=starter_assistant)
    with LiveServer(app) as server:
        bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-test-123456",
                             max_retries=0)
        assert good.models.list().data[0].id == "clinical-assistant"


# -- schema-based fuzzing of the app's own OpenAPI -------------------------------------

@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("keyed", [False, True], ids=["open", "api-keys"])
def test_fuzz_the_api(starter_index, starter_assistant, tmp_path, mode, keyed):
    """Schemathesis generates valid (positive) and invalid (negative) requests for every
    operation of the app's /openapi.json and runs all its checks on each response: never
    a 500, a documented status code and content type, a body that matches its schema,
    invalid data rejected with a 4xx, and (with keys) no access without a valid key."""
    key = "sk-fuzz-0123456789"
    settings_ = server_settings(starter_index, tmp_path / "c.sqlite3",
                                api_keys=[key] if keyed else [])
    headers = {"Authorization": f"Bearer {key}"} if keyed else {}
    failures = []
    with LiveServer(create_app(settings_, assistant=starter_assistant)) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 8

        for operation in operations:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def run(case):
                # A schema-valid Idempotency-Key reused with another question is rightly
                # a 422, which the positive checks cannot know: a fresh key per request.
                fresh = ({"Idempotency-Key": uuid.uuid4().hex}
                         if mode == GenerationMode.POSITIVE else {})
                case.call_and_validate(base_url=server.url, headers={**headers, **fresh},
                                       timeout=120, excluded_checks=excluded)

            # OpenAI's request schema cannot say "the last message is the user's and has
            # text": a schema-valid request may still get a clear 400/422 there.
            excluded = [positive_data_acceptance] if "chat/completions" in operation.label else []

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid in a request without inputs
                assert mode == GenerationMode.NEGATIVE
            except Exception as exc:  # every operation is fuzzed; failures reported together
                failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
