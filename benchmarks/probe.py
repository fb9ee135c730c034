"""Robustness probe (not a test) of `assistant serve`: crashes under load, key guessing,
malformed requests.

    python benchmarks/probe.py [--index indexes/starter] [--clients 32] [--turns 4]
                               [--kills 3] [--json out.json]

Starts `assistant serve` on loopback (SQLite store, one API key) and runs:

- crash: `--clients` concurrent clients each hold a conversation of `--turns` turns; the
  server is killed with SIGKILL `--kills` times during the load and started again. A client
  whose request fails retries it until it is answered. Run twice: retrying with an
  Idempotency-Key (one per turn) and without. Reported: 5xx responses, turns stored
  (counted in the database after the run) against turns the clients meant to store, lost
  turns (acknowledged, not stored) and duplicates (stored more than once).
- auth: wrong credentials in many forms from one address until it is throttled, then the
  valid key from another loopback address.
- bad input: malformed requests on every route; every answer must be a 4xx with a message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from load import FOLLOW_UPS, QUESTIONS, free_port  # noqa: E402

KEY = "sk-probe-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json"}


class Server:
    """`assistant serve` as a process that can be killed and started again."""

    def __init__(self, index: Path, folder: Path):
        self.index, self.db = index, folder / "conversations.sqlite3"
        self.port, self.log = free_port(), (folder / "server.log").open("ab")
        self.url, self.process = f"http://127.0.0.1:{self.port}", None

    def start(self) -> None:
        env = {**os.environ, "ASSISTANT_CONVERSATIONS_DB": str(self.db),
               "ASSISTANT_API_KEYS": json.dumps([KEY]),
               "ASSISTANT_RATE_LIMIT_PER_MINUTE": "1000000",
               "ASSISTANT_AUTH_FAILURES_PER_MINUTE": "10",
               "ASSISTANT_MAX_TURNS_PER_CONVERSATION": "1000"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "assistant.cli", "serve", "--index", str(self.index),
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit("server not up after 300 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)

    def turns(self) -> list[tuple[str, int, str]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT conversation_id, position, question FROM turns").fetchall()


async def crash(server: Server, clients: int, turns: int, kills: int, keyed: bool) -> dict:
    """Concurrent conversations while the server is killed and restarted."""
    before = len(server.turns())
    acknowledged: list[tuple[str, int]] = []
    five_xx, retries, done = [], 0, asyncio.Event()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=server.url, timeout=300, limits=limits) as http:
        async def send(path: str, question: str) -> dict:
            nonlocal retries
            headers = {**AUTH, **({"Idempotency-Key": uuid.uuid4().hex} if keyed else {})}
            for attempt in range(400):
                try:
                    response = await http.post(path, json={"question": question},
                                               headers=headers)
                except httpx.TransportError:
                    retries += 1
                    await asyncio.sleep(0.5)
                    continue
                if response.status_code >= 500:
                    five_xx.append(f"{response.status_code} {response.text[:120]}")
                    await asyncio.sleep(0.5)
                    continue
                response.raise_for_status()
                return response.json()
            raise RuntimeError(f"{path}: not answered after 400 tries")

        async def client(number: int) -> None:
            # Each question names its client and turn, so that duplicates can be found.
            tag = f" (probe {'keyed' if keyed else 'plain'} {number}"
            first = await send("/v1/conversations", QUESTIONS[number % len(QUESTIONS)]
                               + tag + " turn 1)")
            cid = first["conversation_id"]
            acknowledged.append((cid, 1))
            for turn in range(2, turns + 1):
                stored = await send(f"/v1/conversations/{cid}/turns",
                                    FOLLOW_UPS[turn % len(FOLLOW_UPS)] + tag + f" turn {turn})")
                acknowledged.append((cid, stored["turn"]["position"]))

        async def killer() -> None:
            for k in range(1, kills + 1):
                target = clients * turns * k // (kills + 1)
                while len(acknowledged) < target and not done.is_set():
                    await asyncio.sleep(0.05)
                if done.is_set():
                    return
                server.kill()
                await asyncio.to_thread(server.start)

        started = time.perf_counter()
        kill_task = asyncio.create_task(killer())
        await asyncio.gather(*(client(n) for n in range(clients)))
        done.set()
        await kill_task
        wall = time.perf_counter() - started

    stored = server.turns()[before:]
    questions = [q for _, _, q in stored]
    stored_positions = {(c, p) for c, p, _ in stored}
    return {"scenario": f"crash ({'Idempotency-Key' if keyed else 'no key'})",
            "clients": clients, "kills": kills, "wall_s": round(wall, 1),
            "retried_requests": retries, "5xx": len(five_xx),
            "turns_meant": clients * turns, "turns_stored": len(stored),
            "lost": sum(1 for a in acknowledged if a not in stored_positions),
            "duplicates": len(questions) - len(set(questions))}


def auth(server: Server) -> dict:
    """Wrong credentials from 127.0.0.1 until throttled; the valid key from 127.0.0.2."""
    forms = [
        {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"bearer {KEY}x"},
        {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {KEY[:-1]}"}, {"Authorization": f"Bearer {KEY[1:]}"},
        {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": KEY.upper()},
        {"Authorization": "Bearer " + "x" * 4000}, {"Authorization": b"Bearer \xff\xfe"},
        {"Authorization": "Bearer wrong", "X-API-Key": "wrong"}, {"Authorization": KEY},
    ]
    statuses = []
    with httpx.Client(base_url=server.url, timeout=60) as guesser:
        for headers in forms:
            statuses.append(guesser.get("/v1/models", headers=headers).status_code)
        after = guesser.get("/v1/models", headers=AUTH).status_code
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.url, timeout=60, transport=transport) as elsewhere:
        valid_elsewhere = elsewhere.get("/v1/models", headers=AUTH).status_code
    return {"scenario": "auth", "credential_forms": len(forms), "statuses": statuses,
            "401": statuses.count(401), "429": statuses.count(429),
            "5xx": sum(s >= 500 for s in statuses),
            "valid_key_same_address": after, "valid_key_other_address": valid_elsewhere}


def bad_input(server: Server) -> dict:
    """Malformed requests on every route: each must get a 4xx with a message."""
    def chat_body(**fields) -> dict:
        return {"messages": [{"role": "user", "content": "CAR T?"}], **fields}

    raw = [b"", b"{", b"[]", b"null", b"42", b'"text"', b'{"question": 1}',
           b'{"question": ""}', b'{"question": "\\ud800"}', b'{"question": "a\\udfff"}',
           b'{"question": "CAR \xff"}', b'{"question": "\xed\xa0\x80"}',
           b'{"question": "\\u0000"}', b'{"question": "CAR T?", "stream": "yes"}',
           b'{"question": "CAR T?", "extra": 1}', b'{"question": ["CAR"]}',
           b'{"question": "' + b"x" * 70_000 + b'"}', b'{"question": "CAR T?"' + b" " * 10,
           b'{"messages": []}', b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
           b'{"messages": [{"role": "wizard", "content": "hi"}]}',
           b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udc00"}]}]}',
           b'{"messages": [{"role": "assistant", "content": "x"}]}',
           b'{"messages": [{"role": "user", "content": " "}]}']
    options = [dict(n=2), dict(n=0), dict(n="2"), dict(max_tokens=-1), dict(max_tokens=1.5),
               dict(temperature="hot"), dict(temperature=9), dict(top_p=2),
               dict(tool_choice="required", tools=[{"type": "function"}]),
               dict(response_format={"type": "json_object"}), dict(logprobs=True),
               dict(stream_options={"include_usage": True}), dict(stream="yes"),
               dict(stop=["a"] * 5), dict(model=7), dict(seed="x"),
               dict(messages=[{"role": "user", "content": "x" * 3000}, {"role": "user",
                                                                         "content": "CAR?"}])]
    requests = []
    for body in raw:
        for path in ("/v1/conversations", "/v1/chat/completions"):
            requests.append(("POST", path, body))
    requests += [("POST", "/v1/chat/completions", json.dumps(chat_body(**o)).encode())
                 for o in options]
    requests += [("GET", "/v1/conversations/" + "x" * 65, None),
                 ("GET", "/v1/conversations/nope", None), ("PUT", "/v1/conversations", b"{}"),
                 ("POST", "/v1/conversations/nope/turns", b'{"question": "CAR T?"}')]
    statuses, unclear = [], 0
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for method, path, body in requests:
            response = http.request(method, path, content=body, headers={**AUTH, **JSON})
            statuses.append(response.status_code)
            try:
                unclear += not response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                unclear += 1
    return {"scenario": "bad input", "requests": len(requests),
            "4xx": sum(400 <= s < 500 for s in statuses), "5xx": sum(s >= 500 for s in statuses),
            "other": sum(s < 400 for s in statuses), "without_message": unclear}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, default=Path("indexes/starter"))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        server = Server(args.index, Path(tmp))
        server.start()
        try:
            rows = [asyncio.run(crash(server, args.clients, args.turns, args.kills, keyed))
                    for keyed in (True, False)]
            rows += [bad_input(server), auth(server)]
        finally:
            server.stop()
    for row in rows:
        print(json.dumps(row))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; one uvicorn process, SQLite store")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    keyed, bad, guess = rows[0], rows[2], rows[3]
    failed = (keyed["5xx"] or keyed["lost"] or keyed["duplicates"]
              or keyed["turns_stored"] != keyed["turns_meant"] or bad["5xx"] or bad["other"]
              or bad["without_message"] or guess["5xx"] or not guess["429"]
              or guess["valid_key_other_address"] != 200)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
