"""The journey router through the real outbox dispatcher on the dev server: one journey per
event under every duplicate policy, even when a batch is delivered twice; exits reach a
sleeping journey at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from core.db import session_scope
from flows.router import JourneyRouter
from ingest.events import NewEvent, store_events
from ingest.outbox import OutboxDispatcher
from models.journeys import Journey
from tests.flows.test_journey import customer, definition, shop, store_flow
from tests.helpers import until
from worker import build_worker

SLEEP = [{"type": "delay", "id": "nap", "duration": {"amount": 3, "unit": "days"}, "next": None}]


async def _event(engine, ws, profile_id, metric="Started Checkout", **properties):
    async with session_scope(engine) as session:
        await store_events(session, ws.id, [NewEvent(
            profile_id=profile_id, metric=metric, message_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC), properties=properties)])  # fmt: skip


async def _journeys(engine, flow_id, status=None) -> list[Journey]:
    async with session_scope(engine) as session:
        query = select(Journey).where(Journey.flow_id == flow_id)
        if status:
            query = query.where(Journey.status == status)
        return list((await session.execute(query)).scalars())


async def _redeliver(engine) -> None:
    """Put every stored event back in the outbox: a crash after routing, before the delete."""
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "INSERT INTO event_outbox (event_id, workspace_id)"
                " SELECT id, workspace_id FROM events ON CONFLICT DO NOTHING"
            )
        )


@pytest.mark.parametrize("duplicate", ["new_instance", "ignore", "restart"])
async def test_an_event_starts_exactly_one_journey_even_when_delivered_twice(
    engine, workspaces, temporal_env, settings, database_url, duplicate
):
    client = temporal_env.client
    ws, _ = await shop(engine, workspaces)
    flow_id = await store_flow(engine, ws.id, definition(SLEEP, duplicate=duplicate))
    pid = await customer(engine, ws)
    await _event(engine, ws, pid)
    dispatcher = OutboxDispatcher(engine, database_url, [JourneyRouter(client, settings, engine)])
    async with build_worker(client, settings, engine):
        assert await dispatcher.drain() == 1

        async def registered() -> bool:
            return len(await _journeys(engine, flow_id)) == 1

        await until(registered)
        await _redeliver(engine)
        assert await dispatcher.drain() == 1
        journeys = await _journeys(engine, flow_id)
        assert len(journeys) == 1 and journeys[0].status == "active"
        running = [w async for w in client.list_workflows(
            f'WaymarkFlowId = "{flow_id}" AND ExecutionStatus = "Running"')]  # fmt: skip
        assert len(running) <= 1


async def test_an_order_exits_a_sleeping_journey_at_once(
    engine, workspaces, temporal_env, settings, database_url
):
    client = temporal_env.client
    ws, _ = await shop(engine, workspaces)
    flow_id = await store_flow(engine, ws.id, definition(SLEEP, exits=[{"type": "order_placed"}]))
    pid = await customer(engine, ws)
    dispatcher = OutboxDispatcher(engine, database_url, [JourneyRouter(client, settings, engine)])
    async with build_worker(client, settings, engine):
        await _event(engine, ws, pid)
        await dispatcher.drain()

        async def sleeping() -> bool:
            rows = await _journeys(engine, flow_id, "active")
            return bool(rows) and rows[0].current_step == "nap"

        await until(sleeping)
        await _event(engine, ws, pid, metric="Placed Order")
        await dispatcher.drain()

        async def exited() -> bool:
            return len(await _journeys(engine, flow_id, "exited")) == 1

        await until(exited, deadline=10)
    [journey] = await _journeys(engine, flow_id)
    assert journey.end_reason == "order_placed"
