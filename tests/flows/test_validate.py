"""validate_flow: every error and warning names its step (and the field inside it)."""

from __future__ import annotations

import uuid

import pytest

from core.db import session_scope
from flows.validate import validate_flow
from models import Template
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
