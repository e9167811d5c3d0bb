"""The review queue when things go wrong: a status change that lands while a journey is between
its step check and its send, and decisions whose signal never reaches the journey.

- The flow is deleted while the journey is in its send step (the journey's registration in the
  queue waits for the status change that holds the flow row; a live flow's journey learns of it
  when it records the step): nothing is sent, the journey is removed `flow_deleted`.
- A release saved without its signal (the API died after its commit, Temporal unreachable), and
  a flow set back to live without the signals: the waiting journey reads its row and the flow
  again (about hourly, at once when a status signal says the flow is no longer manual) and sends.

Real worker, real PostgreSQL; the dev server for the races, the time-skipping server (`shop`)
where the hourly check is skipped to.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from flows import hooks, reviews, service
from models import Flow, FlowStatus
from tests.flows.conftest import Shop
from tests.flows.test_journey import customer, definition, outbox, start, steps_of, store_flow
from tests.flows.test_journey import shop as shop_with_template
from tests.flows.test_live_edits import email, flow, profile, replays, template
from tests.helpers import until
from worker import build_worker
from workflows.journey import JourneyWorkflow

HISTORIES = Path(__file__).parent / "histories"


def lock_wait(engine: Any, statement: str):
    """A check: a statement starting with `statement`, in this test's database, waits for a lock."""

    async def waiting() -> bool:
        async with engine.connect() as conn:
            found = await conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                    " AND a.query LIKE :statement"
                ),
                {"statement": f"{statement}%"},
            )
            return found.scalar_one() > 0

    waiting.__qualname__ = f"{statement!r} waiting for a lock"
    return waiting


async def delete_flow(session: AsyncSession, flow_id: uuid.UUID) -> None:
    """The status change as `POST /v1/flows/{id}/status` commits it; its signals are not sent
    (on their way, or lost with the API)."""
    flow_row = await session.get(Flow, flow_id)
    assert flow_row is not None
    await service.change_status(session, flow_row, FlowStatus.deleted, author="test")
    await session.commit()


