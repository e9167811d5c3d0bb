"""Materialized membership: entries, exits and their log; incremental updates right after events
through the real outbox dispatcher; the periodic refresh on a real Temporal server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from temporalio.client import ScheduleIntervalSpec

import worker
from core.db import session_scope
from ingest.events import NewEvent, store_events
from ingest.outbox import OutboxDispatcher
from segments.membership import load_definitions, refresh_segment, refresh_segments
from segments.updates import CONSENTS, SegmentEventRouter, refresh_for_profiles
from workflows.schedules import (
    ensure_schedules,
    segment_full_refresh_schedule_id,
    segment_refresh_schedule_id,
)

NOW = datetime.now(UTC)


# Conditions in the condition language (one place, so the tests read as the product does).
def did(metric: str, *, days: int | None = None, at_least: int = 1) -> dict:
    timeframe = (
        {"kind": "in_last", "amount": days, "unit": "days"} if days else {"kind": "all_time"}
    )
    return {
        "type": "behaviour",
        "metric": metric,
        "count": {"op": "at_least", "value": at_least},
        "timeframe": timeframe,
    }


def can_receive(channel: str) -> dict:
    return {"type": "consent", "channel": channel, "op": "can_receive"}


def in_segment(segment_id: uuid.UUID) -> dict:
    return {"type": "segment_membership", "op": "in", "segment_id": str(segment_id)}


async def make_profiles(engine, ws, n: int) -> list[uuid.UUID]:
    """Profiles with an email and a phone (an SMS consent needs a number to be receivable)."""
    ids = [uuid.uuid4() for _ in range(n)]
    phones = [f"+4860{p.int % 10**7:07d}" for p in ids]
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "INSERT INTO profiles (id, workspace_id, email, phone, properties) "
                "SELECT id, :ws, id::text || '@example.com', phone, '{}' "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:phones AS text[])) AS x(id, phone)"
            ),
            {"ws": ws.id, "ids": ids, "phones": phones},
        )
    return ids


async def add_events(engine, ws, *events: tuple[uuid.UUID, str, datetime]) -> None:
    async with session_scope(engine) as session:
        await store_events(
            session,
            ws.id,
            [NewEvent(p, m, f"msg-{uuid.uuid4()}", at) for p, m, at in events],
        )


async def subscribe(engine, ws, profile_id: uuid.UUID, channel: str = "sms") -> None:
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "INSERT INTO consents (profile_id, channel, workspace_id, state, source) "
                "VALUES (:p, :c, :ws, 'subscribed', 'api')"
            ),
            {"p": profile_id, "c": channel, "ws": ws.id},
        )


async def make_segment(engine, ws, definition: dict, name: str | None = None) -> uuid.UUID:
    segment_id = uuid.uuid4()
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "INSERT INTO segments (id, workspace_id, name, definition) "
                "VALUES (:id, :ws, :name, CAST(:d AS jsonb))"
            ),
            {
                "id": segment_id,
                "ws": ws.id,
                "name": name or f"segment {segment_id}",
                "d": json.dumps(definition),
            },
        )
    return segment_id


async def members(engine, segment_id) -> set[uuid.UUID]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT profile_id FROM segment_members WHERE segment_id = :s"), {"s": segment_id}
        )
        return set(rows.scalars())


async def log(engine, segment_id) -> list[tuple[str, uuid.UUID]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, profile_id FROM segment_membership_changes "
                "WHERE segment_id = :s ORDER BY id"
            ),
            {"s": segment_id},
        )
        return [tuple(r) for r in rows]


async def member_count(engine, segment_id) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT member_count FROM segments WHERE id = :s"), {"s": segment_id}
            )
        ).scalar_one()


async def refresh(engine, ws, segment_id, **kw):
    async with session_scope(engine) as session:
        return await refresh_segment(session, ws.id, segment_id, now=kw.pop("now", NOW), **kw)


async def test_refresh_records_entries_and_exits(engine, workspaces):
    ws = await workspaces.create()
    a, b, c = await make_profiles(engine, ws, 3)
    await add_events(
        engine,
        ws,
        (a, "Viewed Product", NOW - timedelta(days=1)),
        (b, "Viewed Product", NOW - timedelta(days=2)),
        (c, "Viewed Product", NOW - timedelta(days=40)),
    )
    seg = await make_segment(engine, ws, did("Viewed Product", days=30))

    first = await refresh(engine, ws, seg)
    assert set(first.entered) == {a, b} and first.exited == []
    assert await members(engine, seg) == {a, b}
    assert await member_count(engine, seg) == 2

    # b's view ages out of the window, c views again: c enters, b exits.
    async with session_scope(engine) as session:
        await session.execute(
            text("UPDATE events SET occurred_at = :t WHERE profile_id = :p"),
            {"t": NOW - timedelta(days=31), "p": b},
        )
    await add_events(engine, ws, (c, "Viewed Product", NOW - timedelta(hours=1)))
    second = await refresh(engine, ws, seg)
    assert second.entered == [c] and second.exited == [b]
    assert await members(engine, seg) == {a, c}
    assert await member_count(engine, seg) == 2
    assert sorted(await log(engine, seg)) == sorted(
        [("entered", a), ("entered", b), ("entered", c), ("exited", b)]
    )

    # Nothing changed: a refresh enters and exits no one and logs nothing.
    third = await refresh(engine, ws, seg)
    assert third.entered == [] and third.exited == []
    assert len(await log(engine, seg)) == 4


async def test_incremental_refresh_touches_only_the_given_profiles(engine, workspaces):
    ws = await workspaces.create()
    a, b = await make_profiles(engine, ws, 2)
    seg = await make_segment(engine, ws, did("Placed Order"))
    await refresh(engine, ws, seg)
    await add_events(engine, ws, (a, "Placed Order", NOW), (b, "Placed Order", NOW))

    result = await refresh(engine, ws, seg, profile_ids=[a])
    assert result.entered == [a]
    assert await members(engine, seg) == {a}  # b is only picked up by its own update
    assert await member_count(engine, seg) == 1


async def test_segments_reading_segments_refresh_after_them(engine, workspaces):
    ws = await workspaces.create()
    a, b = await make_profiles(engine, ws, 2)
    await add_events(engine, ws, (a, "Placed Order", NOW), (b, "Placed Order", NOW))
    await subscribe(engine, ws, a)
    buyers = await make_segment(engine, ws, did("Placed Order"), "buyers")
    sms_buyers = await make_segment(
        engine, ws, {"all": [in_segment(buyers), can_receive("sms")]}, "sms buyers"
    )
    async with session_scope(engine) as session:
        definitions = await load_definitions(session, ws.id)
        # Asked in the "wrong" order, done in dependency order: one pass is enough.
        done = await refresh_segments(session, ws.id, definitions, [sms_buyers, buyers], now=NOW)
    assert list(done) == [buyers, sms_buyers]
    assert await members(engine, buyers) == {a, b}
    assert await members(engine, sms_buyers) == {a}

    await subscribe(engine, ws, b)
    async with session_scope(engine) as session:
        changed = await refresh_for_profiles(session, ws.id, [b], changed={CONSENTS})
    assert changed[sms_buyers].entered == [b]
    assert await members(engine, sms_buyers) == {a, b}


async def test_event_updates_segments_through_the_outbox(engine, workspaces, database_url):
    ws, other = await workspaces.create(), await workspaces.create()
    (a,) = await make_profiles(engine, ws, 1)
    (x,) = await make_profiles(engine, other, 1)
    checkout = await make_segment(engine, ws, did("Started Checkout", days=7))
    viewers = await make_segment(engine, ws, did("Viewed Product"))
    other_seg = await make_segment(engine, other, did("Started Checkout"))
    for s, w in ((checkout, ws), (viewers, ws), (other_seg, other)):
        await refresh(engine, w, s)
    router = SegmentEventRouter()
    dispatcher = OutboxDispatcher(engine, database_url, [router])

    await add_events(engine, ws, (a, "Started Checkout", NOW))
    await add_events(engine, other, (x, "Started Checkout", NOW))
    assert await dispatcher.drain() == 2
    assert await members(engine, checkout) == {a}
    assert await members(engine, other_seg) == {x}
    assert await members(engine, viewers) == set()
    assert await log(engine, checkout) == [("entered", a)]

    # A re-delivered batch (idempotent routers) changes nothing.
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "INSERT INTO event_outbox (event_id, workspace_id) "
                "SELECT id, workspace_id FROM events"
            )
        )
    assert await dispatcher.drain() == 2
    assert await log(engine, checkout) == [("entered", a)]

    # A new definition is picked up by the cached router (updated_at moved).
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "UPDATE segments SET definition = CAST(:d AS jsonb), updated_at = now() "
                "WHERE id = :s"
            ),
            {"d": json.dumps(did("Viewed Product", at_least=2)), "s": viewers},
        )
    await add_events(engine, ws, (a, "Viewed Product", NOW), (a, "Viewed Product", NOW))
    assert await dispatcher.drain() == 2
    assert await members(engine, viewers) == {a}


async def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_scheduled_refresh_picks_up_time_only_changes(
    engine, workspaces, temporal_env, settings, task_queue
):
    ws = await workspaces.create()
    a, b = await make_profiles(engine, ws, 2)
    await add_events(engine, ws, (a, "Viewed Product", NOW - timedelta(days=1)))
    recent = await make_segment(engine, ws, did("Viewed Product", days=30))
    ever = await make_segment(engine, ws, did("Viewed Product"))  # not time-dependent
    await refresh(engine, ws, recent)
    await refresh(engine, ws, ever)
    assert await members(engine, recent) == {a}
    # Thirty days pass: the same as the view having happened thirty days earlier.
    async with session_scope(engine) as session:
        await session.execute(
            text("UPDATE events SET occurred_at = occurred_at - interval '30 days'")
        )

    client = temporal_env.client
    schedule = client.get_schedule_handle(segment_refresh_schedule_id(task_queue))
    await ensure_schedules(client, settings, segment_refresh_every=timedelta(hours=1))
    try:
        async with worker.build_worker(client, settings, engine, task_queue=task_queue):
            await schedule.trigger()

            async def exited() -> bool:
                return await members(engine, recent) == set()

            await _wait_for(exited)
        assert await log(engine, recent) == [("entered", a), ("exited", a)]
        assert await members(engine, ever) == {a}  # left alone: no time in its condition
    finally:
        await schedule.delete()
        await client.get_schedule_handle(segment_full_refresh_schedule_id(task_queue)).delete()


async def test_schedule_is_registered_idempotently(temporal_env, settings, task_queue):
    client = temporal_env.client
    schedule_id = segment_refresh_schedule_id(task_queue)
    handle = client.get_schedule_handle(schedule_id)
    try:
        await ensure_schedules(client, settings)
        spec = (await handle.describe()).schedule.spec
        assert spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=15))]
        await ensure_schedules(client, settings, segment_refresh_every=timedelta(minutes=5))
        spec = (await handle.describe()).schedule.spec
        assert spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=5))]

        async def listed() -> list:
            return [s async for s in await client.list_schedules() if s.id == schedule_id]

        async def visible() -> bool:
            return bool(await listed())

        await _wait_for(visible)
        assert len(await listed()) == 1
    finally:
        await client.get_schedule_handle(schedule_id).delete()
        await client.get_schedule_handle(segment_full_refresh_schedule_id(task_queue)).delete()
