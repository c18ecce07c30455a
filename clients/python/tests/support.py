"""A real `belfry serve` for the tests: its own temporary directory (SQLite file, config), a free
loopback port, stopped by the PID it was started with. `restart()` brings it back on the same
port with the same data, for the retry-through-a-restart test.

`wait_until` waits on a condition with a deadline; no test sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("BELFRY_BIN", REPO / "target" / "debug" / "belfry"))
DEADLINE = 20.0
API_KEY = "bk_python_tests"
JWT_SECRET = "python-tests-secret-of-at-least-32-bytes"

T = TypeVar("T")

#: When set (a PostgreSQL server URL), every test server gets a fresh database on it.
TEST_DATABASE_URL = "BELFRY_TEST_DATABASE_URL"


def postgres_server() -> str | None:
    return os.environ.get(TEST_DATABASE_URL) or None


def psql(sql: str, server: str | None = None) -> None:
    """Runs SQL as the PostgreSQL server's admin (with the `psql` client)."""
    url = server or postgres_server()
    assert url, f"{TEST_DATABASE_URL} is not set"
    subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=True,
        capture_output=True,
    )


def with_database(server: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def wait_until(
    probe: Callable[[], T | None], *, deadline: float = DEADLINE, what: str = "condition"
) -> T:
    """Polls `probe` until it returns something truthy, or fails after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string (escapes included)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def render_config(tables: Mapping[str, Mapping[str, Any]], top: Mapping[str, Any]) -> str:
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


class Server:
    """One `belfry serve` process."""

    def __init__(self, directory: Path, extra: Mapping[str, Mapping[str, Any]] | None = None):
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: run `cargo build --bin belfry` first")
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tables: dict[str, dict[str, Any]] = {
            "auth": {"api_keys": [API_KEY], "jwt_secret": JWT_SECRET},
        }
        for name, table in (extra or {}).items():
            tables.setdefault(name, {}).update(table)
        self.database: str | None = None
        pg = postgres_server()
        if pg is not None:
            self.database = f"belfry_py_{uuid.uuid4().hex[:16]}"
            psql(f"CREATE DATABASE {self.database}")
            database_url = with_database(pg, self.database)
        else:
            database_url = f"sqlite://{directory / 'belfry.db'}"
        self.config = directory / "belfry.toml"
        self.config.write_text(
            render_config(
                tables,
                {
                    "listen": f"127.0.0.1:{self.port}",
                    "database_url": database_url,
                },
            )
        )
        self.log = directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BELFRY_")}
        env.setdefault("RUST_LOG", "warn")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BINARY), "--config", str(self.config), "serve"],
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=log,
            )
        wait_until(self._ready, what=f"belfry on {self.url} (log: {self.log})")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"belfry exited during startup:\n{self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        """SIGTERM to the PID started here, SIGKILL if it outlives the deadline."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def drop_database(self) -> None:
        if self.database is not None:
            psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def restart(self) -> None:
        self.stop()
        self.start()

    def inbox(self, user_id: str) -> list[dict[str, Any]]:
        """The user's notifications, newest first, read with a user token like a browser."""
        from belfry import user_token

        token = user_token(user_id, secret=JWT_SECRET)
        response = httpx.get(
            f"{self.url}/v1/me/notifications",
            params={"limit": 100},
            headers={"Authorization": f"Bearer {token}"},
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["notifications"]
        return items


@contextmanager
def running(
    directory: Path, extra: Mapping[str, Mapping[str, Any]] | None = None
) -> Iterator[Server]:
    server = Server(directory, extra)
    try:
        yield server
    finally:
        server.stop()
        server.drop_database()


class Proxy:
    """A tiny HTTP server between a client and Belfry, for failures Belfry will not make on cue.

    Each request takes the next behaviour from `script` (then `"pass"`):
    - `"pass"`: forward to Belfry and relay its answer;
    - `"503"`: answer 503 with `Retry-After: <retry_after>` and forward nothing (a load
      balancer shedding load);
    - `"lose"`: forward to Belfry, then close the connection without answering (the answer was
      lost on the way back: Belfry acted, the client cannot know).
    `hold`, when set, keeps each request waiting until it is set. `requests` records
    `(method, path, body)` of every request received.
    """

    def __init__(self, upstream: str, script: list[str], retry_after: str = "1") -> None:
        import http.server
        import threading

        self.upstream = upstream
        self.script = list(script)
        self.retry_after = retry_after
        self.requests: list[tuple[str, str, bytes]] = []
        self.hold = threading.Event()
        self.hold.set()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                proxy.requests.append((self.command, self.path, body))
                proxy.hold.wait(DEADLINE)
                behaviour = proxy.script.pop(0) if proxy.script else "pass"
                if behaviour == "503":
                    payload = b'{"error":{"code":"unavailable","message":"shedding load"}}'
                    self.send_response(503)
                    self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type")
                }
                answer = httpx.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers
                )
                if behaviour == "lose":
                    self.close_connection = True
                    return
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        class Quiet(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (timeouts, closed pools) is expected here

        self._server = Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
