"""Campaign metrics through the API: counts from the ledger (sent, skipped by reason, engagement),
recipients per message / path (distinct) / campaign, and the progress of a message mid-send.

The send itself is the real one, without Temporal: the campaign activities snapshot the audience
and send batch by batch into the local outbox, as the workflow would call them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

from campaigns.activities import CampaignActivities, SendBatchInput, SnapshotAudienceInput
from channels import ledger
from core.db import session_scope
from core.settings import Settings
from models import MessageStatus

LATER = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)


@pytest.fixture
def activities(database_url: str, engine) -> CampaignActivities:
    settings = Settings(
        database_url=database_url,
        public_url="https://wm.example.com",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )
    return CampaignActivities(engine, settings)


async def _post(client, url: str, body: dict, headers: dict) -> dict:
    r = await client.post(url, json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


async def _campaign(client, ws, emails: list[str], no_consent: list[str]) -> tuple[dict, dict]:
    """A campaign whose first path includes every profile; returns (campaign, email template)."""
    for email in emails:
        consents = {} if email in no_consent else {"consents": {"email": "subscribed"}}
        await _post(client, "/v1/profiles", {"email": email, **consents}, ws.admin)
    everyone = await _post(client, "/v1/lists", {"name": "Everyone"}, ws.admin)
    await _post(client, f"/v1/lists/{everyone['id']}/members", {"emails": emails}, ws.admin)
    template = await _post(
        client,
        "/v1/templates",
        {"name": "E", "channel": "email", "subject": "Hi", "html": "<p>Sale</p>"},
        ws.admin,
    )
    campaign = await _post(
        client,
        "/v1/campaigns",
        {"name": "Spring", "path": {"name": "All", "include_lists": [everyone["id"]]}},
        ws.admin,
    )
    return campaign, template


async def _message(client, ws, campaign: dict, path_id: str, template: dict, **body) -> dict:
    payload = {
        "name": "Launch",
        "channel": "email",
        "template_id": template["id"],
        "sender": {"from_email": "shop@example.com"},
        "send_at": LATER.isoformat(),
        "smart_sending": False,
        **body,
    }
    url = f"/v1/campaigns/{campaign['id']}/paths/{path_id}/messages"
    return await _post(client, url, payload, ws.admin)


async def _start(engine, activities: CampaignActivities, ws, message: dict, now: datetime):
    """What the workflow does at send time: the message is live, its audience snapshotted."""
    async with session_scope(engine) as session:
        await session.execute(
            text("UPDATE campaign_messages SET status = 'scheduled' WHERE id = :id"),
            {"id": message["id"]},
        )
    ids = {"workspace_id": ws.id, "message_id": uuid.UUID(message["id"])}
    return await ActivityEnvironment().run(
        activities.snapshot_audience, SnapshotAudienceInput(**ids, now=now)
    )


async def _send_batch(activities: CampaignActivities, ws, message: dict, batch_no: int):
    batch = SendBatchInput(
        workspace_id=ws.id, message_id=uuid.UUID(message["id"]), batch_no=batch_no
    )
    return await ActivityEnvironment().run(activities.send_batch, batch)


async def test_counts_progress_and_distinct_recipients(client, workspaces, engine, activities):
    ws = await workspaces.create()
    emails = [f"p{i}@example.com" for i in range(6)]
    campaign, template = await _campaign(client, ws, emails, no_consent=["p5@example.com"])
    cid, path = campaign["id"], campaign["paths"][0]["id"]
    throttled = await _message(
        client, ws, campaign, path, template, strategy="throttled", throttle_percent=50
    )
    second = await _message(client, ws, campaign, path, template, name="Reminder")
    other_path = await _post(client, f"/v1/campaigns/{cid}/paths", {"name": "Nobody"}, ws.admin)
    draft = await _message(client, ws, campaign, other_path["id"], template, name="Draft")
    url = f"/v1/campaigns/{cid}"

    # Before anything is sent: zero figures, nothing in progress.
    r = await client.get(f"{url}/messages/{draft['id']}/progress", headers=ws.admin)
    assert r.status_code == 200, r.text
    assert (r.json()["recipients"], r.json()["percent"], r.json()["status"]) == (0, 0.0, "draft")

    # The throttled message: 6 recipients in 2 hourly waves of 3 (batch 0, batch 1).
    now = datetime.now(UTC)
    snap = await _start(engine, activities, ws, throttled, now)
    assert [g.recipients for g in snap.groups] == [3, 3]
    first = await _send_batch(activities, ws, throttled, 0)
    assert first.recipients == 3

    r = await client.get(f"{url}/messages/{throttled['id']}/progress", headers=ws.admin)
    progress = r.json()
    assert progress["status"] == "sending"
    assert (progress["recipients"], progress["done"], progress["remaining"]) == (6, 3, 3)
    assert progress["percent"] == 50.0
    assert (progress["waves"], progress["current_wave"]) == (2, 2)
    assert datetime.fromisoformat(progress["next_due_at"]) == snap.groups[1].at

    await _send_batch(activities, ws, throttled, 1)
    await _start(engine, activities, ws, second, now)
    await _send_batch(activities, ws, second, 0)

    # Engagement on the throttled message's sends, as webhooks and tracking record it.
    async with session_scope(engine) as session:
        sent = list(
            (
                await session.execute(
                    text(
                        "SELECT id FROM messages WHERE campaign_message_id = :m "
                        "AND status = 'sent' ORDER BY id"
                    ),
                    {"m": throttled["id"]},
                )
            ).scalars()
        )
        assert len(sent) == 5
        at = datetime.now(UTC)
        for kind, message_id in [
            ("open", sent[0]),
            ("click", sent[0]),
            ("open", sent[1]),
            ("unsubscribe", sent[2]),
        ]:
            await ledger.record_engagement(session, ws.id, message_id, kind, at)
        for status, message_id in [
            (MessageStatus.delivered, sent[0]),
            (MessageStatus.delivered, sent[1]),
            (MessageStatus.bounced, sent[3]),
        ]:
            await ledger.record_provider_event(
                session, workspace_id=ws.id, message_id=message_id, status=status, occurred_at=at
            )

    r = await client.get(f"{url}/metrics", headers=ws.admin)
    assert r.status_code == 200, r.text
    metrics = r.json()
    by_name = {m["name"]: m for p in metrics["paths"] for m in p["messages"]}
    one = by_name["Launch"]
    assert {k: one[k] for k in ("recipients", "sent", "failed", "delivered", "opened")} == {
        "recipients": 6,
        "sent": 5,
        "failed": 0,
        "delivered": 2,
        "opened": 2,
    }
    assert (one["clicked"], one["bounced"], one["unsubscribed"]) == (1, 1, 1)
    assert one["skipped"] == {"total": 1, "reasons": {"no_consent": 1}}
    assert one["progress"]["percent"] == 100.0 and one["progress"]["current_wave"] == 2
    assert one["status"] == "sending"  # the workflow's finish step records `sent`

    # The path: recipients are distinct profiles (6), the rest adds up its two messages.
    first_path, nobody = metrics["paths"]
    assert [m["name"] for m in first_path["messages"]] == ["Launch", "Reminder"]
    assert (first_path["recipients"], first_path["sent"], first_path["opened"]) == (6, 10, 2)
    assert first_path["skipped"] == {"total": 2, "reasons": {"no_consent": 2}}
    assert (nobody["recipients"], nobody["sent"], nobody["messages"][0]["status"]) == (
        0,
        0,
        "draft",
    )
    assert (metrics["recipients"], metrics["sent"], metrics["unsubscribed"]) == (6, 10, 1)

    r = await client.get(f"{url}/paths/{path}/metrics", headers=ws.admin)
    assert r.status_code == 200 and r.json() == first_path
    r = await client.get(f"{url}/messages/{second['id']}/metrics", headers=ws.admin)
    assert r.status_code == 200 and r.json() == by_name["Reminder"]


@pytest.mark.parametrize(
    "tail",
    [
        "/metrics",
        "/paths/{path}/metrics",
        "/messages/{message}/metrics",
        "/messages/{message}/progress",
    ],
)
async def test_other_workspace_and_unknown_ids_are_404(client, workspaces, activities, tail):
    ws, other = await workspaces.create(), await workspaces.create("Other")
    campaign, template = await _campaign(client, ws, ["a@example.com"], no_consent=[])
    path = campaign["paths"][0]["id"]
    message = await _message(client, ws, campaign, path, template)
    url = f"/v1/campaigns/{campaign['id']}" + tail.format(path=path, message=message["id"])
    assert (await client.get(url, headers=ws.admin)).status_code == 200
    r = await client.get(url, headers=other.admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    unknown = f"/v1/campaigns/{campaign['id']}" + tail.format(
        path=uuid.uuid4(), message=uuid.uuid4()
    )
    if unknown != url:
        assert (await client.get(unknown, headers=ws.admin)).status_code == 404
    assert (await client.get(url)).status_code == 401  # no key
