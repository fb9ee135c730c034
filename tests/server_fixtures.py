"""Fixtures for the HTTP service tests: a real uvicorn server on loopback, a throwaway
PostgreSQL cluster. Test modules import what they use from here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import uvicorn

from assistant import Settings
from assistant.server import create_app

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STARTUP_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """An app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def server_settings(index: Path, db: Path | str, **changes) -> Settings:
    values = dict(index_path=index, conversations_db=str(db), rate_limit_per_minute=100_000,
                  auth_failures_per_minute=100_000)
    return Settings(**{**values, **changes})


@pytest.fixture(scope="module")
def live_server(starter_index, starter_assistant, tmp_path_factory):
    """The app over the starter index, no API keys, its own SQLite store."""
    db = tmp_path_factory.mktemp("conversations") / "conversations.sqlite3"
    app = create_app(server_settings(starter_index, db), assistant=starter_assistant)
    with LiveServer(app) as server:
        yield server


def wait_ready(url: str, process: subprocess.Popen | None = None) -> None:
    """Poll /readyz until 200 (bounded)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=30).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {STARTUP_TIMEOUT_S} s")


def serve_process(index: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`assistant serve` as a user would start it, in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "serve", "--index", str(index),
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env}, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


# -- PostgreSQL: a throwaway cluster on loopback ------------------------------------------

def _as_postgres(args: list[str]) -> list[str]:
    """Commands run as the postgres user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def start_postgres(folder: Path, options: str = "") -> tuple[str, Callable[[], None]]:
    """A PostgreSQL 15 cluster in ``folder`` on 127.0.0.1 (``options``: more server
    flags): its URL and how to stop it. Used by the tests and benchmarks/milvus_serve.py."""
    data, sockets = folder / "data", folder / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()

    def run(args: list[str]) -> None:
        subprocess.run(_as_postgres(args), check=True, capture_output=True, timeout=120)

    def stop() -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "stop"]), capture_output=True, timeout=120)

    run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "-E", "UTF8", "--no-sync"])
    run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60",
         "-o", f"-h 127.0.0.1 -p {port} -k {sockets} -F {options}", "start"])
    try:
        run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             "conversations"])
    except BaseException:
        stop()
        raise
    return f"postgresql://postgres@127.0.0.1:{port}/conversations", stop


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL 15 cluster in a temporary folder on 127.0.0.1, removed afterwards."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _no_user("postgres")):
        pytest.skip("running as root without a `postgres` user (or runuser) for initdb")
    folder = Path(tempfile.mkdtemp(prefix="pg-test-"))
    try:
        url, stop = start_postgres(folder)
        try:
            yield url
        finally:
            stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _no_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        return True
