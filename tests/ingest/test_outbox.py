"""The outbox dispatcher hands every stored event to the routers exactly once it succeeds."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text

from ingest.outbox import OutboxDispatcher


class RecordingRouter:
    """A router that records what it is handed; can be told to fail."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.fail = False

    async def route(self, session, events) -> None:
        if self.fail:
            raise RuntimeError("router down")
        self.seen.extend(e.id for e in events)


async def track(client, ws, n: int, prefix: str = "m") -> None:
    calls = [
        {
            "type": "track",
            "userId": f"u{i % 50}",
            "event": "Viewed Product",
            "messageId": f"{prefix}{i}",
        }
        for i in range(n)
    ]
    for start in range(0, n, 500):
        r = await client.post(
            "/v1/batch", headers=ws.tracking, json={"batch": calls[start : start + 500]}
        )
        assert r.status_code == 200


async def outbox_size(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM event_outbox"))).scalar_one()


async def event_ids(engine) -> list[int]:
    async with engine.connect() as conn:
        return sorted((await conn.execute(text("SELECT id FROM events"))).scalars())


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_concurrent_dispatchers_deliver_each_event_once(
    client, workspaces, engine, database_url
):
    ws = await workspaces.create()
    await track(client, ws, 1_200)
    router = RecordingRouter()
    dispatchers = [
        OutboxDispatcher(engine, database_url, [router], batch_size=100) for _ in range(3)
    ]
    await asyncio.gather(*(d.drain() for d in dispatchers))
    assert sorted(router.seen) == await event_ids(engine)
    assert len(router.seen) == 1_200
    assert await outbox_size(engine) == 0


async def test_a_failing_router_loses_nothing(client, workspaces, engine, database_url):
    ws = await workspaces.create()
    await track(client, ws, 300)
    router = RecordingRouter()
    router.fail = True
    dispatcher = OutboxDispatcher(engine, database_url, [router], batch_size=100)
    try:
        await dispatcher.drain()
    except RuntimeError:
        pass
    assert router.seen == [] and await outbox_size(engine) == 300
    router.fail = False
    assert await dispatcher.drain() == 300
    assert sorted(router.seen) == await event_ids(engine)


async def test_running_dispatcher_wakes_on_notify(client, workspaces, engine, database_url):
    ws = await workspaces.create()
    router = RecordingRouter()
    # A poll interval far longer than the test: only NOTIFY can wake it in time.
    dispatcher = OutboxDispatcher(engine, database_url, [router], poll_interval=60)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        await asyncio.sleep(0.3)  # let it LISTEN and go idle
        await track(client, ws, 5, prefix="n")

        async def delivered() -> bool:
            return len(router.seen) == 5

        await wait_for(delivered, timeout=5)
        # Events stored while no dispatcher ran (a crash after commit) are delivered on start.
    finally:
        stop.set()
        await asyncio.wait_for(running, 70)


async def test_leftovers_are_delivered_when_a_dispatcher_starts(
    client, workspaces, engine, database_url
):
    ws = await workspaces.create()
    await track(client, ws, 40)
    router = RecordingRouter()
    stop = asyncio.Event()
    running = asyncio.create_task(
        OutboxDispatcher(engine, database_url, [router], poll_interval=60).run(stop)
    )
    try:

        async def delivered() -> bool:
            return len(router.seen) == 40

        await wait_for(delivered)
    finally:
        stop.set()
        await asyncio.wait_for(running, 70)
    assert await outbox_size(engine) == 0
