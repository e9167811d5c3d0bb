"""Flow metrics end to end: real journeys on the time-skipping server (real activities, real
PostgreSQL, the local outbox), engagement through the real tracking links and the SendGrid
webhook, then `GET /v1/flows/{id}/metrics` per flow, per version and per step."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select

from api import create_app
from channels import links
from channels.settings import ChannelSettings, save_channel_settings
from core.db import session_scope
from models import Channel, LocalOutboxMessage, Profile, Scope
from models.templates import Template
from tests.api.test_webhooks import _keys, _signed
from tests.factories import bearer
from tests.flows import test_journey
from tests.flows.test_journey import at_step, customer, until
from workflows.journey import ExitInput, JourneyWorkflow, StartJourneyInput

# The journey tests' time-skipping fixtures: client (search attributes registered), settings,
# a worker with every workflow and activity.
ts_client, ts_settings, ts_worker = (
    test_journey.ts_client,
    test_journey.ts_settings,
    test_journey.ts_worker,
)

HTML = (
    "<html><body><p>Hi {{ profile.first_name }}, your cart is waiting.</p>"
    '<p><a href="https://shop.example.com/cart">Back to your cart</a></p></body></html>'
)


@pytest.fixture
async def api(ts_settings, time_skipping_env, engine) -> AsyncIterator[AsyncClient]:
    """The API on the same settings as the worker (so tracking links verify), talking to the
    time-skipping server."""
    target = time_skipping_env.client.service_client.config.target_host
    app = create_app(ts_settings.model_copy(update={"temporal_address": target}))
    async with LifespanManager(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://waymark.test") as c:
            yield c


def cart(template_id: uuid.UUID, hours: int = 4) -> dict[str, Any]:
    """Started checkout → wait → email; order placed exits; only Ada may be in it."""
    return {
        "name": "Abandoned cart",
        "trigger": {"type": "event", "metric": "Started Checkout"},
        "settings": {
            "exits": [{"type": "order_placed"}],
            "filter": {"type": "property", "property": "first_name", "op": "eq", "value": "Ada"},
        },
        "entry": "wait_4h",
        "steps": [
            {"id": "wait_4h", "type": "delay", "duration": {"amount": hours, "unit": "hours"},
             "next": "mail"},
            {"id": "mail", "type": "send", "channel": "email", "template_id": str(template_id)},
        ],
    }  # fmt: skip


async def publish(api: AsyncClient, ws, definition: dict, flow_id: str | None = None) -> str:
    if flow_id is None:
        r = await api.post("/v1/flows", json={"definition": definition}, headers=ws.admin)
        assert r.status_code == 201, r.text
        flow_id = r.json()["id"]
    else:
        r = await api.put(
            f"/v1/flows/{flow_id}/draft", json={"definition": definition}, headers=ws.admin
        )
        assert r.status_code == 200, r.text
    r = await api.post(f"/v1/flows/{flow_id}/publish", json={}, headers=ws.admin)
    assert r.status_code == 200 and r.json()["published"], r.text
    return flow_id


async def journey(client, task_queue, ws, flow_id: str, profile_id, version: int = 1):
    jid = uuid.uuid4()
    return await client.start_workflow(
        JourneyWorkflow.run,
        StartJourneyInput(
            workspace_id=ws.id,
            flow_id=uuid.UUID(flow_id),
            version=version,
            profile_id=profile_id,
            journey_id=jid,
        ),  # fmt: skip
        id=f"journey-test-{jid}",
        task_queue=task_queue,
    )


async def mail_of(engine, profile_id) -> LocalOutboxMessage:
    async with session_scope(engine) as session:
        query = select(LocalOutboxMessage).where(LocalOutboxMessage.profile_id == profile_id)
        return (await session.execute(query)).scalar_one()


def _path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


async def open_and_click(api: AsyncClient, mail: LocalOutboxMessage, click: bool) -> None:
    """What the customer's mail client does: load the pixel, follow the link."""
    html = mail.html or ""
    pixel = re.search(r'src="([^"]+/l/o/[^"]+\.gif)"', html)
    assert pixel, html
    assert (await api.get(_path(pixel.group(1)))).status_code == 200
    if click:
        link = re.search(r'href="([^"]+/l/c/[^"]+)"', html)
        assert link, html
        r = await api.get(_path(link.group(1)))
        assert r.status_code == 302 and r.headers["location"] == "https://shop.example.com/cart"


