"""A 3-path omnichannel campaign end to end through the API, on Temporal's time-skipping server.

The harness: the API's Temporal dependency is the time-skipping server's client, so the messages
the API schedules are registered there; a worker on that server runs the real workflow and
activities; every channel sends into the local outbox (no provider account; web push goes to the
profiles' stored browser subscriptions). The test waits for the messages' workflows while the
server skips time, then checks recipient by recipient what each got and when (the ledger's
`sent_at`, in skipped time), and what the metrics API says.

The campaign sends in recipients' local time (a campaign setting, so every message goes out
zone by zone: UTC, New York and Tokyo), with "next day" where the time has passed; paths
overlap (a VIP who is also a customer or at churn risk gets the VIP path's messages only).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api import create_app
from api.deps import get_temporal
from campaigns.activities import CampaignActivities
from core.db import session_scope
from core.settings import Settings
from workflows import search_attributes
from workflows.campaign_message import CampaignMessageWorkflow, workflow_id

SLACK = timedelta(minutes=5)  # activities run in real time between skipped timers
UTC_, NY, TOKYO = "UTC", "America/New_York", "Asia/Tokyo"
EMAIL = {
    "subject": "Hi {{ profile.first_name }}",
    "html": '<p>Sale</p><a href="{{ unsubscribe_url }}">unsubscribe</a>',
}

# name: (zone, VIP, customer, churn risk, consents, push subscription)
PROFILES = {
    "vip_utc": (UTC_, True, True, False, ("email", "sms"), False),
    "vip_ny": (NY, True, False, True, ("email", "sms"), False),
    "vip_tokyo": (TOKYO, True, False, False, ("email", "sms"), False),
    "vip_no_email": (UTC_, True, False, False, ("sms",), False),
    **{f"std_{c}": (UTC_, False, True, False, ("email", "push"), True) for c in "abcde"},
    "std_churn": (UTC_, False, True, True, ("email", "push", "sms"), True),
    "std_no_push": (UTC_, False, True, False, ("email", "push"), False),
    "std_ny": (NY, False, True, False, ("email", "push"), True),
    "std_tokyo": (TOKYO, False, True, False, ("email", "push"), True),
    "recent_buyer": (UTC_, False, True, False, ("email", "push"), True),  # excluded
    "churn_utc": (UTC_, False, False, True, ("email", "sms"), False),
    "churn_ny": (NY, False, False, True, ("email", "sms"), False),
    "churn_no_sms": (UTC_, False, False, True, ("email",), False),
}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _subscription(seed: str) -> dict:
    digest = hashlib.sha512(seed.encode()).digest()
    return {
        "endpoint": f"https://fcm.googleapis.com/fcm/send/{seed}",
        "keys": {"p256dh": _b64url(b"\x04" + digest[:64]), "auth": _b64url(digest[:16])},
    }


def local_due(send_at: datetime, zone: str, snapshot_at: datetime) -> datetime:
    """The campaign's (UTC) wall-clock time in the zone; the next day where it has passed."""
    wall = send_at.astimezone(UTC).replace(tzinfo=None)
    due = wall.replace(tzinfo=ZoneInfo(zone))
    if due < snapshot_at:
        due = (wall + timedelta(days=1)).replace(tzinfo=ZoneInfo(zone))
    return due.astimezone(UTC)


@pytest.fixture
def e2e_settings(database_url: str, time_skipping_env: WorkflowEnvironment, task_queue: str):
    return Settings(
        database_url=database_url,
        temporal_address=time_skipping_env.client.service_client.config.target_host,
        task_queue=task_queue,
        public_url="https://wm.example.com",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )


@pytest.fixture
async def api(e2e_settings, engine, time_skipping_env):
    """The API with the time-skipping server as its Temporal, and a worker on that server."""
    # Scheduling sets Waymark's search attributes; the test server implements Add, not List.
    await time_skipping_env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={k.name: int(k.indexed_value_type) for k in search_attributes.ALL},
        )
    )
    app = create_app(e2e_settings)
    app.dependency_overrides[get_temporal] = lambda: time_skipping_env.client
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://waymark.test") as client,
        Worker(
            time_skipping_env.client,
            task_queue=e2e_settings.task_queue,
            workflows=[CampaignMessageWorkflow],
            activities=CampaignActivities(engine, e2e_settings).all(),
        ),
    ):
        yield client


