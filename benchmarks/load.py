"""Load benchmark (not a test) of the HTTP service on loopback.

    python benchmarks/load.py [--index /tmp/idx-server] [--requests 64] [--levels 1 8 32]
                              [--url http://127.0.0.1:PORT] [--json out.json]

Unless --url names a running server, starts `assistant serve` on a free loopback port
with a fresh SQLite conversation store (rate limit lifted for the run) and stops it at
the end. For each number of concurrent clients it runs two scenarios, each with a fixed
number of requests (bounded, no open-ended loop):

- single: every request starts a new conversation with a question;
- follow-up: each client starts a conversation (not timed), then asks follow-ups in it.

It reports requests/s, p50/p95 latency, the error count (must be 0) and the number of
turns stored (read back through the API) versus the number sent (must match).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

QUESTIONS = [
    "What is the role of Chimeric Antigen Receptor (CAR) T cells in the treatment of solid "
    "organ malignancies?",
    "How is cytokine release syndrome graded and managed after CAR T-cell therapy?",
    "Which CAR T-cell products are approved for relapsed large B-cell lymphoma?",
    "What is known about GD2-directed CAR T cells in neuroblastoma?",
    "How is immune effector cell-associated neurotoxicity syndrome treated?",
    "What are the late effects of CD19 CAR T cells such as hypogammaglobulinemia?",
    "Is BCMA-directed CAR T-cell therapy effective in multiple myeloma?",
    "What is the role of tumour-infiltrating lymphocytes in melanoma?",
]
FOLLOW_UPS = [
    "What about its toxicities?",
    "And how is it managed?",
    "What about children?",
    "Is there evidence from randomised trials?",
]
TIMEOUT_S = 300


@dataclass
class Run:
    scenario: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: int = 0  # turns asked for in this run (setup turns included)
    wall_s: float = 0.0
    conversations: dict[str, int] = field(default_factory=dict)  # id -> turns sent

    def row(self, stored: int) -> dict:
        lat = sorted(self.latencies)
        pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (
            lambda q: float("nan"))
        return {
            "scenario": self.scenario, "clients": self.clients, "requests": len(self.latencies),
            "req_per_s": round(len(self.latencies) / self.wall_s, 2) if self.wall_s else 0,
            "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else float("nan"),
            "p95_ms": round(pct(0.95), 1), "errors": len(self.errors),
            "turns_sent": self.sent, "turns_stored": stored,
        }


async def ask(http: httpx.AsyncClient, run: Run, url: str, question: str,
              timed: bool = True) -> str | None:
    started = time.perf_counter()
    run.sent += 1
    try:
        response = await http.post(url, json={"question": question})
    except httpx.HTTPError as exc:
        run.errors.append(f"{type(exc).__name__}: {exc}")
        return None
    if response.status_code != 201:
        run.errors.append(f"{response.status_code}: {response.text[:200]}")
        return None
    if timed:
        run.latencies.append(time.perf_counter() - started)
    cid = response.json()["conversation_id"]
    run.conversations[cid] = run.conversations.get(cid, 0) + 1
    return cid


async def scenario(base: str, name: str, clients: int, requests: int) -> Run:
    run = Run(name, clients)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S, limits=limits) as http:
        share = [requests // clients + (i < requests % clients) for i in range(clients)]

        async def single(i: int, n: int) -> None:
            for j in range(n):
                await ask(http, run, "/v1/conversations", QUESTIONS[(i + j) % len(QUESTIONS)])

        async def start(i: int) -> str | None:  # untimed: the conversation to follow up
            return await ask(http, run, "/v1/conversations", QUESTIONS[i % len(QUESTIONS)],
                             timed=False)

        async def follow_up(i: int, n: int) -> None:
            if conversations[i] is not None:
                for j in range(n):
                    await ask(http, run, f"/v1/conversations/{conversations[i]}/turns",
                              FOLLOW_UPS[j % len(FOLLOW_UPS)])

        if name == "follow-up":
            conversations = await asyncio.gather(*(start(i) for i in range(clients)))
        worker = single if name == "single" else follow_up
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, n) for i, n in enumerate(share)))
        run.wall_s = time.perf_counter() - started
    return run


async def stored_turns(base: str, run: Run) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S) as http:
        total = 0
        for cid in run.conversations:
            response = await http.get(f"/v1/conversations/{cid}")
            response.raise_for_status()
            total += len(response.json()["turns"])
        return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(index: Path, folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "ASSISTANT_CONVERSATIONS_DB": str(folder / "conversations.sqlite3"),
           "ASSISTANT_RATE_LIMIT_PER_MINUTE": "1000000",
           "ASSISTANT_MAX_TURNS_PER_CONVERSATION": "1000"}
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "serve", "--index", str(index),
         "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited; see {folder / 'server.log'}")
        try:
            if httpx.get(f"{base}/readyz", timeout=60).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("server not ready after 300 s")


def table(rows: list[dict]) -> str:
    head = ["scenario", "clients", "requests", "req_per_s", "p50_ms", "p95_ms", "errors",
            "turns_sent", "turns_stored"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, default=Path("indexes/starter"))
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--requests", type=int, default=64,
                        help="timed requests per scenario and concurrency level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    process = None
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        if args.url:
            base = args.url.rstrip("/")
        else:
            process, base = start_server(args.index, Path(tmp))
        try:
            ready = httpx.get(f"{base}/readyz", timeout=60).json()
            warm_up = asyncio.run(scenario(base, "single", 1, len(QUESTIONS)))  # not reported
            if warm_up.errors:
                raise SystemExit(f"warm-up failed: {warm_up.errors[0]}")
            rows = []
            for clients in args.levels:
                for name in ("single", "follow-up"):
                    run = asyncio.run(scenario(base, name, clients, args.requests))
                    rows.append(run.row(asyncio.run(stored_turns(base, run))))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=60)

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; index: {ready['documents']} documents, "
          f"{ready['passages']} passages; server: one uvicorn process, SQLite store\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "index": ready}, indent=2))
    bad = [r for r in rows if r["errors"] or r["turns_sent"] != r["turns_stored"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
