"""Webhook bodies and alert messages are templates over the profile and the trigger event;
email alerts reach staff through the workspace's email provider (local outbox, or SendGrid
through its SDK against a local sink), once per journey and step."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.journey_actions import (
    JourneyActionActivities,
    SendAlertInput,
    alert_message_id,
)
from channels.credentials import SecretBox, SendGridCredentials, save
from core.db import session_scope
from core.settings import Settings
from models import Channel, LocalOutboxMessage
from tests.channels import conftest as channel_fixtures
from tests.flows import test_journey as journey_fixtures
from tests.flows.test_journey import customer, definition, shop, start, steps_of, store_flow

# Fixtures shared with those modules.
sink = channel_fixtures.sink
hook_server = journey_fixtures.hook_server
ts_client, ts_settings = journey_fixtures.ts_client, journey_fixtures.ts_settings
ts_worker = journey_fixtures.ts_worker
SECRET = "test-secret-key-that-is-long-enough-0123456789"

EVENT = {
    "id": 1,
    "metric": "Started Checkout",
    "value": 89.0,
    "occurred_at": "2026-11-24T10:00:00+00:00",
    "properties": {
        "checkout_url": "https://shop.example.com/checkout/abc",
        "items": [{"name": "Linen shirt", "price": 59.0}],
    },
}


async def _journey_id(handle) -> uuid.UUID:
    return uuid.UUID((await handle.describe()).id.removeprefix("journey-test-"))


async def test_webhook_body_is_rendered_with_the_profile_and_the_event(
    engine, workspaces, ts_client, ts_worker, task_queue, hook_server
):
    url, received, _ = hook_server
    ws, _ = await shop(engine, workspaces)
    body = {
        "customer": {"name": "{{ profile.first_name }}", "email": "{{ profile.email }}"},
        "cart": "{{ event.checkout_url }}",
        "first_item": "{{ event['items'][0].name }} for {{ event.value }}",
        "lines": ["{% for i in event['items'] %}{{ i.name }}{% endfor %}", "plain"],
        "count": 3,
    }
    steps = [{"type": "webhook", "id": "hook", "url": url, "body": body, "next": None}]
    flow_id = await store_flow(engine, ws.id, definition(steps))
    pid = await customer(engine, ws)
    handle = await start(ts_client, task_queue, ws, flow_id, pid, event=EVENT)
    assert (await handle.result()).status == "completed"
    [(raw, _)] = received
    assert json.loads(raw) == {
        "customer": {"name": "Ada", "email": await _email(engine, pid)},
        "cart": "https://shop.example.com/checkout/abc",
        "first_item": "Linen shirt for 89.0",
        "lines": ["Linen shirt", "plain"],
        "count": 3,
    }


async def _email(engine, pid) -> str:
    from models import Profile

    async with session_scope(engine) as session:
        return (await session.execute(select(Profile.email).where(Profile.id == pid))).scalar_one()


@pytest.mark.parametrize("on_failure", ["continue", "stop"])
async def test_a_body_that_does_not_render_fails_the_step_with_the_missing_name(
    engine, workspaces, ts_client, ts_worker, task_queue, hook_server, on_failure
):
    url, received, _ = hook_server
    ws, _ = await shop(engine, workspaces)
    steps = [
        {"type": "webhook", "id": "hook", "url": url, "on_failure": on_failure,
         "body": {"who": {"nick": "Hi\n{{ profile.nickname }}"}}, "next": "after"},
        {"type": "tag", "id": "after", "tag": "after-hook", "next": None},
    ]  # fmt: skip
    flow_id = await store_flow(engine, ws.id, definition(steps))
    pid = await customer(engine, ws)
    handle = await start(ts_client, task_queue, ws, flow_id, pid, event=EVENT)
    result = await handle.result()
    assert received == []  # never sent half-filled, and not retried
    steps_done = await steps_of(engine, await _journey_id(handle))
    [(_, _, reason)] = [s for s in steps_done if s[:2] == ("hook", "failed")]
    assert reason.startswith("render_failed: webhook body.who.nick line 2: ")
    assert "'nickname'" in reason
    if on_failure == "continue":
        assert result.status == "completed"
        assert ("after", "completed", None) in steps_done
    else:
        assert (result.status, result.reason) == ("removed", "webhook_failed")
        assert all(s[0] == "hook" for s in steps_done)


async def test_an_email_alert_reaches_staff_with_the_profile_and_the_event(
    engine, workspaces, ts_client, ts_worker, task_queue
):
    ws, _ = await shop(engine, workspaces)
    steps = [
        {"type": "alert", "id": "vip", "channel": "email", "to": "ops@shop.example",
         "message": "Big cart from {{ profile.first_name }}: {{ event.value }}", "next": "bad"},
        {"type": "alert", "id": "bad", "channel": "email", "to": "ops@shop.example",
         "message": "{{ event.coupon.code }}", "next": None},
    ]  # fmt: skip
    flow_id = await store_flow(engine, ws.id, definition(steps))
    pid = await customer(engine, ws, tier="gold")
    handle = await start(ts_client, task_queue, ws, flow_id, pid, event=EVENT)
    assert (await handle.result()).status == "completed"
    jid = await _journey_id(handle)
    async with session_scope(engine) as session:
        [mail] = list((await session.execute(select(LocalOutboxMessage))).scalars())
    assert (mail.to, mail.channel, mail.message_id) == (
        "ops@shop.example",
        "email",
        alert_message_id(jid, "vip"),
    )
    assert mail.profile_id is None  # staff mail: not in the customer's own outbox view
    assert "Big cart from Ada: 89.0" in mail.subject
    email = await _email(engine, pid)
    for text in (mail.text, mail.html):
        assert email in text and "gold" in text and "Started Checkout" in text
        assert "https://shop.example.com/checkout/abc" in text
    assert mail.payload["from_email"] == "shop@example.com"
    # The second alert's message does not render: that step failed, the journey went on.
    steps_done = await steps_of(engine, jid)
    assert ("vip", "completed", None) in steps_done
    [(_, _, reason)] = [s for s in steps_done if s[:2] == ("bad", "failed")]
    assert reason.startswith("render_failed: alert message line 1: ") and "'coupon'" in reason


def _alert(ws_id, pid, flow_id, **kw) -> SendAlertInput:
    fields = {"journey_id": uuid.uuid4(), "channel": "email", "to": "ops@shop.example", **kw}
    return SendAlertInput(workspace_id=ws_id, profile_id=pid, flow_id=flow_id, step_id="vip",
                          message="VIP {{ profile.first_name }}", event=EVENT,
                          **fields)  # fmt: skip


async def test_an_email_alert_is_sent_once_per_journey_and_step(engine, workspaces, ts_settings):
    ws, _ = await shop(engine, workspaces)
    pid = await customer(engine, ws)
    flow_id = await store_flow(engine, ws.id, definition([{"type": "tag", "id": "t", "tag": "x"}]))
    acts, env = JourneyActionActivities(engine, ts_settings), ActivityEnvironment()
    once, second = uuid.uuid4(), uuid.uuid4()
    first = await env.run(acts.send_alert, _alert(ws.id, pid, flow_id, journey_id=once))
    again = await env.run(acts.send_alert, _alert(ws.id, pid, flow_id, journey_id=once))
    other = await env.run(acts.send_alert, _alert(ws.id, pid, flow_id, journey_id=second))
    assert (first.sent, again.sent, again.reason, other.sent) == (True, False, "already_sent", True)
    async with session_scope(engine) as session:
        rows = list((await session.execute(select(LocalOutboxMessage.message_id))).scalars())
    assert sorted(rows) == sorted([alert_message_id(once, "vip"), alert_message_id(second, "vip")])


def _alert_flow(channel: str, to: str) -> dict:
    return {
        "name": f"Alert {uuid.uuid4().hex[:6]}",
        "trigger": {"type": "event", "metric": "Started Checkout"},
        "entry": "notify",
        "steps": [{"type": "alert", "id": "notify", "channel": channel, "to": to,
                   "message": "Big cart from {{ profile.first_name }}"}],
    }  # fmt: skip


@pytest.mark.parametrize(
    "channel, to, problem",
    [
        ("webhook", "http://10.0.0.7/alerts", "https://"),  # plain http inside the network
        ("webhook", "http://metadata.internal/latest", "https://"),
        ("webhook", "ftp://ops.example.com/x", "https://"),
        ("webhook", "ops@shop.example", "https://"),  # an address where a URL belongs
        ("email", "not-an-address", "email address"),
        ("email", "https://ops.example.com/alerts", "email address"),
        ("email", "Ops <ops@shop.example>", "email address"),
    ],
)
async def test_an_alert_to_a_bad_address_is_refused_with_its_step(
    client, workspaces, channel, to, problem
):
    ws = await workspaces.create()
    r = await client.post("/v1/flows", headers=ws.admin,
                          json={"definition": _alert_flow(channel, to)})  # fmt: skip
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_flow"
    assert "step 'notify'" in error["message"] and problem in error["message"]
    flows = await client.get("/v1/flows", headers=ws.admin)
    assert flows.json()["data"] == []  # nothing written


@pytest.mark.parametrize(
    "channel, to",
    [
        ("webhook", "https://ops.example.com/alerts"),
        ("webhook", "http://localhost:8080/alerts"),
        ("email", "ops@shop.example"),
    ],
)
async def test_an_alert_to_a_good_address_is_saved(client, workspaces, channel, to):
    ws = await workspaces.create()
    r = await client.post("/v1/flows", headers=ws.admin,
                          json={"definition": _alert_flow(channel, to)})  # fmt: skip
    assert r.status_code == 201, r.text


async def test_a_stored_webhook_alert_to_plain_http_is_not_posted(engine, workspaces, ts_settings):
    """A version published before `to` was checked still loads, but its alert never POSTs to
    a plain-http address that is not localhost: the step fails for good (no retries)."""
    from aiohttp import web

    from flows.definition import parse_definition

    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/alerts", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)  # stands for a host inside the network
    await site.start()
    inside = f"http://127.0.0.2:{site._server.sockets[0].getsockname()[1]}/alerts"
    try:
        stored = _alert_flow("webhook", inside)
        assert parse_definition(stored).steps[0].to == inside  # journeys are not stranded
        ws, _ = await shop(engine, workspaces)
        pid = await customer(engine, ws)
        tag = definition([{"type": "tag", "id": "t", "tag": "x"}])
        flow_id = await store_flow(engine, ws.id, tag)
        acts, env = JourneyActionActivities(engine, ts_settings), ActivityEnvironment()
        alert = _alert(ws.id, pid, flow_id, channel="webhook", to=inside)
        with pytest.raises(ApplicationError) as refused:
            await env.run(acts.send_alert, alert)
    finally:
        await runner.cleanup()
    assert refused.value.non_retryable and "https://" in refused.value.message
    assert received == []


async def test_an_email_alert_goes_through_sendgrid_when_the_workspace_has_it(
    engine,
    workspaces,
    database_url,
    sink,  # noqa: F811 (the fixture)
):
    settings = Settings(database_url=database_url, secret_key=SECRET, sendgrid_base_url=sink.url)
    ws, _ = await shop(engine, workspaces)
    pid = await customer(engine, ws)
    flow_id = await store_flow(engine, ws.id, definition([{"type": "tag", "id": "t", "tag": "x"}]))
    async with session_scope(engine) as session:
        creds = SendGridCredentials(
            api_key="SG.test-key-0123456789abcdef",
            from_email="alerts@shop.example",
            from_name="Shop alerts",
        )
        await save(session, SecretBox.from_settings(settings), ws.id, Channel.email, creds)
    acts, env = JourneyActionActivities(engine, settings), ActivityEnvironment()
    alert = _alert(ws.id, pid, flow_id)
    assert (await env.run(acts.send_alert, alert)).sent
    assert (await env.run(acts.send_alert, alert)).reason == "already_sent"  # a retry
    [(method, path, headers, raw)] = sink.requests
    assert (method, path) == ("POST", "/v3/mail/send")
    assert headers["Authorization"] == "Bearer SG.test-key-0123456789abcdef"
    mail = json.loads(raw)
    assert mail["from"] == {"email": "alerts@shop.example", "name": "Shop alerts"}
    assert mail["personalizations"][0]["to"] == [{"email": "ops@shop.example"}]
    assert "VIP Ada" in mail["subject"]
    text = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
    assert await _email(engine, pid) in text and "Started Checkout" in text
    async with session_scope(engine) as session:  # nothing in the local outbox
        assert (await session.execute(select(LocalOutboxMessage))).first() is None

    sink.answers.append((400, {}, b'{"errors":[{"message":"The to address is invalid"}]}'))
    with pytest.raises(ApplicationError) as refused:
        await env.run(acts.send_alert, _alert(ws.id, pid, flow_id))
    assert refused.value.non_retryable and "to address is invalid" in refused.value.message