async def left_unsent(engine: Any, handle: WorkflowHandle, profile_id: uuid.UUID, name: str):
    """The journey ends removed `flow_deleted` without a message; its history is kept."""
    result = await handle.result()
    assert (result.status, result.reason) == ("removed", "flow_deleted")
    assert await outbox(engine, profile_id) == []
    journey_id = uuid.UUID(handle.id.removeprefix("journey-test-"))
    assert await steps_of(engine, journey_id) == [("mail", "entered", None)]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, end_reason FROM journeys WHERE id = :j"), {"j": journey_id}
            )
        ).one()
        queued = await conn.execute(
            text("SELECT count(*) FROM journey_reviews WHERE journey_id = :j"), {"j": journey_id}
        )
        assert queued.scalar_one() == 0  # nothing queued for a deleted flow either
    assert tuple(row) == ("removed", "flow_deleted")
    history = await handle.fetch_history()
    if os.environ.get("WM_RECORD_HISTORIES"):  # docs/VERSIONING.md
        HISTORIES.joinpath(f"{name}.json").write_text(history.to_json())
    replayer = Replayer(workflows=[JourneyWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


# --- a status change between the step's check and its send (dev server) -----------------------


async def test_a_manual_flow_deleted_during_the_send_step_sends_nothing(
    engine, workspaces, temporal_env, settings, task_queue
):
    """The deletion holds the flow row while the journey, past its step check, registers its
    send in the queue: the registration waits, then finds the flow deleted (no row) — and the
    journey leaves instead of sending the unreviewed message."""
    ws, template_id = await shop_with_template(engine, workspaces)
    steps = [{"type": "send", "id": "mail", "channel": "email", "template_id": str(template_id)}]
    flow_id = await store_flow(engine, ws.id, definition(steps), status="manual")
    pid = await customer(engine, ws)
    async with build_worker(temporal_env.client, settings, engine):
        async with AsyncSession(engine, expire_on_commit=False) as session:
            # The status change in flight holds the flow row (not its key: a journey still
            # registers in `journeys`, whose foreign key only shares the key).
            await session.execute(
                text("SELECT 1 FROM flows WHERE id = :f FOR NO KEY UPDATE"), {"f": flow_id}
            )
            handle = await start(temporal_env.client, task_queue, ws, flow_id, pid)
            await until(lock_wait(engine, "INSERT INTO journey_reviews"))
            await delete_flow(session, flow_id)
        await left_unsent(engine, handle, pid, "journey_review_flow_deleted")


async def test_a_live_flow_deleted_during_the_step_before_its_send_sends_nothing(
    engine, workspaces, temporal_env, settings, task_queue
):
    """The flow is deleted while the journey records entering its send step (after the step's
    check): the record's read of the flow says deleted, and the journey leaves before sending."""
    ws, template_id = await shop_with_template(engine, workspaces)
    steps = [{"type": "send", "id": "mail", "channel": "email", "template_id": str(template_id)}]
    flow_id = await store_flow(engine, ws.id, definition(steps))
    pid = await customer(engine, ws)
    async with build_worker(temporal_env.client, settings, engine):
        async with engine.connect() as holding:  # step records wait behind this lock
            await holding.execute(text("LOCK TABLE journey_steps IN SHARE MODE"))
            handle = await start(temporal_env.client, task_queue, ws, flow_id, pid)
            await until(lock_wait(engine, "INSERT INTO journey_steps"))
            async with AsyncSession(engine, expire_on_commit=False) as session:
                await delete_flow(session, flow_id)
            await holding.rollback()
        await left_unsent(engine, handle, pid, "journey_leave_before_send")


# --- decisions whose signal is lost (time-skipping server) ------------------------------------


async def manual_flow(shop: Shop) -> uuid.UUID:
    """Started Checkout → `mail` → `later` (emails "Mail 1", "Mail 2"), in status manual."""
    first = await template(shop, "Mail 1", "Mail 1")
    second = await template(shop, "Mail 2", "Mail 2")
    definition = flow(f"Manual {uuid.uuid4().hex[:6]}", email("mail", first, "later"),
                      email("later", second))  # fmt: skip
    created = await shop.api("POST", "/v1/flows", 201, json={"definition": definition})
    await shop.api("POST", f"/v1/flows/{created['id']}/publish", json={})
    changed = await shop.api("POST", f"/v1/flows/{created['id']}/status",
                             json={"status": "manual"})  # fmt: skip
    assert changed["status"] == "manual"
    return uuid.UUID(created["id"])


async def queued(shop: Shop, flow_id: uuid.UUID, users: list[str], step: str = "mail") -> list:
    """Wait until each customer's send at `step` waits in the queue (the journey registered
    it; waiting for a decision is what it does next)."""

    async def all_waiting() -> list | None:
        page = await shop.api("GET", f"/v1/flows/{flow_id}/reviews", params={"step_id": step})
        rows = [r for r in page["data"] if r["status"] == "waiting"]
        return rows if len(rows) == len(users) else None

    return await until(all_waiting)


async def sent(shop: Shop, users: list[str], count: int) -> dict[str, list[str]]:
    """Each customer's email subjects, once each has `count` of them."""

    async def arrived() -> dict[str, list[str]] | None:
        have = {u: [m["subject"] for m in await shop.outbox(await profile(shop, u))]
                for u in users}  # fmt: skip
        return have if all(len(s) >= count for s in have.values()) else None

    return await until(arrived)


async def test_a_release_whose_signal_is_lost_goes_out_at_the_next_check(shop: Shop):
    flow_id = await manual_flow(shop)
    await shop.customer("kim")
    async with shop.worker():
        await shop.track("kim", "Started Checkout", {})
        [review] = await queued(shop, flow_id, ["kim"])
        # Released and committed, but the signal never reaches the journey.
        async with shop.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE journey_reviews SET status = 'released', decided_at = now(), "
                    "decided_by = 'lost signal' WHERE id = :id"
                ),
                {"id": review["id"]},
            )
        assert await sent(shop, ["kim"], 0) == {"kim": []}
        await shop.skip(timedelta(hours=1, minutes=16))  # the check: every hour + ≤15 min
        assert await sent(shop, ["kim"], 1) == {"kim": ["Mail 1"]}
        await queued(shop, flow_id, ["kim"], step="later")  # still manual: the next one waits
    [journey] = await shop.journeys(flow_id, await profile(shop, "kim"))
    assert (journey["status"], journey["current_step"]) == ("active", "later")
    await replays(shop, journey, "journey_review_check")


@pytest.mark.parametrize("delivered", ["none", "status"])
async def test_a_flow_set_live_without_the_release_signals_lets_its_journeys_go(
    shop: Shop, delivered: str
):
    """manual → live releases the waiting sends in its own transaction; the review signals are
    lost, so the queue looks empty and nobody would release them again. With no signal at all
    the hourly check finds them released; with the status signal alone the journeys check at
    once (no time passes)."""
    flow_id = await manual_flow(shop)
    users = ["lea", "max"]
    for user in users:
        await shop.customer(user)
    async with shop.worker():
        for user in users:
            await shop.track(user, "Started Checkout", {})
        await queued(shop, flow_id, users)
        async with AsyncSession(shop.engine, expire_on_commit=False) as session:
            flow_row = await session.get(Flow, flow_id)
            assert flow_row is not None
            await service.change_status(session, flow_row, FlowStatus.live, author="test")
            released = await reviews.release_on_live(session, shop.ws.id, flow_id, "test")
            await session.commit()
            assert len(released) == 2
            if delivered == "status":
                await hooks.on_status_changed(
                    shop.client, session, shop.ws.id, flow_id, FlowStatus.live
                )
        assert (await shop.api("GET", f"/v1/flows/{flow_id}/reviews"))["data"] == []
        if delivered == "none":
            assert await sent(shop, users, 0) == {u: [] for u in users}
            await shop.skip(timedelta(hours=1, minutes=16))
        # Both mails: the second send does not wait either (the flow is live now).
        assert await sent(shop, users, 2) == {u: ["Mail 1", "Mail 2"] for u in users}

        async def completed() -> list | None:
            rows = [(await shop.journeys(flow_id, await profile(shop, u)))[-1] for u in users]
            return rows if all(r["status"] == "completed" for r in rows) else None

        journeys = await until(completed)
    name = {"none": "journey_review_check_live", "status": "journey_review_live_signal"}
    await replays(shop, journeys[0], name[delivered])