async def sendgrid(api: AsyncClient, ws, private, events: list[tuple[str, uuid.UUID]], at: int):
    """SendGrid's Event Webhook reporting `events` (kind, Waymark message id)."""
    body, headers = _signed(private, [
        {"event": kind, "email": "x@example.com", "timestamp": at,
         "sg_event_id": uuid.uuid4().hex, "waymark_message_id": str(message_id)}
        for kind, message_id in events
    ])  # fmt: skip
    r = await api.post(f"/webhooks/sendgrid/{ws.id}", content=body, headers=headers)
    assert r.status_code == 204, r.text


def reasons(total: int = 0, **by: int) -> dict[str, Any]:
    return {"total": total, "reasons": by}


def journeys(started=0, active=0, completed=0, exited=None, removed=None) -> dict[str, Any]:
    return {"started": started, "active": active, "completed": completed,
            "exited": exited or reasons(), "removed": removed or reasons()}  # fmt: skip


def messages(**counts: Any) -> dict[str, Any]:
    names = ("sent", "failed", "delivered", "opened", "clicked", "bounced", "unsubscribed")
    return {"skipped": counts.pop("skipped", reasons())} | {n: counts.pop(n, 0) for n in names}


def step(step_id: str, type_: str, **counts: Any) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "type": type_,
        "entered": counts.pop("entered", 0),
        "completed": counts.pop("completed", 0),
        "skipped": counts.pop("skipped", reasons()),
        "failed": counts.pop("failed", 0),
        "active": counts.pop("active", 0),
        "exited": counts.pop("exited", reasons()),
        "removed": counts.pop("removed", reasons()),
        "messages": counts.pop("messages", messages()),
    }


