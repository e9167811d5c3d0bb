"""Killing the API process during a stream of batches loses no acknowledged event.

A real `waymark api` process serves `/v1/batch` while a client streams batches over several
connections; the process is SIGKILLed mid-stream. Every batch that got a 200 must be stored (with
its outbox row), and re-sending the others to a restarted API stores each message exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text

REPO = Path(__file__).resolve().parents[2]
BATCHES = 60
CALLS_PER_BATCH = 100
SENDERS = 4
KILL_AFTER_ACKS = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiProcess:
    """`waymark api` as a subprocess in its own process group."""

    def __init__(self, database_url: str, temporal_address: str, log_file: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_address,
            "WAYMARK_API_HOST": "127.0.0.1",
            "WAYMARK_API_PORT": str(self.port),
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 30.0) -> None:
        with self.log_file.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cli", "api",
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=1) as client:
            while True:
                assert self.process.returncode is None, f"`waymark api` exited:\n{self.log()}"
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"no /healthz in {timeout}s:\n{self.log()}"
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no shutdown handler, no connection cleanup, no flush."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # already dead, not yet reaped
                os.killpg(self.process.pid, signal.SIGKILL)
            await asyncio.wait_for(self.process.wait(), 10)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""


@dataclass
class Stream:
    """What the client saw: batches acknowledged (200) and batches that failed."""

    acked: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    in_flight: int = 0
    in_flight_at_kill: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


def make_batches(run: str) -> list[list[dict]]:
    return [
        [
            {
                "type": "track",
                "userId": f"u{(b * CALLS_PER_BATCH + i) % 40}",
                "event": "Viewed Product",
                "messageId": f"{run}-{b}-{i}",
                "properties": {"product_id": f"SKU-{i % 7}", "price": 19.99},
            }
            for i in range(CALLS_PER_BATCH)
        ]
        for b in range(BATCHES)
    ]


async def stream_batches(
    base_url: str, headers: dict[str, str], batches: list[list[dict]], stream: Stream
) -> None:
    pending = iter(range(len(batches)))

    async def sender() -> None:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
            for index in pending:
                stream.in_flight += 1
                try:
                    response = await client.post("/v1/batch", json={"batch": batches[index]})
                    ok = response.status_code == 200
                except httpx.TransportError:
                    ok = False
                async with stream.changed:
                    stream.in_flight -= 1
                    (stream.acked if ok else stream.failed).append(index)
                    stream.changed.notify_all()

    await asyncio.gather(*(sender() for _ in range(SENDERS)))


async def kill_mid_stream(api: ApiProcess, stream: Stream, timeout: float = 20.0) -> None:
    """Kill once some batches are acknowledged and others are on the wire."""
    async with stream.changed:
        await asyncio.wait_for(
            stream.changed.wait_for(
                lambda: len(stream.acked) >= KILL_AFTER_ACKS and stream.in_flight > 0
            ),
            timeout,
        )
        stream.in_flight_at_kill = stream.in_flight
        os.killpg(api.process.pid, signal.SIGKILL)
    await api.kill()  # reaps it


async def stored(engine, workspace_id: uuid.UUID) -> dict[str, tuple[int, bool]]:
    """message_id -> (rows with that id, every row has an outbox entry)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.message_id, count(*) AS n, bool_and(o.event_id IS NOT NULL) AS outboxed "
                "FROM events e LEFT JOIN event_outbox o ON o.event_id = e.id "
                "WHERE e.workspace_id = :ws GROUP BY e.message_id"
            ),
            {"ws": workspace_id},
        )
        return {message_id: (n, outboxed) for message_id, n, outboxed in rows}


async def test_killing_the_api_mid_stream_loses_no_acknowledged_event(
    database_url, temporal_env, workspaces, engine, tmp_path
):
    ws = await workspaces.create()
    batches = make_batches(uuid.uuid4().hex[:8])
    temporal_address = temporal_env.client.service_client.config.target_host
    api = ApiProcess(database_url, temporal_address, tmp_path / "api.log")
    restarted = ApiProcess(database_url, temporal_address, tmp_path / "api-restarted.log")
    try:
        await api.start()
        stream = Stream()
        await asyncio.gather(
            stream_batches(api.base_url, ws.tracking, batches, stream),
            kill_mid_stream(api, stream),
        )
        assert api.process.returncode == -signal.SIGKILL
        assert len(stream.acked) >= KILL_AFTER_ACKS and stream.in_flight_at_kill > 0
        assert stream.failed, "the kill came after the last batch: nothing was in flight"
        assert sorted(stream.acked + stream.failed) == list(range(BATCHES))

        # Every acknowledged message is stored once, and handed to the outbox.
        rows = await stored(engine, ws.id)
        acked_ids = [call["messageId"] for b in stream.acked for call in batches[b]]
        missing = [m for m in acked_ids if m not in rows]
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
        assert all(rows[m] == (1, True) for m in acked_ids)
        # A batch that failed is stored whole (committed, then killed before answering) or not
        # at all: never a part of it.
        for b in stream.failed:
            kept = sum(call["messageId"] in rows for call in batches[b])
            assert kept in (0, CALLS_PER_BATCH), f"batch {b} is half stored ({kept} calls)"

        # The client retries what failed against the restarted API: nothing is stored twice.
        await restarted.start()
        async with httpx.AsyncClient(base_url=restarted.base_url, headers=ws.tracking) as client:
            for b in stream.failed:
                response = await client.post("/v1/batch", json={"batch": batches[b]})
                assert response.status_code == 200, response.text
                assert response.json()["accepted"] == CALLS_PER_BATCH

        rows = await stored(engine, ws.id)
        every_id = {call["messageId"] for batch in batches for call in batch}
        assert set(rows) == every_id
        assert all(rows[m] == (1, True) for m in every_id)
    finally:
        await api.kill()
        await restarted.kill()
