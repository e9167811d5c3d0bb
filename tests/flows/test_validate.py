"""validate_flow: every error and warning names its step (and the field inside it); templates,
webhook bodies and alert messages render against the event the flow's journeys really get."""

from __future__ import annotations

import uuid

import pytest

from core.db import session_scope
from flows.definition import FlowDefinition
from flows.router_membership import LIST_JOINED_METRIC, SEGMENT_ENTERED_METRIC
from flows.validate import validate_flow
from flows.validate_render import sample_event, trigger_source_name
from models import ProfileList, Segment, Template
from tests.flows import flow_body


@pytest.fixture
async def shop(engine, workspaces):
    ws = await workspaces.create()
    async with session_scope(engine) as session:
        sms = Template(
            workspace_id=ws.id,
            name="Cart SMS",
            channel="sms",
            body="Finish your order: {{ event.checkout_url }}",
        )
        email = Template(
            workspace_id=ws.id,
            name="Hello",
            channel="email",
            subject="Hi",
            html="<p>Hi {{ profile.first_name }}</p>",
        )
        session.add_all([sms, email])
    return ws, str(sms.id), str(email.id)


async def check(engine, ws, body):
    async with session_scope(engine) as session:
        report = await validate_flow(session, ws.id, body)
    errors = {(i.step_id, i.path): i.message for i in report.errors}
    warnings = {(i.step_id, i.path): i.message for i in report.warnings}
    return errors, warnings


async def test_a_good_flow_only_warns_about_the_local_outbox(engine, shop):
    ws, sms, _ = shop
    errors, warnings = await check(engine, ws, flow_body("Cart", sms))
    assert errors == {}
    assert "local outbox" in warnings[("remind", "channel")]


async def test_graph_problems(engine, shop):
    ws, sms, email = shop
    body = flow_body("Graph", sms)
    body["steps"][1]["next"] = "nowhere"
    body["steps"] += [
        {"id": "orphan", "type": "delay", "duration": {"amount": 1}},
        {"id": "loop-a", "type": "tag", "tag": "x", "next": "loop-b"},
        {"id": "loop-b", "type": "tag", "tag": "y", "next": "loop-a"},
        {
            "id": "many",
            "type": "multi_split",
            "branches": [
                {"name": f"b{i}", "condition": {"type": "language", "languages": ["pl"]}}
                for i in range(11)
            ],
        },
        {
            "id": "vip",
            "type": "trigger_split",
            "where": [{"property": "$value", "op": "gt", "value": 100}],
        },
    ]
    errors, warnings = await check(engine, ws, body)
    assert "no step 'nowhere'" in errors[("remind", "next")]
    assert "cannot loop" in (errors.get(("loop-b", "next")) or errors[("loop-a", "next")])
    assert "at most 10" in errors[("many", "branches")]
    assert ("orphan", "") in warnings and ("many", "") in warnings
    assert "nothing follows this delay" in warnings[("orphan", "next")]
    assert ("vip", "where") not in errors  # the trigger is an event: fine

    body["trigger"] = {"type": "segment_entered", "segment_id": str(uuid.uuid4())}
    body["entry"] = "missing"
    errors, _ = await check(engine, ws, body)
    assert "needs an event trigger" in errors[("vip", "where")]
    assert "no segment" in errors[(None, "trigger.segment_id")]
    assert "no step 'missing'" in errors[(None, "entry")]


