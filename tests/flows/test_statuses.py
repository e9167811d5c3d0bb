"""Flow statuses and the journeys in the flow, end to end through the REST API on the
time-skipping server (journeys started by customers' events through the outbox and router).

- paused: journeys hold before their next step (a delay that ends while paused completes, the
  step after it waits) and no one new enters; live again, each goes on where it was.
- back to draft, deleted: journeys leave at once, counted as removed with the reason; a deleted
  flow restored comes back paused, without them.
- a journey that starts while its flow is paused or in draft (the router read the flow a
  moment before the change) holds, or leaves, like the others.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from tests.flows.conftest import Shop, until
from tests.flows.test_live_edits import (
    ON_TIME,
    checkout,
    create,
    delay,
    email,
    ended,
    flow,
    got_email,
    profile,
    replays,
    set_status,
    start_pinned,
    step_time,
    steps,
    subjects,
    template,
)
from workflows.journey import JourneyWorkflow


async def routed(shop: Shop) -> None:
    """Wait until the router has handled every stored event (the outbox is empty)."""

    async def empty() -> bool:
        return (await shop.rows("SELECT count(*) AS n FROM event_outbox"))[0]["n"] == 0

    await until(empty)


async def journeys_of(shop: Shop, flow_id: uuid.UUID, user: str) -> list[Any]:
    return await shop.journeys(flow_id, await profile(shop, user))


async def cart_flow(shop: Shop, name: str, hours: int = 1) -> uuid.UUID:
    mail = await template(shop, f"{name} mail", f"{name}: your cart")
    return await create(
        shop, flow(name, delay("wait", hours, "hours", "mail"), email("mail", mail))
    )


async def test_paused_journeys_hold_before_their_next_step_and_go_on_when_live(shop: Shop):
    flow_id = await cart_flow(shop, "Paused")
    for user in ("early", "late", "newcomer"):
        await shop.customer(user)
    async with shop.worker():
        early = await checkout(shop, flow_id, "early", "wait")
        await shop.skip(timedelta(minutes=50))
        late = await checkout(shop, flow_id, "late", "wait")
        await shop.skip(timedelta(minutes=5))
        assert (await set_status(shop, flow_id, "paused"))["status"] == "paused"

        # While paused no one new enters.
        await shop.track("newcomer", "Started Checkout", {})
        await routed(shop)
        assert await journeys_of(shop, flow_id, "newcomer") == []

        # "early"'s delay ends while paused (1 h after it entered): the email waits.
        await shop.skip(timedelta(minutes=30))
        await until(lambda: _completed(shop, early["id"], "wait"))
        assert await subjects(shop, "early") == []
        assert (await journeys_of(shop, flow_id, "early"))[0]["status"] == "active"
        state = await shop.client.get_workflow_handle(early["workflow_id"]).query(
            JourneyWorkflow.get_state
        )
        assert state.paused and state.status == "active"

        # Live again: "early" sends at once; "late" sleeps on to its own time (entered + 1 h).
        resumed_at = await shop.env.get_current_time()
        assert (await set_status(shop, flow_id, "live"))["previous"] == "paused"
        assert await got_email(shop, "early") == ["Paused: your cart"]
        assert await subjects(shop, "late") == []
        await shop.skip(timedelta(minutes=30))
        assert await got_email(shop, "late") == ["Paused: your cart"]
        assert (await ended(shop, flow_id, "early"))["status"] == "completed"
        assert (await ended(shop, flow_id, "late"))["status"] == "completed"

    sent = await step_time(shop, early["id"], "mail", "entered")
    assert resumed_at <= sent < resumed_at + ON_TIME
    entered = await step_time(shop, late["id"], "wait", "entered")
    woke = await step_time(shop, late["id"], "wait", "completed")
    assert entered + timedelta(hours=1) <= woke < entered + timedelta(hours=1) + ON_TIME
    assert [s[:2] for s in await steps(shop, early["id"])] == [
        ("wait", "entered"),
        ("wait", "completed"),
        ("mail", "entered"),
        ("mail", "completed"),
    ]


async def _completed(shop: Shop, journey_id: uuid.UUID, step: str) -> bool:
    return step in await shop.step_times(journey_id, "completed")


async def test_back_to_draft_removes_the_journeys(shop: Shop):
    flow_id = await cart_flow(shop, "Drafted")
    await shop.customer("inside")
    await shop.customer("after")
    async with shop.worker():
        journey = await checkout(shop, flow_id, "inside", "wait")
        assert (await set_status(shop, flow_id, "draft"))["status"] == "draft"
        gone = await ended(shop, flow_id, "inside")
        await shop.track("after", "Started Checkout", {})
        await routed(shop)
        await shop.skip(timedelta(hours=2))
    assert (gone["status"], gone["end_reason"]) == ("removed", "flow_draft")
    assert await steps(shop, journey["id"]) == [("wait", "entered", None, 1)]
    assert await subjects(shop, "inside") == []
    assert await journeys_of(shop, flow_id, "after") == []


async def test_deleted_removes_the_journeys_and_a_restored_flow_comes_back_paused(shop: Shop):
    flow_id = await cart_flow(shop, "Deleted")
    for user in ("inside", "while-paused", "after"):
        await shop.customer(user)
    async with shop.worker():
        await checkout(shop, flow_id, "inside", "wait")
        assert (await set_status(shop, flow_id, "deleted"))["status"] == "deleted"
        gone = await ended(shop, flow_id, "inside")
        assert (gone["status"], gone["end_reason"]) == ("removed", "flow_deleted")

        restored = await set_status(shop, flow_id, "paused")
        assert (restored["status"], restored["previous"]) == ("paused", "deleted")
        got = await shop.api("GET", f"/v1/flows/{flow_id}")
        assert (got["status"], got["live_version"]) == ("paused", 1)
        await shop.track("while-paused", "Started Checkout", {})
        await routed(shop)
        assert await journeys_of(shop, flow_id, "while-paused") == []
        await shop.skip(timedelta(hours=2))
        assert await subjects(shop, "inside") == []  # removed journeys stay removed

        assert (await set_status(shop, flow_id, "live"))["status"] == "live"
        await checkout(shop, flow_id, "after", "wait")
        await shop.skip(timedelta(hours=1, minutes=5))
        assert await got_email(shop, "after") == ["Deleted: your cart"]
    [inside] = await journeys_of(shop, flow_id, "inside")
    assert (inside["status"], inside["end_reason"]) == ("removed", "flow_deleted")
    counted = await shop.rows(
        "SELECT status, end_reason, count(*) AS n FROM journeys WHERE flow_id = :f "
        "GROUP BY 1, 2 ORDER BY 1",
        f=flow_id,
    )
    assert [(r["status"], r["end_reason"], r["n"]) for r in counted] == [
        ("completed", None, 1),
        ("removed", "flow_deleted", 1),
    ]


async def test_a_journey_started_while_its_flow_is_paused_or_in_draft(shop: Shop):
    """The router read the flow as live a moment before the change: the journey it starts
    after the change holds (paused) or leaves (draft) like the ones already inside."""
    paused = await cart_flow(shop, "Held")
    drafted = await cart_flow(shop, "Gone")
    await shop.customer("racer")
    async with shop.worker():
        await set_status(shop, paused, "paused")
        await set_status(shop, drafted, "draft")
        held = await start_pinned(shop, paused, "racer", version=1)
        left = await start_pinned(shop, drafted, "racer", version=1)
        result = await left.result()
        assert (result.status, result.reason) == ("removed", "flow_draft")

        async def holding() -> bool:
            state = await held.query(JourneyWorkflow.get_state)
            return state.paused and bool(await journeys_of(shop, paused, "racer"))

        await until(holding)
        await shop.skip(timedelta(hours=2))
        [journey] = await journeys_of(shop, paused, "racer")
        assert journey["status"] == "active" and journey["current_step"] is None
        assert await steps(shop, journey["id"]) == []

        resumed_at = await shop.env.get_current_time()
        await set_status(shop, paused, "live")
        await shop.at_step(paused, journey["profile_id"], "wait")
        await shop.skip(timedelta(hours=1, minutes=5))
        assert (await held.result()).status == "completed"
    assert await subjects(shop, "racer") == ["Held: your cart"]
    entered = await step_time(shop, journey["id"], "wait", "entered")
    assert resumed_at <= entered < resumed_at + ON_TIME
    [gone] = await journeys_of(shop, drafted, "racer")
    assert (gone["status"], gone["end_reason"]) == ("removed", "flow_draft")
    await replays(shop, journey, "journey_held_while_paused")