async def run_to_end(env: WorkflowEnvironment, message_ids: list[str]) -> list:
    """The messages' workflow results, the server skipping time meanwhile. The API started
    them, so their handles are plain ones: unlock time skipping as a time-skipping handle's
    `result()` does, while waiting for all of them."""
    handles = [
        env.client.get_workflow_handle_for(CampaignMessageWorkflow.run, workflow_id(i))
        for i in message_ids
    ]
    await env.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    try:
        return await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 600)
    finally:
        await env.client.test_service.lock_time_skipping(LockTimeSkippingRequest())


async def _post(client, url: str, body: dict, headers: dict) -> dict:
    r = await client.post(url, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


async def test_three_paths_every_channel_exactly_their_first_paths_messages_on_time(
    api, workspaces, engine, time_skipping_env
):
    client, env = api, time_skipping_env
    ws = await workspaces.create()
    h = ws.admin

    # --- profiles, segments, lists, push subscriptions ------------------------------------
    ids: dict[str, str] = {}
    for i, (name, (zone, is_vip, _, at_risk, consents, _)) in enumerate(PROFILES.items()):
        body = {
            "external_id": name,
            "email": f"{name}@example.com",
            "phone": f"+1415555{100 + i:04d}",
            "first_name": name,
            "timezone": zone,
            "properties": {"tier": "vip" if is_vip else "standard", "churn_risk": at_risk},
            "consents": dict.fromkeys(consents, "subscribed"),
        }
        ids[name] = (await _post(client, "/v1/profiles", body, h))["id"]
    for name, (*_, push) in PROFILES.items():
        if push:
            body = {"userId": name, "subscription": _subscription(name)}
            await _post(client, "/v1/push/subscriptions", body, ws.tracking)
    name_of = {uuid.UUID(v): k for k, v in ids.items()}

    async def made(url: str, **body) -> str:
        return (await _post(client, url, body, h))["id"]

    def prop(name: str, value) -> dict:
        return {"type": "property", "property": name, "op": "eq", "value": value}

    vip = await made("/v1/segments", name="VIP", definition=prop("tier", "vip"))
    churn = await made("/v1/segments", name="Churn risk", definition=prop("churn_risk", True))
    customers = await made("/v1/lists", name="Customers")
    recent = await made("/v1/lists", name="Recent buyers")
    members = [f"{n}@example.com" for n, p in PROFILES.items() if p[2]]
    await _post(client, f"/v1/lists/{customers}/members", {"emails": members}, h)
    await _post(client, f"/v1/lists/{recent}/members", {"emails": ["recent_buyer@example.com"]}, h)

    # --- the campaign: 3 paths, 6 messages -----------------------------------------------------
    campaign = await _post(
        client,
        "/v1/campaigns",
        {
            "name": "Black Friday",
            "timezone": "UTC",
            "use_recipient_local_time": True,
            "passed_local_time": "next_day",
            "path": {"name": "VIP", "include_segments": [vip]},
        },
        h,
    )
    cid = campaign["id"]
    path_vip = campaign["paths"][0]["id"]
    paths = f"/v1/campaigns/{cid}/paths"
    path_std = await made(
        paths, name="Customers", include_lists=[customers], exclude_lists=[recent]
    )
    path_churn = await made(paths, name="Churn risk", include_segments=[churn])
    email_t = await made("/v1/templates", name="E", channel="email", **EMAIL)
    sms_t = await made("/v1/templates", name="S", channel="sms", body="Hi {{ profile.first_name }}")
    push_t = await made(
        "/v1/templates",
        name="P",
        channel="push",
        push_title="Sale",
        body="Now on",
        push_url="https://shop.example.com/sale",
    )

    t0 = await env.get_current_time()
    base = t0.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)  # 1–2 h ahead
    quiet = (23 - base.hour) % 24  # the SMS goes out at 23:00 local: quiet hours everywhere
    sender = {"from_email": "shop@example.com", "from_name": "Shop"}
    throttled = {"sender": sender, "strategy": "throttled", "throttle_percent": 25}
    specs = {  # name: (path, channel, template, hours after `base`, extra fields)
        "vip_email": (path_vip, "email", email_t, 2, {"smart_sending": False, "sender": sender}),
        "vip_reminder": (path_vip, "email", email_t, 10, {"smart_sending": True, "sender": sender}),
        "std_email": (path_std, "email", email_t, 3, {"smart_sending": False, **throttled}),
        "std_push": (path_std, "push", push_t, 5, {}),
        "churn_sms": (path_churn, "sms", sms_t, quiet, {"smart_sending": False}),
        "churn_email": (path_churn, "email", email_t, 1, {"sender": sender}),
    }
    messages: dict[str, dict] = {}
    for name, (path, channel, template, hours, extra) in specs.items():
        body = {"name": name, "channel": channel, "template_id": template, **extra}
        body["send_at"] = (base + timedelta(hours=hours)).isoformat()
        messages[name] = await _post(client, f"/v1/campaigns/{cid}/paths/{path}/messages", body, h)

    review = (await client.get(f"/v1/campaigns/{cid}/review", headers=h)).json()
    by_id = {m["message_id"]: m for m in review["messages"]}
    assert [by_id[m["id"]]["errors"] for m in messages.values()] == [[]] * len(messages)
    assert {n: by_id[m["id"]]["recipients"] for n, m in messages.items()} == {
        "vip_email": 4,
        "vip_reminder": 4,
        "std_email": 9,
        "std_push": 9,
        "churn_sms": 3,
        "churn_email": 3,
    }
    sms_warnings = {w["code"] for w in by_id[messages["churn_sms"]["id"]]["warnings"]}
    assert "quiet_hours" in sms_warnings

    for message in messages.values():
        r = await client.post(f"/v1/campaigns/{cid}/messages/{message['id']}/schedule", headers=h)
        assert r.status_code == 200, r.text

    # --- run: the server skips time while we wait for every message's workflow ----------------
    results = await run_to_end(env, [m["id"] for m in messages.values()])
    assert [r.status for r in results] == ["sent"] * len(messages)

    # --- what each recipient got, and when ----------------------------------------------------
    zone = {n: p[0] for n, p in PROFILES.items()}
    audience = {
        path_vip: [n for n, p in PROFILES.items() if p[1]],
        path_std: [n for n, p in PROFILES.items() if p[2] and not p[1] and n != "recent_buyer"],
        path_churn: [n for n, p in PROFILES.items() if p[3] and not p[1] and not p[2]],
    }
    expected: dict[tuple[str, str], tuple] = {}
    for mname, (path, channel, _, hours, extra) in specs.items():
        send_at = base + timedelta(hours=hours)
        due = {n: local_due(send_at, zone[n], t0) for n in audience[path]}
        if extra.get("strategy") == "throttled":  # waves of 25 % within each due time
            for at in set(due.values()):
                group = sorted((n for n in due if due[n] == at), key=lambda n: uuid.UUID(ids[n]))
                per_wave = math.ceil(len(group) * 25 / 100)
                for k, n in enumerate(group):
                    due[n] = at + timedelta(hours=k // per_wave)
        for n, at in due.items():
            consents, push = PROFILES[n][4], PROFILES[n][5]
            if channel not in consents:
                expected[mname, n] = ("skipped", "no_consent")
            elif channel == "push" and not push:
                expected[mname, n] = ("skipped", "no_address")
            elif channel == "sms" and at.astimezone(ZoneInfo(zone[n])).hour >= 21:
                release = (at.astimezone(ZoneInfo(zone[n])) + timedelta(days=1)).replace(hour=8)
                expected[mname, n] = ("sent", release.astimezone(UTC))  # held for quiet hours
            else:
                expected[mname, n] = ("sent", at)
    # Smart Sending (16 h for email) on the reminder: skipped where the first email went out
    # in the 16 hours before; in Tokyo the first email's time had passed, so it goes out the
    # next day and the reminder (not passed there) comes first.
    for n in audience[path_vip]:
        first, reminder = expected["vip_email", n], expected["vip_reminder", n]
        if first[0] == "sent" and timedelta(0) < reminder[1] - first[1] < timedelta(hours=16):
            expected["vip_reminder", n] = ("skipped", "smart_sending")
    assert expected["vip_reminder", "vip_tokyo"][0] == "sent"
    assert expected["vip_reminder", "vip_utc"] == ("skipped", "smart_sending")
    assert expected["vip_email", "vip_tokyo"][1] > base + timedelta(hours=12)  # next day
    for n, z in (("churn_utc", UTC_), ("churn_ny", NY)):  # held at 23:00, out at 08:00 local
        assert expected["churn_sms", n][1].astimezone(ZoneInfo(z)).hour == 8
    utc_waves = {expected["std_email", n][1] for n in audience[path_std] if zone[n] == UTC_}
    assert len(utc_waves) == 4  # 7 recipients in UTC: 2 an hour

    name_of_message = {uuid.UUID(m["id"]): n for n, m in messages.items()}
    async with session_scope(engine) as session:
        ledger = list(
            await session.execute(
                text(
                    "SELECT campaign_message_id, profile_id, status, skip_reason, sent_at, "
                    "(SELECT count(*) FROM local_outbox o WHERE o.message_id = m.id) AS boxed "
                    "FROM messages m WHERE workspace_id = :ws AND campaign_id = :cid"
                ),
                {"ws": ws.id, "cid": uuid.UUID(cid)},
            )
        )
    got = {}
    for row in ledger:
        key = (name_of_message[row.campaign_message_id], name_of[row.profile_id])
        assert key not in got, f"{key} has two ledger rows"
        got[key] = row
    assert set(got) == set(expected)  # nobody got a message of a path that is not their first
    for key, (status, what) in sorted(expected.items()):
        row = got[key]
        if status == "skipped":
            assert (row.status, row.skip_reason, row.boxed) == ("skipped", what, 0), key
        else:
            assert row.status == "sent" and row.boxed == 1, (key, row.status, row.boxed)
            assert what <= row.sent_at < what + SLACK, (key, what, row.sent_at)

    # --- engagement through the links the recipients got (read from the outbox) ---------------
    async def delivered(message: str, profile: str):
        async with session_scope(engine) as session:
            return (
                await session.execute(
                    text(
                        "SELECT o.html, o.payload FROM local_outbox o "
                        "JOIN messages m ON m.id = o.message_id "
                        "WHERE m.campaign_message_id = :mid AND m.profile_id = :pid"
                    ),
                    {"mid": messages[message]["id"], "pid": ids[profile]},
                )
            ).one()

    def link(found: str) -> str:
        return found.removeprefix("https://wm.example.com")

    email = await delivered("vip_email", "vip_utc")
    pixel = re.search(r'https://wm\.example\.com/l/o/[^"]+\.gif', email.html)
    assert (await client.get(link(pixel.group(0)))).status_code == 200
    push = await delivered("std_push", "std_a")
    assert (await client.get(link(push.payload["payload"]["url"]))).status_code == 302
    email = await delivered("churn_email", "churn_utc")
    unsubscribe = re.search(r'https://wm\.example\.com/l/u/[^"]+', email.html)
    assert (await client.post(link(unsubscribe.group(0)))).status_code == 200

    # --- the metrics API ----------------------------------------------------------------------
    def figures(names: list[str]) -> dict:
        rows = [expected[k] for k in expected if k[0] in names]
        skipped: dict[str, int] = {}
        for status, reason in rows:
            if status == "skipped":
                skipped[reason] = skipped.get(reason, 0) + 1
        return {
            "sent": sum(s == "sent" for s, _ in rows),
            "skipped": {"total": sum(skipped.values()), "reasons": skipped},
            "failed": 0,
        }

    r = await client.get(f"/v1/campaigns/{cid}/metrics", headers=h)
    assert r.status_code == 200, r.text
    metrics = r.json()
    assert metrics["recipients"] == 16  # distinct profiles: the recent buyer is excluded
    assert {k: metrics[k] for k in ("sent", "skipped", "failed")} == figures(list(specs))
    assert [p["path_id"] for p in metrics["paths"]] == [path_vip, path_std, path_churn]
    for path in metrics["paths"]:
        assert path["recipients"] == len(audience[path["path_id"]])
        names = [m["name"] for m in path["messages"]]
        assert {k: path[k] for k in ("sent", "skipped", "failed")} == figures(names)
        for m in path["messages"]:
            assert m["recipients"] == len(audience[path["path_id"]])
            assert {k: m[k] for k in ("sent", "skipped", "failed")} == figures([m["name"]])
            assert m["status"] == "sent"
            progress = m["progress"]
            assert progress["percent"] == 100.0 and progress["remaining"] == 0
            assert progress["done"] == m["recipients"]
            assert progress["current_wave"] == progress["waves"] > 0
    by_name = {m["name"]: m for p in metrics["paths"] for m in p["messages"]}
    engaged = {n: (m["opened"], m["clicked"], m["unsubscribed"]) for n, m in by_name.items()}
    assert engaged == {n: (0, 0, 0) for n in by_name} | {
        "vip_email": (1, 0, 0),
        "std_push": (0, 1, 0),
        "churn_email": (0, 0, 1),
    }
    assert [metrics[k] for k in ("opened", "clicked", "unsubscribed", "bounced")] == [1, 1, 1, 0]
    assert by_name["vip_reminder"]["skipped"]["reasons"] == {"smart_sending": 2, "no_consent": 1}
    assert by_name["std_push"]["skipped"]["reasons"] == {"no_address": 1}
    # std_email: 7 UTC recipients in 4 hourly waves, plus New York and Tokyo.
    assert by_name["std_email"]["progress"]["waves"] == 6
    r = await client.get(
        f"/v1/campaigns/{cid}/messages/{messages['churn_sms']['id']}/progress", headers=h
    )
    assert r.json()["percent"] == 100.0 and r.json()["held"] == 0 and r.json()["status"] == "sent"


async def test_sms_held_in_three_zones_goes_out_at_8_local_in_each(
    api, workspaces, time_skipping_env, engine
):
    client, env = api, time_skipping_env
    ws = await workspaces.create()
    h = ws.admin
    zones = {"utc": UTC_, "ny": NY, "tokyo": TOKYO}
    ids = {}
    for i, (name, zone) in enumerate(zones.items()):
        body = {"phone": f"+1415555{200 + i:04d}", "timezone": zone}
        ids[name] = (
            await _post(client, "/v1/profiles", body | {"consents": {"sms": "subscribed"}}, h)
        )["id"]
    everyone = await _post(client, "/v1/lists", {"name": "All"}, h)
    await _post(
        client, f"/v1/lists/{everyone['id']}/members", {"profile_ids": list(ids.values())}, h
    )
    campaign = await _post(
        client,
        "/v1/campaigns",
        {
            "name": "Night SMS",
            "use_recipient_local_time": True,
            "path": {"include_lists": [everyone["id"]]},
        },
        h,
    )
    template = await _post(
        client, "/v1/templates", {"name": "S", "channel": "sms", "body": "Sale"}, h
    )
    t0 = await env.get_current_time()
    base = t0.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    send_at = base + timedelta(hours=(23 - base.hour) % 24)  # 23:00 wall clock
    url = f"/v1/campaigns/{campaign['id']}/paths/{campaign['paths'][0]['id']}/messages"
    body = {
        "name": "SMS",
        "channel": "sms",
        "template_id": template["id"],
        "send_at": send_at.isoformat(),
    }
    message = await _post(client, url, body, h)
    r = await client.post(
        f"/v1/campaigns/{campaign['id']}/messages/{message['id']}/schedule", headers=h
    )
    assert r.status_code == 200, r.text

    await run_to_end(env, [message["id"]])

    async with session_scope(engine) as session:
        rows = await session.execute(
            text("SELECT profile_id, sent_at FROM messages WHERE campaign_message_id = :m"),
            {"m": message["id"]},
        )
        sent = {str(r.profile_id): r.sent_at for r in rows}
    for name, zone in zones.items():
        due = local_due(send_at, zone, t0).astimezone(ZoneInfo(zone))
        release = (due + timedelta(days=1)).replace(hour=8).astimezone(UTC)
        assert release <= sent[ids[name]] < release + SLACK, name
