"""The HTTP service under the ways clients and attackers actually misbehave, against a
real uvicorn on loopback: invalid Unicode, retried
turns with an Idempotency-Key, guessed API keys, one rate limit shared by several
processes on PostgreSQL, and the OpenAI options stock clients send."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, openapi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from assistant.server import create_app
from assistant.types import DISCLAIMER
from tests.server_fixtures import (  # noqa: F401
    LiveServer,
    live_server,
    postgres_url,
    server_settings,
)

QUESTION = "How is cytokine release syndrome graded?"
FOLLOW_UP = "And how is it managed?"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(live_server):
    with httpx.Client(base_url=live_server.url, timeout=120) as client:
        yield client


def chat(*texts: str) -> list[dict]:
    """OpenAI messages: user, assistant, user, ... ending with the user's question."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t}
            for i, t in enumerate(texts)]


# -- invalid Unicode: a clear 4xx everywhere, never a 500 ------------------------------

LONE_SURROGATES = ["\\ud800", "\\udfff", "\\udc00\\ud800", "CAR \\ud83d T cells"]


@pytest.mark.parametrize("escape", LONE_SURROGATES)
@pytest.mark.parametrize("stream", [False, True])
def test_unpaired_surrogates_get_a_422_on_every_route(client, escape, stream):
    flag = json.dumps(stream)
    bodies = {
        "/v1/conversations": f'{{"question": "{escape}", "stream": {flag}}}',
        "/v1/chat/completions": [  # the question, an earlier message, a content part
            f'{{"messages": [{{"role": "user", "content": "{escape}"}}], "stream": {flag}}}',
            f'{{"messages": [{{"role": "user", "content": "CAR T {escape}"}}, '
            f'{{"role": "assistant", "content": "x"}}, {{"role": "user", "content": '
            f'"What about CRS?"}}], "stream": {flag}}}',
            f'{{"messages": [{{"role": "user", "content": [{{"type": "text", "text": '
            f'"{escape}"}}]}}], "stream": {flag}}}'],
    }
    for route, variants in bodies.items():
        for body in [variants] if isinstance(variants, str) else variants:
            response = client.post(route, content=body.encode(), headers=JSON)
            assert response.status_code == 422, (route, body, response.text)
            message = response.json()["error"]["message"]
            assert "surrogate" in message or "unicode" in message


