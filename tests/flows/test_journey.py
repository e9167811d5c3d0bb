"""The journey runtime end to end on the time-skipping server: real activities, real PostgreSQL,
the local outbox provider. Flows are stored with plain SQL (flows + flow_versions)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select, text
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.journeys import webhook_secret
from channels.settings import ChannelSettings, save_channel_settings
from core.db import session_scope
from core.settings import Settings
from ingest.consents import ConsentUpdate, apply_consents
from models import Channel, ConsentSource, ConsentState, LocalOutboxMessage, Profile
from models.journeys import Journey, JourneyStep
from models.templates import Template
from tests.helpers import until
from worker import build_worker
from workflows.journey import ExitInput, JourneyWorkflow, StartJourneyInput

HISTORIES = Path(__file__).parent / "histories"
HTML = "<html><body><p>Hi {{ profile.first_name }}, your cart is waiting.</p></body></html>"


# --- factories (shared with test_router and test_replay) --------------------------------------


def definition(steps: list[dict], *, metric: str = "Started Checkout", **settings: Any) -> dict:
    return {
        "name": f"flow-{uuid.uuid4().hex[:6]}",
        "trigger": {"type": "event", "metric": metric, "where": []},
        "settings": settings,
        "entry": steps[0]["id"],
        "steps": steps,
    }


async def store_flow(engine, ws_id, defn: dict, *, status: str = "live", version: int = 1):
    flow_id = uuid.uuid4()
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "INSERT INTO flows (id, workspace_id, name, status, draft, live_version, "
                "trigger_type, trigger_metric) VALUES (:id, :ws, :name, :status, "
                "CAST(:d AS jsonb), :v, 'event', :metric)"
            ),
            {"id": flow_id, "ws": ws_id, "name": defn["name"], "status": status,
             "d": json.dumps(defn), "v": version, "metric": defn["trigger"].get("metric")},
        )  # fmt: skip
        await add_version(session, flow_id, ws_id, defn, version)
    return flow_id


async def add_version(session, flow_id, ws_id, defn: dict, version: int) -> None:
    await session.execute(
        text(
            "INSERT INTO flow_versions (flow_id, version, workspace_id, definition, author) "
            "VALUES (:id, :v, :ws, CAST(:d AS jsonb), 'test')"
        ),
        {"id": flow_id, "v": version, "ws": ws_id, "d": json.dumps(defn)},
    )


async def shop(engine, workspaces):
    ws = await workspaces.create()
    async with session_scope(engine) as session:
        await save_channel_settings(session, ws.id, ChannelSettings(from_email="shop@example.com"))
        template = Template(workspace_id=ws.id, name="cart", channel=Channel.email,
                            subject="Your cart", html=HTML)  # fmt: skip
        session.add(template)
    return ws, template.id


async def customer(engine, ws, **properties) -> uuid.UUID:
    n = uuid.uuid4().hex[:8]
    profile = Profile(workspace_id=ws.id, email=f"c-{n}@example.com", first_name="Ada",
                      timezone="UTC", properties=properties)  # fmt: skip
    async with session_scope(engine) as session:
        session.add(profile)
        await session.flush()
        update = ConsentUpdate(
            profile.id, Channel.email, ConsentState.subscribed, ConsentSource.api
        )
        await apply_consents(session, ws.id, [update])
    return profile.id


async def outbox(engine, profile_id=None) -> list[LocalOutboxMessage]:
    async with session_scope(engine) as session:
        query = select(LocalOutboxMessage)
        if profile_id:
            query = query.where(LocalOutboxMessage.profile_id == profile_id)
        return list((await session.execute(query)).scalars())


async def steps_of(engine, journey_id) -> list[tuple[str, str, str | None]]:
    async with session_scope(engine) as session:
        rows = await session.execute(
            select(JourneyStep.step_id, JourneyStep.outcome, JourneyStep.reason)
            .where(JourneyStep.journey_id == journey_id)
            .order_by(JourneyStep.id)
        )
        return [tuple(r) for r in rows]


async def journey_row(engine, journey_id) -> Journey:
    async with session_scope(engine) as session:
        return (await session.execute(select(Journey).where(Journey.id == journey_id))).scalar_one()


async def start(client, task_queue, ws, flow_id, profile_id, *, event=None) -> WorkflowHandle:
    jid = uuid.uuid4()
    return await client.start_workflow(
        JourneyWorkflow.run,
        StartJourneyInput(
            workspace_id=ws.id,
            flow_id=flow_id,
            version=1,
            profile_id=profile_id,
            journey_id=jid,
            trigger_event=event,
        ),  # fmt: skip
        id=f"journey-test-{jid}",
        task_queue=task_queue,
    )


def at_step(handle, step: str):
    async def check() -> bool:
        return (await handle.query(JourneyWorkflow.get_state)).current_step == step

    return check


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def ts_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, public_url="https://wm.example.com",
                    secret_key="test-secret-key-that-is-long-enough-0123456789")  # fmt: skip


@pytest.fixture
async def ts_client(time_skipping_env: WorkflowEnvironment) -> Client:
    """The time-skipping server's client, with Waymark's search attributes registered (the
    test server does not take them at start, unlike the dev server)."""
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.service import RPCError

    from workflows import search_attributes

    client = time_skipping_env.client
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={k.name: k.indexed_value_type for k in search_attributes.ALL},
            )
        )
    except RPCError:  # already registered by an earlier test
        pass
    return client


@pytest.fixture
async def ts_worker(ts_client, ts_settings, engine, task_queue):
    async with build_worker(ts_client, ts_settings, engine, task_queue=task_queue) as worker:
        yield worker


# --- tests -------------------------------------------------------------------------------------

CART = [
    {"type": "delay", "id": "wait", "duration": {"amount": 4, "unit": "hours"}, "next": "mail"},
    {"type": "send", "id": "mail", "channel": "email", "template_id": None, "next": None},
]


def cart_flow(template_id) -> dict:
    steps = json.loads(json.dumps(CART))
    steps[1]["template_id"] = str(template_id)
    return definition(steps, exits=[{"type": "order_placed"}])


async def test_email_goes_out_after_the_delay_and_an_exit_leaves_at_once(
    engine, workspaces, ts_client, ts_worker, task_queue
):
    ws, template_id = await shop(engine, workspaces)
    flow_id = await store_flow(engine, ws.id, cart_flow(template_id))
    stays, buys = await customer(engine, ws), await customer(engine, ws)

    leaving = await start(ts_client, task_queue, ws, flow_id, buys)
    await until(at_step(leaving, "wait"))
    await leaving.signal(JourneyWorkflow.exit, ExitInput(reason="order_placed"))
    left = await leaving.result()
    assert (left.status, left.reason) == ("exited", "order_placed")

    staying = await start(ts_client, task_queue, ws, flow_id, stays)
    done = await staying.result()
    assert done.status == "completed"
    assert [m.to for m in await outbox(engine)] == [(await _email(engine, stays))]
    jid = (await staying.describe()).id.removeprefix("journey-test-")
    steps = await steps_of(engine, uuid.UUID(jid))
    assert steps == [("wait", "entered", None), ("wait", "completed", None),
                     ("mail", "entered", None), ("mail", "completed", None)]  # fmt: skip
    async with session_scope(engine) as session:
        times = dict(
            (await session.execute(
                select(JourneyStep.step_id, JourneyStep.occurred_at).where(
                    JourneyStep.journey_id == uuid.UUID(jid), JourneyStep.outcome == "entered"
                )
            )).all()
        )  # fmt: skip
    assert times["mail"] - times["wait"] >= timedelta(hours=4)
    exited = await journey_row(engine, uuid.UUID((await leaving.describe()).id[13:]))
    assert (exited.status, exited.end_reason, exited.current_step) == (
        "exited",
        "order_placed",
        "wait",
    )
    assert await steps_of(engine, exited.id) == [("wait", "entered", None)]


async def _email(engine, profile_id) -> str:
    async with session_scope(engine) as session:
        return (
            await session.execute(select(Profile.email).where(Profile.id == profile_id))
        ).scalar_one()


async def test_splits_pick_the_right_branch(engine, workspaces, ts_client, ts_worker, task_queue):
    ws, _ = await shop(engine, workspaces)
    tag = lambda sid, t: {"type": "tag", "id": sid, "tag": t, "next": None}  # noqa: E731
    steps = [
        {
            "type": "condition_split",
            "id": "vip",
            "yes": "big",
            "condition": {"type": "property", "property": "tier", "op": "eq", "value": "gold"},
            "no": "big",
        },
        {
            "type": "trigger_split",
            "id": "big",
            "where": [{"property": "$value", "op": "gt", "value": 100}],
            "yes": "ab",
            "no": "t-small",
        },
        {
            "type": "random_split",
            "id": "ab",
            "branches": [{"weight": 50, "next": "t-a"}, {"weight": 50, "next": "t-b"}],
        },
        tag("t-small", "small"),
        tag("t-a", "a"),
        tag("t-b", "b"),
    ]
    flow_id = await store_flow(engine, ws.id, definition(steps))
    big, small = await customer(engine, ws, tier="gold"), await customer(engine, ws)
    first = await start(
        ts_client,
        task_queue,
        ws,
        flow_id,
        big,
        event={"metric": "Started Checkout", "value": 150.0, "properties": {}},
    )
    second = await start(
        ts_client,
        task_queue,
        ws,
        flow_id,
        small,
        event={"metric": "Started Checkout", "value": 20.0, "properties": {}},
    )
    assert (await first.result()).status == (await second.result()).status == "completed"
    async with session_scope(engine) as session:
        tags = dict((await session.execute(select(Profile.id, Profile.properties["tags"]))).all())
    assert tags[small] == ["small"]
    assert tags[big] in (["a"], ["b"])
    ids = {h: uuid.UUID((await h.describe()).id[13:]) for h in (first, second)}
    assert [s[0] for s in await steps_of(engine, ids[first]) if s[1] == "entered"] == [
        "vip",
        "big",
        "ab",
        f"t-{tags[big][0]}",
    ]
    # Random split is deterministic in replay: the recorded history replays to the same branch.
    from temporalio.worker import Replayer

    history = await first.fetch_history()
    if os.environ.get("WM_RECORD_HISTORIES"):  # refresh tests/flows/histories (docs/VERSIONING.md)
        HISTORIES.joinpath("journey_splits.json").write_text(history.to_json())
    await Replayer(
        workflows=[JourneyWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)


async def test_wait_for_event_has_two_exits(engine, workspaces, ts_client, ts_worker, task_queue):
    ws, _ = await shop(engine, workspaces)
    steps = [
        {"type": "wait_for_event", "id": "paid", "metric": "Placed Order", "where": [],
         "timeout": {"amount": 2, "unit": "days"}, "on_event": "t-yes", "on_timeout": "t-no"},
        {"type": "tag", "id": "t-yes", "tag": "bought", "next": None},
        {"type": "tag", "id": "t-no", "tag": "timed-out", "next": None},
    ]  # fmt: skip
    flow_id = await store_flow(engine, ws.id, definition(steps))
    buyer, idle = await customer(engine, ws), await customer(engine, ws)
    waiting = await start(ts_client, task_queue, ws, flow_id, buyer)
    await until(at_step(waiting, "paid"))
    from workflows.journey import EventReceivedInput

    await waiting.signal(JourneyWorkflow.event_received, EventReceivedInput(metric="Viewed Page"))
    await waiting.signal(JourneyWorkflow.event_received, EventReceivedInput(metric="Placed Order"))
    assert (await waiting.result()).status == "completed"
    assert (
        await (await start(ts_client, task_queue, ws, flow_id, idle)).result()
    ).status == "completed"
    async with session_scope(engine) as session:
        tags = dict((await session.execute(select(Profile.id, Profile.properties["tags"]))).all())
    assert tags == {buyer: ["bought"], idle: ["timed-out"]}


async def test_update_profile_and_list_steps_change_data(
    engine, workspaces, ts_client, ts_worker, task_queue
):
    ws, _ = await shop(engine, workspaces)
    async with session_scope(engine) as session:
        list_id = (
            await session.execute(
                text(
                    "INSERT INTO lists (id, workspace_id, name)"
                    " VALUES (gen_random_uuid(), :ws, 'VIP') RETURNING id"
                ),
                {"ws": ws.id},
            )
        ).scalar_one()
    steps = [
        {"type": "update_profile", "id": "props", "next": "join",
         "properties": [{"property": "stage", "op": "set", "value": "cart"},
                        {"property": "visits", "op": "increment", "value": 2},
                        {"property": "old", "op": "clear"},
                        {"property": "last_cart_at", "op": "set_now"}],
         "consents": [{"channel": "email", "action": "revoke"}]},
        {"type": "list", "id": "join", "list_id": str(list_id), "action": "add", "next": None},
    ]  # fmt: skip
    flow_id = await store_flow(engine, ws.id, definition(steps))
    pid = await customer(engine, ws, visits=1, old="x")
    assert (
        await (await start(ts_client, task_queue, ws, flow_id, pid)).result()
    ).status == "completed"
    async with session_scope(engine) as session:
        props = (
            await session.execute(select(Profile.properties).where(Profile.id == pid))
        ).scalar_one()
        member = (
            await session.execute(
                text("SELECT count(*) FROM list_members WHERE list_id = :l AND profile_id = :p"),
                {"l": list_id, "p": pid},
            )
        ).scalar_one()
        consent = (
            await session.execute(
                text("SELECT state FROM consents WHERE profile_id = :p"), {"p": pid}
            )
        ).scalar_one()
    assert props["stage"] == "cart" and props["visits"] == 3 and "old" not in props
    assert "last_cart_at" in props
    assert member == 1 and consent == "unsubscribed"


@pytest.fixture
async def hook_server():
    received: list[tuple[bytes, dict]] = []
    state = {"status": 200}

    async def handle(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=state["status"])

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook", received, state
    await runner.cleanup()


async def test_webhook_is_signed_and_failures_continue_or_stop(
    engine, workspaces, ts_client, ts_worker, task_queue, hook_server, ts_settings
):
    url, received, state = hook_server
    ws, _ = await shop(engine, workspaces)

    def flow(on_failure: str) -> dict:
        return definition([
            {"type": "webhook", "id": "hook", "url": url, "body": {"hello": "shop"},
             "on_failure": on_failure, "next": "after"},
            {"type": "tag", "id": "after", "tag": "after-hook", "next": None},
        ])  # fmt: skip

    pid = await customer(engine, ws)
    ok = await store_flow(engine, ws.id, flow("continue"))
    assert (await (await start(ts_client, task_queue, ws, ok, pid)).result()).status == "completed"
    body, headers = received[0]
    assert json.loads(body) == {"hello": "shop"}
    t, v1 = (p.split("=", 1)[1] for p in headers["X-Waymark-Signature"].split(","))
    secret = webhook_secret(ts_settings.secret_key, ws.id)
    assert hmac.compare_digest(
        v1, hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    )

    state["status"] = 503
    received.clear()
    going = await start(ts_client, task_queue, ws, ok, pid)
    assert (await going.result()).status == "completed"
    assert len(received) == 3  # the retry policy's attempts
    jid = uuid.UUID((await going.describe()).id[13:])
    assert ("hook", "failed") in [s[:2] for s in await steps_of(engine, jid)]
    assert ("after", "completed") in [s[:2] for s in await steps_of(engine, jid)]

    stop = await store_flow(engine, ws.id, flow("stop"))
    stopping = await start(ts_client, task_queue, ws, stop, pid)
    result = await stopping.result()
    assert (result.status, result.reason) == ("removed", "webhook_failed")
    jid = uuid.UUID((await stopping.describe()).id[13:])
    assert [s[0] for s in await steps_of(engine, jid)] == ["hook", "hook"]


async def test_worker_restart_mid_journey_resumes_without_a_second_send(
    engine, workspaces, ts_client, ts_settings, task_queue
):
    ws, template_id = await shop(engine, workspaces)
    flow_id = await store_flow(engine, ws.id, cart_flow(template_id))
    pid = await customer(engine, ws)
    # No workflow cache on the first worker: its history is not pinned to a sticky queue that
    # nobody polls once it is gone (as when a worker process is killed and another takes over).
    async with build_worker(
        ts_client, ts_settings, engine, task_queue=task_queue, max_cached_workflows=0
    ):
        handle = await start(ts_client, task_queue, ws, flow_id, pid)
        await until(at_step(handle, "wait"))
    # The first worker is gone; a new one picks the journey up in its delay.
    async with build_worker(ts_client, ts_settings, engine, task_queue=task_queue):
        assert (await handle.result()).status == "completed"
    assert len(await outbox(engine, pid)) == 1


async def test_a_filter_that_fails_removes_the_customer(
    engine, workspaces, ts_client, ts_worker, task_queue
):
    ws, _ = await shop(engine, workspaces)
    steps = [{"type": "tag", "id": "t", "tag": "x", "next": None}]
    flow_id = await store_flow(
        engine,
        ws.id,
        definition(
            steps, filter={"type": "property", "property": "tier", "op": "eq", "value": "gold"}
        ),
    )
    pid = await customer(engine, ws, tier="silver")
    handle = await start(ts_client, task_queue, ws, flow_id, pid)
    result = await handle.result()
    assert (result.status, result.reason) == ("removed", "filter")
    row = await journey_row(engine, uuid.UUID((await handle.describe()).id[13:]))
    assert (row.status, row.end_reason) == ("removed", "filter")
