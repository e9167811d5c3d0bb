"""List-joined and segment-entered flows through the API, the real outbox dispatcher (every
router, as the worker runs it) and the Temporal dev server: each join or entry after the flow
went live starts one journey, whatever writes it (API, CSV import, an event, a journey's list
step) and however often it is delivered; the first computation of a segment's definition starts
none; a paused flow takes no one in; duplicate policies hold on a rejoin."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from core.db import session_scope
from ingest.outbox import OutboxDispatcher
from ingest.routing import build_routers
from tests.flows.test_journey import outbox
from tests.flows.test_router import _journeys as journeys
from tests.helpers import until
from worker import build_dispatcher, build_worker
from workflows.journey import StartJourneyInput

SLEEP = [{"type": "delay", "id": "nap", "duration": {"amount": 3, "unit": "days"}, "next": None}]
WELCOME = (
    "<html><body><p>Hi {{ profile.first_name }}, welcome to "
    "{% if event.list_name is defined %}{{ event.list_name }}{% endif %}!</p></body></html>"
)


# --- the back office, as a user drives it -------------------------------------------------


async def api(client, ws, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
    response = await client.request(method, path, headers=ws.admin, **kwargs)
    assert response.status_code == expect, f"{method} {path}: {response.text}"
    return response.json() if response.content else None


async def live_flow(client, ws, trigger: dict, steps: list[dict] = SLEEP, **settings) -> str:
    definition = {
        "name": f"flow-{uuid.uuid4().hex[:6]}",
        "trigger": trigger,
        "settings": settings,
        "entry": steps[0]["id"],
        "steps": steps,
    }
    flow = await api(client, ws, "POST", "/v1/flows", 201, json={"definition": definition})
    published = await api(client, ws, "POST", f"/v1/flows/{flow['id']}/publish", json={})
    assert published["status"] == "live", published
    return flow["id"]


async def new_list(client, ws, name: str = "VIP") -> str:
    return (await api(client, ws, "POST", "/v1/lists", 201, json={"name": name}))["id"]


async def join(client, ws, list_id: str, *profile_ids: str) -> dict:
    body = {"profile_ids": list(profile_ids)}
    return await api(client, ws, "POST", f"/v1/lists/{list_id}/members", json=body)


async def leave(client, ws, list_id: str, *profile_ids: str) -> dict:
    body = {"profile_ids": list(profile_ids)}
    return await api(client, ws, "DELETE", f"/v1/lists/{list_id}/members", json=body)


async def person(client, ws, **fields: Any) -> str:
    body = {"email": f"p-{uuid.uuid4().hex[:8]}@example.com", "first_name": "Ada", **fields}
    return (await api(client, ws, "POST", "/v1/profiles", 201, json=body))["id"]


async def segment(client, ws, name: str, definition: dict) -> str:
    body = {"name": name, "definition": definition}
    return (await api(client, ws, "POST", "/v1/segments", 201, json=body))["id"]


def city(*names: str) -> dict:
    return {"type": "property", "property": "city", "op": "in", "value": list(names)}


async def queued(engine) -> int:
    async with session_scope(engine) as session:
        return (await session.execute(text("SELECT count(*) FROM membership_outbox"))).scalar()


async def redeliver(engine) -> None:
    """Queue again every join made while its flow was live: a crash after routing, before the
    rows were deleted."""
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "INSERT INTO membership_outbox (workspace_id, flow_id, profile_id, trigger_type,"
                " list_id, change_id, source, occurred_at)"
                " SELECT c.workspace_id, f.id, c.profile_id, 'list_joined', c.list_id, c.id,"
                " c.source, c.occurred_at FROM list_membership_changes c"
                " JOIN flows f ON f.trigger_list_id = c.list_id"
                " WHERE c.action = 'joined' AND c.occurred_at > f.updated_at"
            )
        )


async def started_with(client, workflow_id: str) -> StartJourneyInput:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
    [start] = client.data_converter.payload_converter.from_payloads(payloads, [StartJourneyInput])
    return start


def count_of(engine, flow_id: str, n: int, status: str | None = None):
    async def check() -> bool:
        return len(await journeys(engine, uuid.UUID(flow_id), status)) == n

    return check


# --- tests --------------------------------------------------------------------------------


async def test_a_list_join_starts_exactly_one_journey_even_when_redelivered(
    client, workspaces, temporal_env, settings, engine
):
    ws = await workspaces.create()
    await api(client, ws, "PATCH", "/v1/workspace/channel-settings", json={
        "from_email": "shop@example.com", "smart_sending_hours": {"email": 0},
        "quiet_hours": {"enabled": False}})  # fmt: skip
    template = await api(client, ws, "POST", "/v1/templates", 201, json={
        "name": "Welcome", "channel": "email", "subject": "Welcome", "html": WELCOME})  # fmt: skip
    vip = await new_list(client, ws, "VIP")
    early = await person(client, ws)
    await join(client, ws, vip, early)  # before the flow is live: never triggers it
    send = {"type": "send", "id": "hello", "channel": "email", "template_id": template["id"],
            "next": "nap"}  # fmt: skip
    flow_id = await live_flow(client, ws, {"type": "list_joined", "list_id": vip}, [send, *SLEEP])
    ada = await person(client, ws, consents={"email": "subscribed"})
    assert (await join(client, ws, vip, ada))["joined"] == 1
    assert await queued(engine) == 1  # durable before anything ran: committed with the join

    dispatcher = build_dispatcher(temporal_env.client, settings, engine)
    async with build_worker(temporal_env.client, settings, engine):
        await dispatcher.drain()  # the join (and the email's events, when sent by then)
        assert await queued(engine) == 0
        await until(count_of(engine, flow_id, 1))

        async def welcomed() -> bool:
            return len(await outbox(engine, uuid.UUID(ada))) == 1

        await until(welcomed)
        await redeliver(engine)
        assert await queued(engine) == 1  # ada's join again (early joined before the flow)
        await dispatcher.drain()
        assert await queued(engine) == 0
        assert (await join(client, ws, vip, ada))["already_members"] == 1
        assert await queued(engine) == 0  # not a join
        [journey] = await journeys(engine, uuid.UUID(flow_id))
        assert journey.profile_id == uuid.UUID(ada) and journey.status == "active"
        running = [w async for w in temporal_env.client.list_workflows(
            f'WaymarkFlowId = "{flow_id}" AND ExecutionStatus = "Running"')]  # fmt: skip
        assert len(running) == 1
    [message] = await outbox(engine, uuid.UUID(ada))
    assert "welcome to VIP!" in message.html  # the synthetic trigger event reached the template


async def test_a_csv_import_into_a_list_starts_a_journey_per_new_member(
    client, workspaces, temporal_env, settings, engine
):
    ws = await workspaces.create()
    imported = await new_list(client, ws, "Imported")
    flow_id = await live_flow(client, ws, {"type": "list_joined", "list_id": imported})
    csv = "email,first_name\na@example.com,Ann\nb@example.com,Bo\nc@example.com,Cy\n"
    dispatcher = build_dispatcher(temporal_env.client, settings, engine)
    async with build_worker(temporal_env.client, settings, engine):
        files = {"file": ("people.csv", csv.encode(), "text/csv")}
        job = await api(client, ws, "POST", "/v1/imports", 202, files=files,
                        data={"list_id": imported})  # fmt: skip

        async def imported_done() -> bool:
            state = await api(client, ws, "GET", f"/v1/imports/{job['id']}")
            assert state["status"] != "failed", state
            return state["status"] == "succeeded"

        await until(imported_done, deadline=60)
        assert await dispatcher.drain() == 3
        await until(count_of(engine, flow_id, 3, "active"))
    started = {j.profile_id for j in await journeys(engine, uuid.UUID(flow_id))}
    members = await api(client, ws, "GET", f"/v1/lists/{imported}/members")
    assert started == {uuid.UUID(m["profile_id"]) for m in members["data"]}


async def test_an_event_that_puts_a_profile_in_a_segment_starts_the_flow(
    client, workspaces, temporal_env, settings, engine
):
    ws = await workspaces.create()
    buyers = await segment(client, ws, "Buyers", {
        "type": "behaviour", "metric": "Placed Order", "count": {"op": "at_least", "value": 1},
        "timeframe": {"kind": "all_time"}})  # fmt: skip
    flow_id = await live_flow(client, ws, {"type": "segment_entered", "segment_id": buyers})
    order = {"type": "track", "userId": "u-1", "event": "Placed Order", "properties": {}}
    dispatcher = build_dispatcher(temporal_env.client, settings, engine)
    async with build_worker(temporal_env.client, settings, engine):
        r = await client.post("/v1/batch", headers=ws.tracking, json={"batch": [order]})
        assert r.status_code == 200, r.text
        assert await dispatcher.drain() == 2  # the event, then the entry it made

        async def napping() -> bool:
            rows = await journeys(engine, uuid.UUID(flow_id), "active")
            return bool(rows) and rows[0].current_step == "nap"

        await until(napping)
        [journey] = await journeys(engine, uuid.UUID(flow_id))
        # What templates read as `event` (and the Temporal UI shows as the journey's input).
        event = (await started_with(temporal_env.client, journey.workflow_id)).trigger_event
        assert event is not None and event["metric"] == "Entered Segment"
        assert (event["segment_id"], event["segment_name"]) == (buyers, "Buyers")
        # A second order: already in the segment, no new entry, no second journey.
        r = await client.post("/v1/batch", headers=ws.tracking, json={"batch": [order]})
        assert await dispatcher.drain() == 1
        assert len(await journeys(engine, uuid.UUID(flow_id))) == 1


async def test_computing_a_new_or_edited_segment_starts_nothing(
    client, workspaces, temporal_env, settings, engine
):
    ws = await workspaces.create()
    paris = await person(client, ws, city="Paris")
    lyon = await person(client, ws, city="Lyon")
    french = await segment(client, ws, "Parisians", city("Paris"))
    readers = await segment(client, ws, "Readers", {
        "type": "segment_membership", "op": "in", "segment_id": french})  # fmt: skip
    on_french = await live_flow(client, ws, {"type": "segment_entered", "segment_id": french})
    on_readers = await live_flow(client, ws, {"type": "segment_entered", "segment_id": readers})
    # Redefining the segment brings Lyon in (and into the segment that reads it): a recompute
    # of the definition, not people newly qualifying — logged, but no flow is flooded.
    await api(client, ws, "PATCH", f"/v1/segments/{french}",
              json={"definition": city("Paris", "Lyon")})  # fmt: skip
    # A brand-new segment: its existing members are logged as entered, and start nothing.
    await segment(client, ws, "Lyonnais", city("Lyon"))
    async with session_scope(engine) as session:
        entries = (
            await session.execute(
                text(
                    "SELECT count(*) FROM segment_membership_changes"
                    " WHERE workspace_id = :ws AND action = 'entered'"
                ),
                {"ws": ws.id},
            )
        ).scalar()
    assert entries == 5  # Paris x2 at creation; Lyon into both on the edit; Lyon into Lyonnais
    assert await queued(engine) == 0
    dispatcher = build_dispatcher(temporal_env.client, settings, engine)
    async with build_worker(temporal_env.client, settings, engine):
        assert await dispatcher.drain() == 0
        # Someone who newly qualifies after the flows went live enters both.
        newcomer = await person(client, ws, city="Lyon")
        assert await dispatcher.drain() == 2
        await until(count_of(engine, on_french, 1))
        await until(count_of(engine, on_readers, 1))
        for flow_id in (on_french, on_readers):
            [journey] = await journeys(engine, uuid.UUID(flow_id))
            assert str(journey.profile_id) == newcomer not in (paris, lyon)
        # A full recompute of an unchanged definition (as the periodic refresh runs) is not a
        # baseline: a profile it finds newly matching (here one written behind the hooks'
        # back) enters the flow.
        async with session_scope(engine) as session:
            await session.execute(
                text("INSERT INTO profiles (id, workspace_id, city) VALUES (:id, :ws, 'Lyon')"),
                {"id": (late := uuid.uuid4()), "ws": ws.id},
            )
        refreshed = await api(client, ws, "POST", f"/v1/segments/{french}/refresh")
        assert refreshed["entered"] == 1
        assert await dispatcher.drain() == 2  # into Parisians and, read by it, Readers
        await until(count_of(engine, on_french, 2))
    assert late in {j.profile_id for j in await journeys(engine, uuid.UUID(on_french))}


@pytest.mark.parametrize(
    ("duplicate", "statuses"),
    [
        ("ignore", ["active"]),  # the rejoin is ignored while the first journey runs
        ("new_instance", ["active", "active"]),
        ("restart", ["active", "removed"]),
    ],
)
async def test_leaving_and_rejoining_follows_the_duplicate_policy(
    client, workspaces, temporal_env, settings, engine, duplicate, statuses
):
    ws = await workspaces.create()
    members = await new_list(client, ws)
    trigger = {"type": "list_joined", "list_id": members}
    flow_id = await live_flow(client, ws, trigger, duplicate=duplicate)
    ada = await person(client, ws)
    dispatcher = build_dispatcher(temporal_env.client, settings, engine)
    async with build_worker(temporal_env.client, settings, engine):
        await join(client, ws, members, ada)
        assert await dispatcher.drain() == 1
        await until(count_of(engine, flow_id, 1, "active"))
        assert (await leave(client, ws, members, ada))["left"] == 1
        await join(client, ws, members, ada)
        assert await dispatcher.drain() == 1

        async def settled() -> bool:
            rows = await journeys(engine, uuid.UUID(flow_id))
            return sorted(j.status for j in rows) == statuses

        await until(settled)
        await redeliver(engine)
        assert await queued(engine) == 2
        await dispatcher.drain()
        running = [w async for w in temporal_env.client.list_workflows(
            f'WaymarkFlowId = "{flow_id}" AND ExecutionStatus = "Running"')]  # fmt: skip
        assert len(running) == statuses.count("active")
    rows = await journeys(engine, uuid.UUID(flow_id))
    assert sorted(j.status for j in rows) == statuses
    if duplicate == "restart":
        assert [j.end_reason for j in rows if j.status == "removed"] == ["restarted"]


async def test_a_journey_adding_to_a_list_starts_that_lists_flow(
    client, workspaces, temporal_env, settings, engine
):
    """A list step in one flow is a join like any other: the running worker's dispatcher (woken
    by NOTIFY) starts the list's flow, with the join's source in the trigger event."""
    ws = await workspaces.create()
    engaged = await new_list(client, ws, "Engaged")
    tag = {"type": "list", "id": "tag", "list_id": engaged, "action": "add", "next": None}
    trigger = {"type": "event", "metric": "Started Checkout", "where": []}
    await live_flow(client, ws, trigger, [tag])
    follow_up = await live_flow(client, ws, {"type": "list_joined", "list_id": engaged})
    checkout = {"type": "track", "userId": "u-7", "event": "Started Checkout", "properties": {}}
    stop = asyncio.Event()
    dispatcher = OutboxDispatcher(
        engine, settings.database_url, build_routers(temporal_env.client, settings, engine),
        poll_interval=30,
    )  # fmt: skip
    async with build_worker(temporal_env.client, settings, engine):
        running = asyncio.create_task(dispatcher.run(stop))
        try:
            r = await client.post("/v1/batch", headers=ws.tracking, json={"batch": [checkout]})
            assert r.status_code == 200, r.text
            await until(count_of(engine, follow_up, 1, "active"))
        finally:
            stop.set()
            await running
        [journey] = await journeys(engine, uuid.UUID(follow_up))
        event = (await started_with(temporal_env.client, journey.workflow_id)).trigger_event
    assert event is not None
    assert (event["metric"], event["list_name"], event["source"]) == (
        "Joined List",
        "Engaged",
        "flow",
    )


async def test_joins_while_a_flow_is_paused_never_start_it(
    client, workspaces, temporal_env, settings, engine
):
    ws = await workspaces.create()
    members = await new_list(client, ws)
    flow_id = await live_flow(client, ws, {"type": "list_joined", "list_id": members})
    first, second, third = [await person(client, ws) for _ in range(3)]
    await join(client, ws, members, first)  # queued while live...
    paused = {"status": "paused"}
    await api(client, ws, "POST", f"/v1/flows/{flow_id}/status", json=paused)
    await join(client, ws, members, second)  # ...not queued while paused
    assert await queued(engine) == 1
    dispatcher = build_dispatcher(temporal_env.client, settings, engine)
    async with build_worker(temporal_env.client, settings, engine):
        await dispatcher.drain()  # ...and dropped: a paused flow takes no one new in
        assert await queued(engine) == 0
        await api(client, ws, "POST", f"/v1/flows/{flow_id}/status", json={"status": "live"})
        await join(client, ws, members, third)
        await dispatcher.drain()
        await until(count_of(engine, flow_id, 1))
    [journey] = await journeys(engine, uuid.UUID(flow_id))
    assert str(journey.profile_id) == third
