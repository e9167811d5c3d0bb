"""Campaigns through the API: details, send-settings locks, paths, messages, review, statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

LATER = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()


async def _campaign(client, ws, **body) -> dict:
    r = await client.post("/v1/campaigns", json={"name": "Spring sale", **body}, headers=ws.admin)
    assert r.status_code == 201, r.text
    return r.json()


async def _list(client, ws, name: str, *emails: str) -> str:
    r = await client.post("/v1/lists", json={"name": name}, headers=ws.admin)
    assert r.status_code == 201, r.text
    list_id = r.json()["id"]
    if emails:
        r = await client.post(
            f"/v1/lists/{list_id}/members", json={"emails": list(emails)}, headers=ws.admin
        )
        assert r.status_code == 200, r.text
    return list_id


async def _template(client, ws, channel: str = "email", **parts) -> str:
    if not parts:
        parts = (
            {"subject": "Hi {{ profile.first_name }}", "html": "<p>Sale</p>"}
            if channel == "email"
            else {"body": "Sale!"}
        )
    body = {"name": f"T {channel} {len(str(parts))}", "channel": channel, **parts}
    r = await client.post("/v1/templates", json=body, headers=ws.admin)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def _message(client, ws, campaign: dict, path_id: str | None = None, **body) -> dict:
    path_id = path_id or campaign["paths"][0]["id"]
    payload = {"name": "Launch", "channel": "email", "send_at": LATER, **body}
    r = await client.post(
        f"/v1/campaigns/{campaign['id']}/paths/{path_id}/messages", json=payload, headers=ws.admin
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _ready(client, ws) -> tuple[dict, dict]:
    """A campaign whose one email message passes review."""
    list_id = await _list(client, ws, "VIP", "ann@example.com", "bob@example.com")
    campaign = await _campaign(client, ws, path={"include_lists": [list_id]})
    template_id = await _template(
        client,
        ws,
        subject="Hi",
        html='<p>Sale</p><a href="{{ unsubscribe_url }}">unsubscribe</a>',
    )
    message = await _message(
        client, ws, campaign, template_id=template_id, sender={"from_email": "shop@example.com"}
    )
    return campaign, message


def _url(campaign: dict, message: dict, tail: str = "") -> str:
    return f"/v1/campaigns/{campaign['id']}/messages/{message['id']}{tail}"


async def test_crud_details_and_first_path(client, workspaces):
    ws = await workspaces.create()
    campaign = await _campaign(client, ws, tag="spring", color="#ff8800", timezone="Europe/Warsaw")
    assert len(campaign["paths"]) == 1 and campaign["paths"][0]["position"] == 0
    assert campaign["timezone"] == "Europe/Warsaw" and campaign["settings_locked"] is None

    r = await client.patch(
        f"/v1/campaigns/{campaign['id']}",
        json={"name": "Summer sale", "description": "big", "use_recipient_local_time": True},
        headers=ws.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Summer sale" and r.json()["use_recipient_local_time"] is True

    r = await client.get("/v1/campaigns", headers=ws.admin)
    assert [c["name"] for c in r.json()["data"]] == ["Summer sale"]

    r = await client.post(
        "/v1/campaigns", json={"name": "x", "timezone": "Mars/Base"}, headers=ws.admin
    )
    assert r.status_code == 422 and "Mars/Base" in r.text
    r = await client.post(
        "/v1/campaigns",
        json={"name": "x", "path": {"include_lists": [campaign["id"]]}},
        headers=ws.admin,
    )
    assert r.status_code == 422 and "not found" in r.json()["error"]["message"]

    r = await client.delete(f"/v1/campaigns/{campaign['id']}", headers=ws.admin)
    assert r.status_code == 204
    assert (
        await client.get(f"/v1/campaigns/{campaign['id']}", headers=ws.admin)
    ).status_code == 404


async def test_eleventh_path_is_refused(client, workspaces):
    ws = await workspaces.create()
    campaign = await _campaign(client, ws)
    for _ in range(9):
        r = await client.post(f"/v1/campaigns/{campaign['id']}/paths", json={}, headers=ws.admin)
        assert r.status_code == 201, r.text
    r = await client.post(f"/v1/campaigns/{campaign['id']}/paths", json={}, headers=ws.admin)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "path_limit"
    assert "at most 10 paths" in r.json()["error"]["message"]


async def test_thirty_first_message_is_refused(client, workspaces):
    ws = await workspaces.create()
    campaign = await _campaign(client, ws)
    r = await client.post(f"/v1/campaigns/{campaign['id']}/paths", json={}, headers=ws.admin)
    second = r.json()["id"]
    for i in range(30):
        await _message(client, ws, campaign, path_id=second if i % 2 else None, name=f"M{i}")
    r = await client.post(
        f"/v1/campaigns/{campaign['id']}/paths/{second}/messages",
        json={"name": "one too many", "channel": "sms"},
        headers=ws.admin,
    )
    assert r.status_code == 409
    assert "at most 30 messages" in r.json()["error"]["message"]


async def test_paths_clone_reorder_delete(client, workspaces):
    ws = await workspaces.create()
    vip = await _list(client, ws, "VIP")
    blocked = await _list(client, ws, "Blocked")
    campaign = await _campaign(
        client, ws, path={"name": "VIP", "include_lists": [vip], "exclude_lists": [blocked]}
    )
    first = campaign["paths"][0]["id"]
    later = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    await _message(client, ws, campaign, name="Second", send_at=later)
    await _message(client, ws, campaign, name="First", channel="sms")
    r = await client.get(f"/v1/campaigns/{campaign['id']}/paths/{first}/messages", headers=ws.admin)
    assert [m["name"] for m in r.json()] == ["First", "Second"]  # by send time

    other = await client.post(
        f"/v1/campaigns/{campaign['id']}/paths", json={"name": "Rest"}, headers=ws.admin
    )
    r = await client.post(f"/v1/campaigns/{campaign['id']}/paths/{first}/clone", headers=ws.admin)
    assert r.status_code == 201, r.text
    clone = r.json()
    assert clone["position"] == 1 and clone["name"] == "VIP (copy)"
    assert clone["include_lists"] == [vip] and clone["exclude_lists"] == [blocked]
    assert [m["name"] for m in clone["messages"]] == ["First", "Second"]
    assert {m["status"] for m in clone["messages"]} == {"draft"}

    got = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=ws.admin)).json()
    assert [p["id"] for p in got["paths"]] == [first, clone["id"], other.json()["id"]]

    order = [other.json()["id"], first, clone["id"]]
    r = await client.put(
        f"/v1/campaigns/{campaign['id']}/paths/order", json={"path_ids": order}, headers=ws.admin
    )
    assert r.status_code == 200, r.text
    got = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=ws.admin)).json()
    assert [p["id"] for p in got["paths"]] == order
    r = await client.put(
        f"/v1/campaigns/{campaign['id']}/paths/order",
        json={"path_ids": order[:2]},
        headers=ws.admin,
    )
    assert r.status_code == 422

    r = await client.delete(f"/v1/campaigns/{campaign['id']}/paths/{first}", headers=ws.admin)
    assert r.status_code == 204
    got = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=ws.admin)).json()
    assert [(p["id"], p["position"]) for p in got["paths"]] == [(order[0], 0), (order[2], 1)]


async def test_message_edit_clone_delete(client, workspaces):
    ws = await workspaces.create()
    campaign = await _campaign(client, ws)
    path2 = (
        await client.post(f"/v1/campaigns/{campaign['id']}/paths", json={}, headers=ws.admin)
    ).json()["id"]
    message = await _message(client, ws, campaign, utm={"utm_source": "waymark"})
    r = await client.patch(
        _url(campaign, message),
        json={"strategy": "throttled", "throttle_percent": 20, "smart_sending": False},
        headers=ws.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["throttle_percent"] == 20 and r.json()["smart_sending"] is False
    r = await client.patch(_url(campaign, message), json={"throttle_percent": 60}, headers=ws.admin)
    assert r.status_code == 422

    r = await client.post(
        _url(campaign, message, "/clone"), json={"path_id": path2}, headers=ws.admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["path_id"] == path2 and r.json()["utm"] == {"utm_source": "waymark"}

    r = await client.delete(_url(campaign, message), headers=ws.admin)
    assert r.status_code == 204
    assert (await client.get(_url(campaign, message), headers=ws.admin)).status_code == 404


async def test_review_errors_block_scheduling(client, workspaces):
    ws = await workspaces.create()
    campaign = await _campaign(client, ws)
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    message = await _message(client, ws, campaign, send_at=past)
    r = await client.get(_url(campaign, message, "/review"), headers=ws.admin)
    assert r.status_code == 200, r.text
    codes = {e["code"] for e in r.json()["errors"]}
    assert {"no_audience", "no_content", "missing_sender", "send_time_passed"} <= codes
    assert "channel_not_configured" in {w["code"] for w in r.json()["warnings"]}  # local mode

    r = await client.post(_url(campaign, message, "/schedule"), headers=ws.admin)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "review_failed"
    assert "no_audience" in {d["type"] for d in r.json()["error"]["details"]}
    got = await client.get(_url(campaign, message), headers=ws.admin)
    assert got.json()["status"] == "draft"


async def test_review_template_sms_and_warnings(client, workspaces, engine):
    from sqlalchemy import text

    ws = await workspaces.create()
    list_id = await _list(client, ws, "All", "ann@example.com")
    campaign = await _campaign(client, ws, path={"include_lists": [list_id]})
    broken = await _template(client, ws, subject="Hi", html="<p>ok</p>")
    async with engine.begin() as conn:  # saved before a rule change: no longer renders
        await conn.execute(
            text("UPDATE templates SET html = '{{ nope.deep }}' WHERE id = :id"), {"id": broken}
        )
    long_sms = await _template(client, ws, "sms", body="x" * 1600)
    plain = await _template(client, ws, subject="Hi", html="<p>No way out</p>")
    message = await _message(
        client, ws, campaign, template_id=broken, sender={"from_email": "a@example.com"}
    )
    review = (await client.get(_url(campaign, message, "/review"), headers=ws.admin)).json()
    assert "template_error" in {e["code"] for e in review["errors"]}

    sms = await _message(client, ws, campaign, channel="sms", template_id=long_sms, name="SMS")
    review = (await client.get(_url(campaign, sms, "/review"), headers=ws.admin)).json()
    assert "sms_too_long" in {e["code"] for e in review["errors"]}
    assert review["recipients"] == 1

    email = await _message(
        client, ws, campaign, template_id=plain, sender={"from_email": "a@example.com"}, name="E"
    )
    r = await client.get(f"/v1/campaigns/{campaign['id']}/review", headers=ws.admin)
    by_id = {m["message_id"]: m for m in r.json()["messages"]}
    assert by_id[email["id"]]["errors"] == []
    assert "no_unsubscribe_link" in {w["code"] for w in by_id[email["id"]]["warnings"]}


async def test_first_path_wins_in_recipient_counts(client, workspaces):
    ws = await workspaces.create()
    everyone = await _list(client, ws, "All", "ann@example.com", "bob@example.com")
    vip = await _list(client, ws, "VIP", "ann@example.com")
    campaign = await _campaign(client, ws, path={"include_lists": [vip]})
    second = (
        await client.post(
            f"/v1/campaigns/{campaign['id']}/paths",
            json={"include_lists": [everyone]},
            headers=ws.admin,
        )
    ).json()["id"]
    message = await _message(client, ws, campaign, path_id=second)
    review = (await client.get(_url(campaign, message, "/review"), headers=ws.admin)).json()
    assert review["recipients"] == 1  # ann gets the VIP path's messages only


async def test_schedule_locks_send_settings_and_revert_unlocks(client, workspaces):
    ws = await workspaces.create()
    campaign, message = await _ready(client, ws)
    url = f"/v1/campaigns/{campaign['id']}"

    r = await client.post(_url(campaign, message, "/schedule"), headers=ws.admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "scheduled" and r.json()["scheduled_at"]

    r = await client.patch(url, json={"timezone": "America/New_York"}, headers=ws.admin)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "send_settings_locked"
    assert "scheduled" in r.json()["error"]["message"]
    r = await client.patch(url, json={"name": "Renamed", "color": "#000"}, headers=ws.admin)
    assert r.status_code == 200  # details stay editable
    r = await client.patch(_url(campaign, message), json={"name": "x"}, headers=ws.admin)
    assert r.status_code == 409 and "revert" in r.json()["error"]["message"]
    r = await client.post(f"{url}/paths", json={}, headers=ws.admin)
    assert r.status_code == 409 and r.json()["error"]["code"] == "campaign_scheduled"

    r = await client.post(_url(campaign, message, "/revert"), headers=ws.admin)
    assert r.status_code == 200 and r.json()["status"] == "draft"
    r = await client.patch(url, json={"timezone": "America/New_York"}, headers=ws.admin)
    assert r.status_code == 200 and r.json()["timezone"] == "America/New_York"

    r = await client.post(_url(campaign, message, "/cancel"), headers=ws.admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await client.post(_url(campaign, message, "/cancel"), headers=ws.admin)
    assert r.status_code == 409


async def test_sent_message_locks_settings_for_good(client, workspaces, engine):
    from sqlalchemy import text

    ws = await workspaces.create()
    campaign, message = await _ready(client, ws)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE campaign_messages SET status = 'sent' WHERE id = :id"),
            {"id": message["id"]},
        )
    r = await client.patch(
        f"/v1/campaigns/{campaign['id']}", json={"use_recipient_local_time": True}, headers=ws.admin
    )
    assert r.status_code == 409
    assert "sent" in r.json()["error"]["message"] and "for good" in r.json()["error"]["message"]


@pytest.mark.parametrize("tail", ["", "/review"])
async def test_other_workspace_sees_404(client, workspaces, tail):
    ws, other = await workspaces.create(), await workspaces.create("Other")
    campaign, message = await _ready(client, ws)
    r = await client.get(_url(campaign, message, tail), headers=other.admin)
    assert r.status_code == 404
    r = await client.get(f"/v1/campaigns/{campaign['id']}", headers=other.admin)
    assert r.status_code == 404


async def test_sms_in_quiet_hours_warns(client, workspaces):
    ws = await workspaces.create()  # UTC; quiet hours 21:00–08:00 by default
    list_id = await _list(client, ws, "All", "ann@example.com")
    campaign = await _campaign(client, ws, path={"include_lists": [list_id]})
    template_id = await _template(client, ws, "sms", body="Sale tonight")
    night = (datetime.now(UTC) + timedelta(days=2)).replace(hour=23, minute=0, microsecond=0)
    sms = await _message(
        client, ws, campaign, channel="sms", template_id=template_id, send_at=night.isoformat()
    )
    review = (await client.get(_url(campaign, sms, "/review"), headers=ws.admin)).json()
    quiet = [w for w in review["warnings"] if w["code"] == "quiet_hours"]
    assert quiet and quiet[0]["message"].startswith("1 of 1 recipients")
    assert review["errors"] == []

    noon = night.replace(hour=12).isoformat()
    r = await client.patch(_url(campaign, sms), json={"send_at": noon}, headers=ws.admin)
    assert r.status_code == 200, r.text
    review = (await client.get(_url(campaign, sms, "/review"), headers=ws.admin)).json()
    assert "quiet_hours" not in {w["code"] for w in review["warnings"]}


async def test_unconfigured_channel_is_an_error_in_production(app, client, workspaces, settings):
    from api.deps import get_settings

    ws = await workspaces.create()
    campaign, message = await _ready(client, ws)
    app.dependency_overrides[get_settings] = lambda: settings.model_copy(
        update={"env": "production"}
    )
    try:
        review = (await client.get(_url(campaign, message, "/review"), headers=ws.admin)).json()
    finally:
        app.dependency_overrides.pop(get_settings)
    assert "channel_not_configured" in {e["code"] for e in review["errors"]}


async def test_schedule_registers_the_send_and_revert_removes_it(client, workspaces, temporal_env):
    from temporalio.client import WorkflowExecutionStatus

    from workflows.campaign_message import workflow_id

    ws = await workspaces.create()
    campaign, message = await _ready(client, ws)
    r = await client.post(_url(campaign, message, "/schedule"), headers=ws.admin)
    assert r.status_code == 200, r.text
    handle = temporal_env.client.get_workflow_handle(workflow_id(message["id"]))
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    r = await client.post(_url(campaign, message, "/revert"), headers=ws.admin)
    assert r.status_code == 200, r.text
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


async def test_large_audience_at_once_warns(client, workspaces, monkeypatch):
    from campaigns import review

    monkeypatch.setattr(review, "LARGE_AUDIENCE", 1)  # stands in for 100k profiles
    ws = await workspaces.create()
    campaign, message = await _ready(client, ws)  # two recipients, fixed send
    got = (await client.get(_url(campaign, message, "/review"), headers=ws.admin)).json()
    assert "large_audience" in {w["code"] for w in got["warnings"]}

    body = {"strategy": "throttled", "throttle_percent": 10}
    assert (await client.patch(_url(campaign, message), json=body, headers=ws.admin)).is_success
    got = (await client.get(_url(campaign, message, "/review"), headers=ws.admin)).json()
    assert "large_audience" not in {w["code"] for w in got["warnings"]}