@pytest.mark.parametrize("raw", [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82"])
def test_invalid_utf8_gets_a_4xx(client, raw):
    for route, body in [("/v1/conversations", b'{"question": "CAR T ' + raw + b'"}'),
                        ("/v1/chat/completions",
                         b'{"messages": [{"role": "user", "content": "CAR ' + raw + b'"}]}')]:
        response = client.post(route, content=body, headers=JSON)
        assert 400 <= response.status_code < 500, (route, raw, response.text)
        assert response.json()["error"]["message"]


def test_a_bad_request_keeps_the_connection_usable(live_server):
    """After any error the kept-alive connection still serves the next request."""
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        bad = http.post("/v1/chat/completions", headers=JSON,
                        content=b'{"messages": [{"role": "user", "content": "\\ud800"}]}')
        assert bad.status_code == 422 and bad.headers.get("connection") != "close"
        good = http.post("/v1/chat/completions",
                         json={"messages": chat(QUESTION), "model": "clinical-assistant"})
        assert good.status_code == 200
        assert DISCLAIMER in good.json()["choices"][0]["message"]["content"]


def test_an_internal_error_says_the_connection_closes(starter_index, starter_assistant,
                                                     tmp_path):
    """Should anything still fail inside, the 500 says `Connection: close` (the server
    drops the connection after it), so a client opens a new one for its next request."""
    app = create_app(server_settings(starter_index, tmp_path / "c.sqlite3"),
                     assistant=starter_assistant)

    @app.get("/boom")
    def boom():
        raise RuntimeError("a fault inside the service")

    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        failed = http.get("/boom")
        assert failed.status_code == 500 and failed.headers["connection"] == "close"
        assert failed.json()["error"]["message"] == "internal error"  # no stack trace
        assert http.get("/healthz").status_code == 200  # the client reconnects cleanly


def _string_paths(value, path=()):
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_paths(item, (*path, key))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from _string_paths(item, (*path, number))


def test_fuzz_with_lone_surrogates(starter_index, starter_assistant, tmp_path):
    """Schemathesis makes schema-valid requests for every operation with a JSON body; a
    lone surrogate (sent as a JSON escape, as a broken client would) goes into one of
    their strings. Every response: no 500, a documented status and a conforming body."""
    app = create_app(server_settings(starter_index, tmp_path / "c.sqlite3"),
                     assistant=starter_assistant)
    failures = []
    with LiveServer(app) as server:
        schema = openapi.from_url(f"{server.url}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        with_body = [op for op in operations if op.body]
        assert len(with_body) >= 3

        for operation in with_body:
            @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                   data=st.data())
            @settings(max_examples=15, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def run(case, data):
                paths = list(_string_paths(case.body))
                if paths:
                    *parents, last = data.draw(st.sampled_from(paths))
                    holder = case.body
                    for step in parents:
                        holder = holder[step]
                    text = holder[last]
                    at = data.draw(st.integers(0, len(text)))
                    bad = data.draw(st.sampled_from(["\ud800", "\udfff", "\udc00\ud800"]))
                    holder[last] = text[:at] + bad + text[at:]
                # A surrogate makes the request invalid: a 4xx is the right answer.
                case.call_and_validate(base_url=server.url, timeout=120,
                                       excluded_checks=[positive_data_acceptance])

            try:
                run()
            except Exception as exc:
                failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


# -- retries: the Idempotency-Key -----------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_a_retry_with_the_same_key_returns_the_stored_turn(client, stream):
    key = {"Idempotency-Key": f"retry-{stream}-{uuid.uuid4()}"}
    first = client.post("/v1/conversations", json={"question": QUESTION}, headers=key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    cid = first.json()["conversation_id"]

    again = client.post("/v1/conversations", json={"question": QUESTION, "stream": stream},
                        headers=key)
    assert again.status_code == 201 if not stream else again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    if stream:
        answer = json.loads(again.text.split("event: answer\ndata: ")[1].split("\n\n")[0])
    else:
        answer = again.json()
    assert answer == first.json()

    follow_key = {"Idempotency-Key": f"retry-{stream}-{uuid.uuid4()}"}
    turns = [client.post(f"/v1/conversations/{cid}/turns", json={"question": FOLLOW_UP},
                         headers=follow_key) for _ in range(3)]
    assert [t.status_code for t in turns] == [201, 201, 201]
    assert len({json.dumps(t.json()) for t in turns}) == 1
    stored = client.get(f"/v1/conversations/{cid}").json()["turns"]
    assert [t["question"] for t in stored] == [QUESTION, FOLLOW_UP]  # nothing twice

    other = client.post(f"/v1/conversations/{cid}/turns", json={"question": "Other?"},
                        headers=follow_key)
    assert other.status_code == 422
    assert other.json()["error"]["param"] == "Idempotency-Key"
    assert "different request" in other.json()["error"]["message"]
    assert len(client.get(f"/v1/conversations/{cid}").json()["turns"]) == 2


def test_idempotency_keys_are_checked_and_belong_to_their_owner(starter_index,
                                                                starter_assistant, tmp_path):
    keys = ["sk-alice-0123456789", "sk-bob-0123456789"]
    app = create_app(server_settings(starter_index, tmp_path / "c.sqlite3", api_keys=keys),
                     assistant=starter_assistant)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        for bad in ["", "has space", "x" * 256, "é".encode()]:
            response = client.post("/v1/conversations", json={"question": QUESTION},
                                   headers={"Authorization": f"Bearer {keys[0]}",
                                            "Idempotency-Key": bad})
            assert response.status_code in (400, 422), bad
        shared = "same-key-for-both"
        alice = client.post("/v1/conversations", json={"question": QUESTION}, headers={
            "Authorization": f"Bearer {keys[0]}", "Idempotency-Key": shared})
        bob = client.post("/v1/conversations", json={"question": QUESTION}, headers={
            "Authorization": f"Bearer {keys[1]}", "Idempotency-Key": shared})
        assert alice.status_code == bob.status_code == 201
        assert "idempotent-replayed" not in bob.headers  # another key's turn is not replayed
        assert alice.json()["conversation_id"] != bob.json()["conversation_id"]


def test_concurrent_retries_on_postgresql_store_one_turn(postgres_url, starter_index,  # noqa: F811
                                                          starter_assistant):
    """Two processes (two apps) get the same request with the same key at once, as when
    a client retries against another worker: one conversation is stored."""
    settings_ = server_settings(starter_index, postgres_url)
    key = {"Idempotency-Key": "concurrent-retry-1"}
    apps = [create_app(settings_, assistant=starter_assistant) for _ in range(2)]
    with LiveServer(apps[0]) as server_one, LiveServer(apps[1]) as server_two, \
            httpx.Client(base_url=server_one.url, timeout=120) as one, \
            httpx.Client(base_url=server_two.url, timeout=120) as two:
        store = apps[0].state.service.store
        before = store.count_turns()
        results = [None, None]

        def post(number, client):
            results[number] = client.post("/v1/conversations", json={"question": QUESTION},
                                          headers=key)

        threads = [threading.Thread(target=post, args=(n, c)) for n, c in enumerate((one, two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r.status_code for r in results] == [201, 201]
        assert results[0].json()["conversation_id"] == results[1].json()["conversation_id"]
        assert store.count_turns() == before + 1


# -- key guessing and shared rate limits -----------------------------------------------

def test_failed_authentication_is_throttled_per_address(starter_index, starter_assistant,
                                                        tmp_path):
    key = "sk-valid-0123456789"
    app = create_app(server_settings(starter_index, tmp_path / "c.sqlite3", api_keys=[key],
                                     auth_failures_per_minute=3),
                     assistant=starter_assistant)
    with LiveServer(app) as server:
        def from_address(address: str) -> httpx.Client:
            transport = httpx.HTTPTransport(local_address=address)
            return httpx.Client(base_url=server.url, transport=transport, timeout=60)

        with from_address("127.0.0.1") as guesser, from_address("127.0.0.2") as clinician:
            guesses = [guesser.get("/v1/models", headers={"Authorization": f"Bearer g{n}"})
                       for n in range(5)]
            assert [g.status_code for g in guesses] == [401, 401, 401, 429, 429]
            assert int(guesses[-1].headers["retry-after"]) >= 1
            assert "ASSISTANT_AUTH_FAILURES_PER_MINUTE" in guesses[-1].json()["error"]["message"]
            # Throttled before the key is compared: a right guess is not confirmed.
            assert guesser.get("/v1/models", headers={"Authorization": f"Bearer {key}"}
                               ).status_code == 429
            # The valid key from another address is not locked out.
            assert clinician.get("/v1/models", headers={"Authorization": f"Bearer {key}"}
                                 ).status_code == 200


def test_rate_limits_are_shared_by_processes_on_postgresql(postgres_url, starter_index,  # noqa: F811
                                                           starter_assistant):
    key = "sk-shared-0123456789"
    settings_ = server_settings(starter_index, postgres_url, api_keys=[key],
                                rate_limit_per_minute=4, auth_failures_per_minute=2)
    auth = {"Authorization": f"Bearer {key}"}
    apps = [create_app(settings_, assistant=starter_assistant) for _ in range(2)]
    with LiveServer(apps[0]) as server_one, LiveServer(apps[1]) as server_two, \
            httpx.Client(base_url=server_one.url, timeout=120) as one, \
            httpx.Client(base_url=server_two.url, timeout=120) as two:
        statuses = [(one, two)[n % 2].get("/v1/models", headers=auth).status_code
                    for n in range(8)]
        assert statuses.count(200) == 4 and statuses[4:] == [429] * 4  # not 4 each
        wrong = {"Authorization": "Bearer wrong"}
        guesses = [(one, two)[n % 2].get("/v1/models", headers=wrong).status_code
                   for n in range(4)]
        assert guesses == [401, 401, 429, 429]


# -- OpenAI fidelity -------------------------------------------------------------------

def test_openai_options_are_honoured_or_refused(live_server):
    import openai

    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", timeout=120,
                           max_retries=0)
    model, messages = "clinical-assistant", chat(QUESTION)

    answer = client.chat.completions.create(model=model, messages=messages, max_tokens=50,
                                            temperature=0.2, seed=7)
    content = answer.choices[0].message.content
    assert DISCLAIMER in content  # max_tokens does not cut a cited answer
    from llama_index.core.utils import get_tokenizer

    tokens = len(get_tokenizer()(content))
    assert answer.usage.completion_tokens == tokens
    assert answer.usage.prompt_tokens > len(get_tokenizer()(QUESTION))
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + tokens

    chunks = list(client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == answer.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == content

    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    refused = [
        (dict(n=2), "n"),
        (dict(tools=[tool], tool_choice="required"), "tool_choice"),
        (dict(tools=[tool], tool_choice={"type": "function", "function": {"name": "lookup"}}),
         "tool_choice"),
        (dict(response_format={"type": "json_object"}), "response_format"),
        (dict(logprobs=True), "logprobs"),
        (dict(stream_options={"include_usage": True}), "stream_options"),
    ]
    for options, param in refused:
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model=model, messages=messages, **options)
        assert error.value.body["param"] == param, options

    invalid = [dict(max_tokens=-1), dict(max_tokens=0), dict(temperature=3),
               dict(extra_body={"temperature": "hot"}), dict(top_p=-0.5),
               dict(extra_body={"n": "two"}), dict(stop=["a", "b", "c", "d", "e"])]
    for options in invalid:
        with pytest.raises(openai.UnprocessableEntityError):
            client.chat.completions.create(model=model, messages=messages, **options)

    # Tools the assistant may leave uncalled ("auto") are fine: it answers.
    auto = client.chat.completions.create(model=model, messages=messages, tools=[tool],
                                          tool_choice="auto")
    assert auto.choices[0].message.tool_calls is None and DISCLAIMER in (
        auto.choices[0].message.content)


def test_every_user_message_is_held_to_the_question_limit(starter_index, tmp_path):
    app = create_app(server_settings(starter_index, tmp_path / "c.sqlite3",
                                     max_question_chars=300))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        long_history = chat("why " * 100, "an earlier answer", "What about CRS?")
        response = client.post("/v1/chat/completions", json={"messages": long_history})
        assert response.status_code == 422
        assert "messages[0]" in response.json()["error"]["message"]
        assert "limit" in response.json()["error"]["message"]
        long_reply = chat(QUESTION, "an earlier answer " * 100, "What about CRS?")
        assert client.post("/v1/chat/completions",
                           json={"messages": long_reply}).status_code == 200
