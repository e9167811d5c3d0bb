"""The outbox dispatcher hands every stored event to the routers exactly once it succeeds, and
a failing outbox (events or membership changes) never holds back the other."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from ingest.outbox import OutboxDispatcher
from tests.flows.test_triggers import join, live_flow, new_list, person, queued
from tests.helpers import until


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


async def test_an_outbox_row_whose_event_is_gone_is_dropped_not_routed(
    client, workspaces, engine, database_url
):
    """The outbox has no foreign key to events: a row whose event was deleted meanwhile (its
    workspace deleted) is deleted by the dispatcher, and the routers never see it."""
    ws = await workspaces.create()
    await track(client, ws, 30)
    ids = await event_ids(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM events WHERE id = ANY(:ids)"), {"ids": ids[:10]})
    router = RecordingRouter()
    dispatcher = OutboxDispatcher(engine, database_url, [router], batch_size=8)
    assert await dispatcher.drain() == 30  # rows handled: routed or dropped
    assert sorted(router.seen) == ids[10:] and await outbox_size(engine) == 0


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

        await until(delivered, deadline=5)
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

        await until(delivered)
    finally:
        stop.set()
        await asyncio.wait_for(running, 70)
    assert await outbox_size(engine) == 0


class BrokenMembershipRouter(RecordingRouter):
    """Takes events fine; every membership batch fails (a poison row, Temporal down)."""

    def __init__(self) -> None:
        super().__init__()
        self.membership_failures = 0

    async def route_memberships(self, session, changes) -> None:
        self.membership_failures += 1
        raise RuntimeError("membership router down")


async def test_a_failing_membership_batch_does_not_delay_events(
    client, workspaces, engine, database_url
):
    ws = await workspaces.create()
    vip = await new_list(client, ws, "VIP")
    await live_flow(client, ws, {"type": "list_joined", "list_id": vip})
    await join(client, ws, vip, await person(client, ws))
    assert await queued(engine) == 1  # a list join owed to the flow
    router = BrokenMembershipRouter()
    # Polling far slower than the test: events arrive in time only by NOTIFY, with the
    # dispatcher listening and not resting after the membership failure.
    dispatcher = OutboxDispatcher(engine, database_url, [router], poll_interval=60)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:

        async def failed() -> bool:
            return router.membership_failures > 0

        await until(failed, deadline=10)
        already = len(router.seen)  # the profile's own events, if any
        await track(client, ws, 5, prefix="after-failure")

        async def delivered() -> bool:
            return len(router.seen) == already + 5

        await until(delivered, deadline=5)
    finally:
        stop.set()
        await asyncio.wait_for(running, 70)
    assert router.membership_failures == 1  # resting: not retried in a tight loop
    assert await queued(engine) == 1  # and nothing lost: delivered once the router recovers