async def test_references_and_templates(engine, shop):
    ws, sms, email = shop
    body = flow_body("Refs", sms)
    body["trigger"] = {"type": "list_joined", "list_id": str(uuid.uuid4())}
    body["settings"]["filter"] = {"type": "list_membership", "list_id": str(uuid.uuid4())}
    body["steps"][1]["next"] = "split"
    body["steps"] += [
        {
            "id": "split",
            "type": "condition_split",
            "condition": {"all": [{"type": "segment_membership", "segment_id": str(uuid.uuid4())}]},
            "yes": "wrong-channel",
            "no": "unknown-template",
        },
        {
            "id": "wrong-channel",
            "type": "send",
            "channel": "sms",
            "template_id": email,
            "next": "birthday",
        },
        {
            "id": "unknown-template",
            "type": "send",
            "channel": "email",
            "template_id": str(uuid.uuid4()),
            "next": "add",
        },
        {"id": "add", "type": "list", "list_id": str(uuid.uuid4())},
        {"id": "birthday", "type": "delay", "until_date": {"property": "birthday"}, "next": "add"},
    ]
    errors, _ = await check(engine, ws, body)
    assert "no list" in errors[(None, "trigger.list_id")]
    assert "no list" in errors[(None, "settings.filter.list_id")]
    assert any(k[0] == "split" and k[1].startswith("condition.all[0]") for k in errors)
    assert "is for email, not sms" in errors[("wrong-channel", "template_id")]
    assert "no template" in errors[("unknown-template", "template_id")]
    assert "no list" in errors[("add", "list_id")]
    assert "no profile property 'birthday'" in errors[("birthday", "until_date.property")]
    # A list trigger has no event: the SMS template reading event.checkout_url fails.
    assert "fails to render" in errors[("remind", "template_id")]


async def test_shape_errors_are_reported_not_raised(engine, shop):
    ws, sms, _ = shop
    body = flow_body("Shape", sms)
    body["steps"][0]["duration"] = {"amount": 0}
    errors, _ = await check(engine, ws, body)
    assert any("steps.0.delay.duration.amount" in path for _, path in errors)


def sms(ws, name: str, body: str) -> Template:
    return Template(workspace_id=ws.id, name=name, channel="sms", body=body)


def send(step_id: str, template: Template, next: str | None = None) -> dict:
    return {
        "id": step_id,
        "type": "send",
        "channel": "sms",
        "template_id": str(template.id),
        "next": next,
    }


async def test_list_and_segment_flows_render_with_the_event_the_router_gives_them(engine, shop):
    """`Joined List` / `Entered Segment` (flows.router_membership) is what a list or segment
    flow's templates read as `event`: its fields validate, a misspelt one is named."""
    ws, _, _ = shop
    async with session_scope(engine) as session:
        vip = ProfileList(workspace_id=ws.id, name="VIP")
        buyers = Segment(workspace_id=ws.id, name="Buyers", definition={"all": []})
        joined = sms(ws, "Joined", "Welcome to {{ event.list_name }} (via {{ event.source }})")
        typo = sms(ws, "Typo", "Hi {{ profile.first_name }}!\nWelcome to {{ event.list_nam }}")
        entered = sms(ws, "Entered", "{{ event.metric }}: {{ event.segment_name }}")
        session.add_all([vip, buyers, joined, typo, entered])
    body = {
        "name": "Members",
        "trigger": {"type": "list_joined", "list_id": str(vip.id)},
        "entry": "hello",
        "steps": [
            send("hello", joined, "typo"),
            send("typo", typo, "entered"),
            send("entered", entered),
        ],
    }
    errors, _ = await check(engine, ws, body)
    assert ("hello", "template_id") not in errors
    assert errors[("typo", "template_id")] == (
        "template 'Typo' fails to render: body line 2: 'event' has no attribute 'list_nam'"
    )
    assert "'event' has no attribute 'segment_name'" in errors[("entered", "template_id")]
    assert len(errors) == 2

    body["trigger"] = {"type": "segment_entered", "segment_id": str(buyers.id)}
    errors, _ = await check(engine, ws, body)
    assert ("entered", "template_id") not in errors
    assert "'event' has no attribute 'list_name'" in errors[("hello", "template_id")]
    assert "'event' has no attribute 'list_nam'" in errors[("typo", "template_id")]

    # The sample is the router's own event, named after the flow's list or segment.
    defn = FlowDefinition.model_validate(body)
    async with session_scope(engine) as session:
        name = await trigger_source_name(session, ws.id, defn)
    event = sample_event(defn, ws.id, name)
    assert (event["metric"], event["segment_id"], event["segment_name"]) == (
        SEGMENT_ENTERED_METRIC,
        str(buyers.id),
        "Buyers",
    )
    assert event["properties"] == {"segment_id": str(buyers.id), "segment_name": "Buyers"}
    body["trigger"] = {"type": "list_joined", "list_id": str(vip.id)}
    event = sample_event(FlowDefinition.model_validate(body), ws.id, "VIP")
    assert (event["metric"], event["list_name"], event["source"]) == (
        LIST_JOINED_METRIC,
        "VIP",
        "api",
    )


