"""Several `assistant serve` processes on one Milvus and one PostgreSQL (not a test).

    python benchmarks/milvus_serve.py [--index indexes/starter] [--servers 3]
                                      [--requests 48] [--levels 3 12] [--json out.json]

Starts, on loopback: a PostgreSQL 15 cluster (the conversation store, as in
tests/server_fixtures.py), a Milvus Lite server (`milvus-lite server`: Milvus Lite's own
gRPC server, which several processes can reach, unlike a Milvus Lite file that one
process opens), loads the FAISS index into it (`assistant ingest --from-index`, through
the server), then ``--servers`` separate `assistant serve` processes, each on its own
port, as they would run on separate machines. The clients of each concurrency level are
spread over the servers (benchmarks/load.py's two scenarios: new conversations, and
follow-ups in them); turns are read back through another server than the one that
stored them. Reports requests/s, p50/p95, errors (must be 0) and turns stored against
turns sent (must match).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.load import Run, scenario, stored_turns, table  # noqa: E402
from tests.server_fixtures import free_port, start_postgres  # noqa: E402


def wait_for_port(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 600  # a server loads torch, the embedder and the index
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited:\n" + log.read_text()[-3000:])
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise SystemExit(f"{what} did not listen on {port}:\n" + log.read_text()[-3000:])


async def spread(bases: list[str], name: str, clients: int, requests: int) -> Run:
    """One scenario with its clients and requests shared among the servers."""
    share = [requests // len(bases) + (i < requests % len(bases)) for i in range(len(bases))]
    per = [max(1, clients // len(bases) + (i < clients % len(bases))) for i in range(len(bases))]
    started = time.perf_counter()
    runs = await asyncio.gather(*(scenario(b, name, c, n) for b, c, n in zip(bases, per, share)))
    total = Run(name, clients, wall_s=time.perf_counter() - started)
    for run in runs:
        total.latencies += run.latencies
        total.errors += run.errors
        total.sent += run.sent
        total.conversations.update(run.conversations)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, default=Path("indexes/starter"))
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 12])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    processes: list[subprocess.Popen] = []
    folder = Path(tempfile.mkdtemp(prefix="milvus-serve-"))
    stop_postgres = None
    try:
        postgres, stop_postgres = start_postgres(folder, "-c max_connections=200")
        milvus_port = free_port()
        log = folder / "milvus.log"
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(folder / "milvus"),
             "--host", "127.0.0.1", "--port", str(milvus_port)],
            stdout=log.open("wb"), stderr=subprocess.STDOUT))
        wait_for_port(milvus_port, processes[-1], "milvus-lite server", log)
        env = {**os.environ, "ASSISTANT_STORE": "milvus",
               "ASSISTANT_MILVUS_URI": f"http://127.0.0.1:{milvus_port}",
               "ASSISTANT_INDEX_PATH": str(folder / "work"),
               "ASSISTANT_CONVERSATIONS_DB": postgres,
               "ASSISTANT_RATE_LIMIT_PER_MINUTE": "1000000",
               "ASSISTANT_MAX_TURNS_PER_CONVERSATION": "1000"}
        loaded = subprocess.run([sys.executable, "-m", "assistant.cli", "ingest", "--from-index",
                                 str(args.index)], env=env, capture_output=True, text=True)
        if loaded.returncode:
            raise SystemExit(f"loading the index failed: {loaded.stderr[-2000:]}")
        print(loaded.stdout.strip(), flush=True)
        bases = []
        for n in range(args.servers):
            port = free_port()
            log = folder / f"serve-{n}.log"
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(port)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT))
            bases.append(f"http://127.0.0.1:{port}")
        started = time.perf_counter()
        for base, process in zip(bases, processes[1:]):
            wait_for_port(int(base.rsplit(":", 1)[1]), process, "assistant serve",
                          folder / f"serve-{bases.index(base)}.log")
            ready = httpx.get(f"{base}/readyz", timeout=300).json()
        print(f"{args.servers} servers ready in {time.perf_counter() - started:.0f} s", flush=True)
        for base in bases:  # warm-up, not reported
            warm = asyncio.run(scenario(base, "single", 1, 2))
            if warm.errors:
                raise SystemExit(f"warm-up failed: {warm.errors[0]}")
        rows = []
        for clients in args.levels:
            for name in ("single", "follow-up"):
                run = asyncio.run(spread(bases, name, clients, args.requests))
                # Read back through the next server: all of them share PostgreSQL.
                stored = asyncio.run(stored_turns(bases[1 % len(bases)], run))
                rows.append(run.row(stored))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        if stop_postgres:
            stop_postgres()
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; index: {ready['documents']} documents, "
          f"{ready['passages']} passages; {args.servers} `assistant serve` processes, one "
          f"`milvus-lite server`, one PostgreSQL\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "index": ready,
                                         "servers": args.servers}, indent=2))
    bad = [r for r in rows if r["errors"] or r["turns_sent"] != r["turns_stored"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
