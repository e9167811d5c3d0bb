"""/healthz and /readyz, including a database and a Temporal server that go away and come back."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from api import create_app
from core import migrate
from core.embedded import TemporalDevServer, start_postgres
from core.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def readyz(client: AsyncClient) -> tuple[int, dict]:
    r = await client.get("/readyz")
    return r.status_code, r.json()


async def wait_ready(client: AsyncClient, status: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = await readyz(client)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"/readyz stayed {code}: {body}"
        await asyncio.sleep(0.2)


async def test_healthz_and_readyz(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    code, body = await readyz(client)
    assert code == 200 and body["checks"] == {"database": "ok", "temporal": "ok"}


@pytest.fixture
def own_servers(tmp_path):
    """A PostgreSQL and a Temporal server of this test's own, so it may stop them."""
    server, url = start_postgres(tmp_path / "pg", "waymark")
    migrate.upgrade(url)
    port, ui_port = free_port(), free_port()
    temporal = TemporalDevServer(
        tmp_path / "temporal.db", port=port, ui_port=ui_port, namespace="default"
    )
    temporal.start(tmp_path / "temporal.log")
    yield server, url, temporal
    temporal.stop()
    # The test restarted PostgreSQL with pg_ctl, so pgserver's own handle no longer knows the
    # running server: stop it the same way (it may already be stopped if the test failed).
    with contextlib.suppress(subprocess.CalledProcessError):
        _pg_ctl(server, "-w", "-m", "fast", "stop")


async def test_readyz_names_the_dependency_that_is_down_and_recovers(own_servers):
    pg, url, temporal = own_servers
    settings = Settings(database_url=url, temporal_address=temporal.address)
    app = create_app(settings)
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://waymark.test") as client,
    ):
        await wait_ready(client, 200)

        temporal.stop()
        body = await wait_ready(client, 503)
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["temporal"] != "ok"
        assert "temporal" in body["status"]
        temporal.start(temporal.db_file.parent / "temporal.log")
        await wait_ready(client, 200, timeout=60)

        socket_dir = pg.get_postmaster_info().socket_dir
        _pg_ctl(pg, "-w", "stop")
        body = await wait_ready(client, 503)
        assert body["checks"]["temporal"] == "ok"
        assert body["checks"]["database"] != "ok" and "database" in body["status"]
        _pg_ctl(pg, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pg.log), "start")
        await wait_ready(client, 200)


def _pg_ctl(server, *args: str) -> None:
    """The embedded server's own pg_ctl: stop or start it while the API keeps running."""
    from pgserver._commands import pg_ctl

    pg_ctl(list(args), pgdata=server.pgdata, user=server.system_user)