async def test_webhook_bodies_and_alert_messages_must_render(engine, shop):
    ws, sms_id, _ = shop
    body = flow_body("Actions", sms_id)
    body["steps"][1]["next"] = "crm"
    body["steps"] += [
        {
            "id": "crm",
            "type": "webhook",
            "url": "https://crm.example.com/hook",
            "body": {
                "email": "{{ profile.email }}",
                "total": "{{ event.total | money }}",
                "items": ["{{ event.items[0].name }}"],
                "customer": {"nick": "{{ profile.nick }}", "plain": "no template"},
                "count": 3,
            },
            "next": "lines",
        },
        {
            "id": "lines",
            "type": "webhook",
            "url": "https://crm.example.com/hook",
            "body": {"lines": ["{{ event.metric }}", "{{ event.items[5].name }}"]},
            "next": "staff",
        },
        {
            "id": "staff",
            "type": "alert",
            "to": "staff@example.com",
            "message": "Big cart from {{ profile.email }}\nTotal: {{ event.totl }}",
            "next": "broken",
        },
        {
            "id": "broken",
            "type": "alert",
            "channel": "webhook",
            "to": "https://ops.example.com/alerts",
            "message": "{% if event.total > 50 %}big",
            "next": "fine",
        },
        {
            "id": "fine",
            "type": "alert",
            "to": "staff@example.com",
            "message": "{{ profile.full_name }}: {{ event.item_count }} items ({{ event.metric }})",
            "next": "default-body",
        },
        {"id": "default-body", "type": "webhook", "url": "https://crm.example.com/hook"},
    ]
    errors, _ = await check(engine, ws, body)
    # The same place, line and name as the step's failure reason at run time.
    assert errors[("crm", "body.customer.nick")] == (
        "fails to render: body.customer.nick line 1: 'profile' has no attribute 'nick'"
    )
    assert "'event.items' has no item 5" in errors[("lines", "body.lines[1]")]
    assert errors[("staff", "message")] == (
        "fails to render: message line 2: 'event' has no attribute 'totl'"
    )
    assert "fails to render: message line 1:" in errors[("broken", "message")]
    assert set(errors) == {
        ("crm", "body.customer.nick"),
        ("lines", "body.lines[1]"),
        ("staff", "message"),
        ("broken", "message"),
    }

    # A list flow's alert reads the join; a cart's fields are not there.
    async with session_scope(engine) as session:
        vip = ProfileList(workspace_id=ws.id, name="VIP")
        session.add(vip)
    body["trigger"] = {"type": "list_joined", "list_id": str(vip.id)}
    body["steps"] = [
        {"id": "wait", "type": "delay", "duration": {"amount": 1}, "next": "joined"},
        {
            "id": "joined",
            "type": "alert",
            "to": "staff@example.com",
            "message": "{{ profile.email }} joined {{ event.list_name }} via {{ event.source }}",
            "next": "hook",
        },
        {
            "id": "hook",
            "type": "webhook",
            "url": "https://crm.example.com/hook",
            "body": {"list": "{{ event.list_id }}", "cart": "{{ event.checkout_url }}"},
        },
    ]
    errors, _ = await check(engine, ws, body)
    assert errors == {
        ("hook", "body.cart"): (
            "fails to render: body.cart line 1: 'event' has no attribute 'checkout_url'"
        )
    }