async def test_metrics_per_flow_version_and_step_from_real_journeys(
    api, engine, workspaces, ts_client, ts_worker, task_queue, ts_settings, time_skipping_env
):
    # Provider events carry whole seconds (`timestamp`): the start, floored to its second and one
    # before it, is before every one of them.
    started_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    ws = await workspaces.create()
    reader = bearer(await ws.key(Scope.read))
    private, public = _keys()
    async with session_scope(engine) as session:
        await save_channel_settings(session, ws.id, ChannelSettings(
            from_email="shop@example.com", sendgrid_webhook_public_key=public))  # fmt: skip
        template = Template(workspace_id=ws.id, name="cart", channel=Channel.email,
                            subject="Your cart", html=HTML)  # fmt: skip
        session.add(template)
    flow_id = await publish(api, ws, cart(template.id))

    # Version 1: Ada and Bea get the email, Cy never consented, Di places an order while
    # waiting, Mallory fails the flow filter.
    ada, bea, di = [await customer(engine, ws) for _ in range(3)]
    async with session_scope(engine) as session:
        cy = Profile(workspace_id=ws.id, email="cy@example.com", first_name="Ada")
        mallory = Profile(workspace_id=ws.id, email="mallory@example.com", first_name="Mallory")
        session.add_all([cy, mallory])
    # One at a time: the test server skips time while a result is awaited, and journeys
    # running side by side would have their activities' timeouts skipped past.
    buying = await journey(ts_client, task_queue, ws, flow_id, di)
    await until(at_step(buying, "wait_4h"))
    await buying.signal(JourneyWorkflow.exit, ExitInput(reason="order_placed"))
    results = [await buying.result()]
    for profile_id in (mallory.id, ada, bea, cy.id):
        results.append(
            await (await journey(ts_client, task_queue, ws, flow_id, profile_id)).result()
        )
    assert [(r.status, r.reason) for r in results] == [
        ("exited", "order_placed"), ("removed", "filter"), *[("completed", None)] * 3
    ]  # fmt: skip
    ada_mail, bea_mail = await mail_of(engine, ada), await mail_of(engine, bea)
    await open_and_click(api, ada_mail, click=True)
    reports = [("delivered", ada_mail.message_id), ("bounce", bea_mail.message_id)]
    await sendgrid(api, ws, private, reports, int(time.time()))

    # Version 2 (a shorter wait, same step ids): Fay gets the email, opens it and unsubscribes
    # through it; Gus is still waiting.
    between_sends, between_journeys = datetime.now(UTC), await time_skipping_env.get_current_time()
    await publish(api, ws, cart(template.id, hours=2), flow_id)
    fay, gus = await customer(engine, ws), await customer(engine, ws)
    assert (await (await journey(ts_client, task_queue, ws, flow_id, fay, 2)).result()).status == (
        "completed"
    )
    waiting = await journey(ts_client, task_queue, ws, flow_id, gus, 2)
    await until(at_step(waiting, "wait_4h"))
    fay_mail = await mail_of(engine, fay)
    await open_and_click(api, fay_mail, click=False)
    await sendgrid(api, ws, private, [("delivered", fay_mail.message_id)],
                   math.ceil(between_sends.timestamp()))  # fmt: skip
    unsubscribe = links.unsubscribe_url(settings=ts_settings, workspace_id=ws.id,
                                        profile_id=fay, message_id=fay_mail.message_id)  # fmt: skip
    assert (await api.post(_path(unsubscribe))).status_code == 200

    r = await api.get(f"/v1/flows/{flow_id}/metrics", headers=reader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["flow_id"], body["version"], body["since"], body["until"]) == (
        flow_id, None, None, None
    )  # fmt: skip
    v1_journeys = journeys(5, 0, 3, reasons(1, order_placed=1), reasons(1, filter=1))
    v2_journeys = journeys(2, 1, 1)
    assert body["journeys"] == journeys(7, 1, 4, reasons(1, order_placed=1), reasons(1, filter=1))
    no_consent = reasons(1, no_consent=1)
    v1_messages = messages(sent=2, skipped=no_consent, delivered=1, opened=1, clicked=1, bounced=1)
    v2_messages = messages(sent=1, delivered=1, opened=1, unsubscribed=1)
    all_messages = messages(sent=3, skipped=no_consent, delivered=2, opened=2, clicked=1,
                            bounced=1, unsubscribed=1)  # fmt: skip
    assert body["messages"] == all_messages
    assert body["versions"] == [
        {"version": 1, "journeys": v1_journeys, "messages": v1_messages},
        {"version": 2, "journeys": v2_journeys, "messages": v2_messages},
    ]
    assert body["steps"] == [
        step("wait_4h", "delay", entered=6, completed=4, active=1,
             exited=reasons(1, order_placed=1)),
        step("mail", "send", entered=4, completed=3, skipped=no_consent, messages=all_messages),
    ]  # fmt: skip

    # One version: the same figures as in the list, and its steps alone.
    r = await api.get(f"/v1/flows/{flow_id}/versions/1/metrics", headers=reader)
    assert r.status_code == 200, r.text
    one = r.json()
    assert (one["version"], one["journeys"], one["messages"]) == (1, v1_journeys, v1_messages)
    assert one["steps"] == [
        step("wait_4h", "delay", entered=4, completed=3, exited=reasons(1, order_placed=1)),
        step("mail", "send", entered=3, completed=2, skipped=no_consent, messages=v1_messages),
    ]  # fmt: skip
    r = await api.get(f"/v1/flows/{flow_id}/metrics", params={"version": 2}, headers=reader)
    two = r.json()
    assert (two["version"], two["journeys"], two["messages"]) == (2, v2_journeys, v2_messages)
    assert two["steps"] == [
        step("wait_4h", "delay", entered=2, completed=1, active=1),
        step("mail", "send", entered=1, completed=1, messages=v2_messages),
    ]
    assert two == (await api.get(f"/v1/flows/{flow_id}/versions/2/metrics", headers=reader)).json()

    # Windows. Before anything happened: nothing, and nobody was active yet.
    r = await api.get(
        f"/v1/flows/{flow_id}/metrics", params={"until": started_at.isoformat()}, headers=reader
    )
    assert r.status_code == 200, r.text
    assert (r.json()["journeys"], r.json()["messages"]) == (journeys(), messages())
    assert [s["entered"] for s in r.json()["steps"]] == [0, 0]
    # Journeys since version 2 was published (workflow time: the server skipped the delays).
    r = await api.get(
        f"/v1/flows/{flow_id}/metrics",
        params={"since": between_journeys.isoformat()},
        headers=reader,
    )
    assert r.json()["journeys"] == v2_journeys
    assert [(s["entered"], s["completed"]) for s in r.json()["steps"]] == [(2, 1), (1, 1)]
    # Messages engaged with since then (wall-clock time, as providers report it). Sends and skips
    # carry the later of the wall clock and the journey's clock (`SendMessageInput.now`), which
    # this server skipped hours ahead: all of them count.
    r = await api.get(
        f"/v1/flows/{flow_id}/metrics", params={"since": between_sends.isoformat()}, headers=reader
    )
    assert r.json()["messages"] == {**v2_messages, "sent": 3, "skipped": no_consent}


async def test_unknown_flow_other_workspace_and_bad_windows(api, engine, workspaces):
    ws, other = await workspaces.create(), await workspaces.create("Other shop")
    async with session_scope(engine) as session:
        template = Template(workspace_id=ws.id, name="cart", channel=Channel.email,
                            subject="Your cart", html=HTML)  # fmt: skip
        session.add(template)
    flow_id = await publish(api, ws, cart(template.id))
    # A published flow nobody entered yet: zeros, and its steps listed.
    r = await api.get(f"/v1/flows/{flow_id}/metrics", headers=ws.admin)
    assert r.status_code == 200, r.text
    assert r.json()["journeys"] == journeys() and r.json()["messages"] == messages()
    assert [s["step_id"] for s in r.json()["steps"]] == ["wait_4h", "mail"]
    assert [v["version"] for v in r.json()["versions"]] == [1]

    def code(r) -> tuple[int, str]:
        return r.status_code, r.json()["error"]["code"]

    for url in (f"/v1/flows/{uuid.uuid4()}/metrics", f"/v1/flows/{flow_id}/versions/7/metrics"):
        assert code(await api.get(url, headers=ws.admin)) == (404, "not_found")
    assert code(
        await api.get(f"/v1/flows/{flow_id}/metrics", params={"version": 7}, headers=ws.admin)
    ) == (404, "not_found")
    for url in (f"/v1/flows/{flow_id}/metrics", f"/v1/flows/{flow_id}/versions/1/metrics"):
        assert code(await api.get(url, headers=other.admin)) == (404, "not_found")
        assert (await api.get(url)).status_code == 401

    bad = [
        {"since": "2026-05-02T00:00:00Z", "until": "2026-05-01T00:00:00Z"},
        {"since": "yesterday"},
        {"version": 0},
        {"version": 2**40},
    ]
    for params in bad:
        r = await api.get(f"/v1/flows/{flow_id}/metrics", params=params, headers=ws.admin)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["message"]
    r = await api.get(f"/v1/flows/{flow_id}/versions/{2**40}/metrics", headers=ws.admin)
    assert r.status_code == 422
    widest = {"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59+14:00"}
    r = await api.get(f"/v1/flows/{flow_id}/metrics", params=widest, headers=ws.admin)
    assert r.status_code == 200 and r.json()["journeys"] == journeys(), r.text
    # A window without an offset is UTC.
    r = await api.get(
        f"/v1/flows/{flow_id}/metrics", params={"since": "2026-05-01T00:00:00"}, headers=ws.admin
    )
    assert r.status_code == 200 and r.json()["since"].startswith("2026-05-01T00:00:00")
