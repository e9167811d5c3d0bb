"""Provider webhooks: genuine signatures accepted, forged ones rejected, replays idempotent."""

from __future__ import annotations

import base64
import json
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from core.db import session_scope
from ingest.consents import ConsentUpdate, apply_consents
from models import (
    Channel,
    ConsentChange,
    ConsentSource,
    ConsentState,
    Event,
    Message,
    MessageEvent,
    Profile,
    Suppression,
)
from models.base import utcnow

TWILIO_TOKEN = "twilio-auth-token-0123456789abcdef"


def _keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def _signed(private: ec.EllipticCurvePrivateKey, events: list[dict]) -> tuple[bytes, dict]:
    """A request as SendGrid signs it: ECDSA SHA-256 over timestamp + body, base64 DER."""
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


async def _setup(client, engine, workspaces, **settings):
    ws = await workspaces.create()
    response = await client.patch("/v1/workspace/channel-settings", json=settings, headers=ws.admin)
    assert response.status_code == 200, response.text
    async with session_scope(engine) as session:
        profile = Profile(workspace_id=ws.id, email="ada@example.com", phone="+48600100200")
        session.add(profile)
        await session.flush()
        await apply_consents(
            session,
            ws.id,
            [
                ConsentUpdate(profile.id, c, ConsentState.subscribed, ConsentSource.api)
                for c in (Channel.email, Channel.sms)
            ],
        )
    return ws, profile


async def _message(engine, ws, profile, channel=Channel.email, **values) -> uuid.UUID:
    async with session_scope(engine) as session:
        to = profile.email if channel == Channel.email else profile.phone
        values = {"status": "sent", "sent_at": utcnow(), "to_address": to, **values}
        row = Message(
            workspace_id=ws.id,
            profile_id=profile.id,
            channel=channel,
            source_type="campaign",
            idempotency_key=str(uuid.uuid4()),
            **values,
        )
        session.add(row)
    return row.id


async def _rows(engine, query) -> list:
    async with session_scope(engine) as session:
        return list((await session.execute(query)).scalars())


async def test_sendgrid_events_update_the_ledger_and_profile(client, engine, workspaces):
    private, public = _keys()
    ws, profile = await _setup(client, engine, workspaces, sendgrid_webhook_public_key=public)
    message_id = await _message(engine, ws, profile, provider_message_id="sgmsg-1")
    base = {"email": "ada@example.com", "timestamp": int(time.time())}
    events = [
        {**base, "event": "delivered", "sg_event_id": "e1", "waymark_message_id": str(message_id)},
        {**base, "event": "open", "sg_event_id": "e2", "waymark_message_id": str(message_id)},
        # Found by sg_message_id alone (no custom arg).
        {
            **base,
            "event": "click",
            "sg_event_id": "e3",
            "sg_message_id": "sgmsg-1.filter0001",
            "url": "https://shop.example.com/sale",
        },
    ]
    body, headers = _signed(private, events)

    response = await client.post(f"/webhooks/sendgrid/{ws.id}", content=body, headers=headers)
    replay = await client.post(f"/webhooks/sendgrid/{ws.id}", content=body, headers=headers)

    assert response.status_code == replay.status_code == 204
    message = (await _rows(engine, select(Message).where(Message.id == message_id)))[0]
    assert message.status == "clicked"
    assert message.delivered_at and message.opened_at and message.clicked_at
    history = await _rows(
        engine,
        select(MessageEvent.status)
        .where(MessageEvent.message_id == message_id)
        .order_by(MessageEvent.id),
    )
    assert history == ["delivered", "opened", "clicked"]  # the replay added nothing
    metrics = await _rows(engine, select(Event.metric).where(Event.profile_id == profile.id))
    assert sorted(metrics) == ["Clicked Email", "Opened Email"]


async def test_a_sendgrid_event_without_its_custom_arg_finds_its_message_in_a_batch(
    client, engine, workspaces
):
    """A batched request's recipients share its id (`sg_message_id`'s prefix): an event that
    lacks Waymark's message id is matched by that id and its recipient; one that matches
    several messages or none changes nothing (and is no 500)."""
    private, public = _keys()
    ws, ada = await _setup(client, engine, workspaces, sendgrid_webhook_public_key=public)
    async with session_scope(engine) as session:
        bob = Profile(workspace_id=ws.id, email="bob@example.com")
        session.add(bob)
    ids = [await _message(engine, ws, p, provider_message_id="sgbatch") for p in (ada, bob)]
    twice = await _message(engine, ws, ada, provider_message_id="sgbatch")  # Ada again
    base = {"timestamp": int(time.time()), "sg_message_id": "sgbatch.filter0001"}
    events = [
        {**base, "email": "BOB@example.com", "event": "delivered", "sg_event_id": "b1"},
        {**base, "email": "ada@example.com", "event": "delivered", "sg_event_id": "a1"},
        {**base, "email": "eve@example.com", "event": "delivered", "sg_event_id": "e1"},
    ]
    body, headers = _signed(private, events)

    response = await client.post(f"/webhooks/sendgrid/{ws.id}", content=body, headers=headers)

    assert response.status_code == 204
    statuses = {
        m.id: m.status
        for m in await _rows(engine, select(Message).where(Message.workspace_id == ws.id))
    }
    assert statuses == {ids[0]: "sent", ids[1]: "delivered", twice: "sent"}


async def test_sendgrid_forged_or_unsigned_requests_are_rejected(client, engine, workspaces):
    private, public = _keys()
    forger, _ = _keys()
    ws, profile = await _setup(client, engine, workspaces, sendgrid_webhook_public_key=public)
    message_id = await _message(engine, ws, profile)
    events = [{"event": "spamreport", "email": "ada@example.com", "sg_event_id": "x"}]
    events[0]["waymark_message_id"] = str(message_id)

    forged_body, forged_headers = _signed(forger, events)
    genuine_body, genuine_headers = _signed(private, events)
    tampered = genuine_body.replace(b"spamreport", b"delivered ")
    url = f"/webhooks/sendgrid/{ws.id}"

    assert (await client.post(url, content=forged_body, headers=forged_headers)).status_code == 401
    assert (await client.post(url, content=tampered, headers=genuine_headers)).status_code == 401
    unsigned = await client.post(url, content=genuine_body)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "invalid_signature"
    other = await workspaces.create()  # no key configured there
    response = await client.post(
        f"/webhooks/sendgrid/{other.id}", content=genuine_body, headers=genuine_headers
    )
    assert response.status_code == 401
    assert await _rows(engine, select(MessageEvent)) == []
    assert await _rows(engine, select(Suppression)) == []


async def test_sendgrid_bounce_spam_and_unsubscribe(client, engine, workspaces):
    private, public = _keys()
    ws, profile = await _setup(client, engine, workspaces, sendgrid_webhook_public_key=public)
    bounced = await _message(engine, ws, profile)
    blocked = await _message(engine, ws, profile)
    unsubscribed = await _message(engine, ws, profile)
    events = [
        {
            "event": "bounce",
            "type": "blocked",
            "email": "ada@example.com",
            "sg_event_id": "b0",
            "waymark_message_id": str(blocked),
        },
        {
            "event": "unsubscribe",
            "email": "ada@example.com",
            "sg_event_id": "u1",
            "waymark_message_id": str(unsubscribed),
        },
    ]
    body, headers = _signed(private, events)
    assert (
        await client.post(f"/webhooks/sendgrid/{ws.id}", content=body, headers=headers)
    ).status_code == 204
    # A block is not a hard bounce: no suppression.
    assert await _rows(engine, select(Suppression)) == []
    changes = await _rows(
        engine, select(ConsentChange).where(ConsentChange.channel == Channel.email)
    )
    assert [(c.state, c.source) for c in changes][-1] == ("unsubscribed", "unsubscribe_link")

    events = [
        {
            "event": "bounce",
            "type": "bounce",
            "email": "Ada@Example.com",
            "sg_event_id": "b1",
            "waymark_message_id": str(bounced),
        }
    ]
    body, headers = _signed(private, events)
    assert (
        await client.post(f"/webhooks/sendgrid/{ws.id}", content=body, headers=headers)
    ).status_code == 204
    suppressions = await _rows(engine, select(Suppression))
    assert [(s.channel, s.address, s.reason) for s in suppressions] == [
        ("email", "ada@example.com", "hard_bounce")
    ]
    message = (await _rows(engine, select(Message).where(Message.id == bounced)))[0]
    assert message.status == "bounced" and message.bounced_at is not None
    metrics = await _rows(engine, select(Event.metric).where(Event.profile_id == profile.id))
    assert sorted(metrics) == ["Bounced Email", "Bounced Email", "Unsubscribed from Email"]


def _twilio(path: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> dict[str, str]:
    url = "http://127.0.0.1:8000" + path  # settings.public_url in tests
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


async def test_twilio_status_callbacks(client, engine, workspaces):
    ws, profile = await _setup(client, engine, workspaces, twilio_auth_token=TWILIO_TOKEN)
    message_id = await _message(engine, ws, profile, Channel.sms)
    path = f"/webhooks/twilio/{ws.id}/status?wm={message_id}"
    delivered = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": profile.phone}

    ok = await client.post(path, data=delivered, headers=_twilio(path, delivered))
    replay = await client.post(path, data=delivered, headers=_twilio(path, delivered))
    wrong = await client.post(path, data=delivered, headers=_twilio(path, delivered, "nope" * 8))
    tampered = {**delivered, "MessageStatus": "failed"}
    forged = await client.post(path, data=tampered, headers=_twilio(path, delivered))

    assert ok.status_code == replay.status_code == 204
    assert wrong.status_code == forged.status_code == 401
    message = (await _rows(engine, select(Message).where(Message.id == message_id)))[0]
    assert (message.status, message.provider_message_id) == ("delivered", "SM1")
    history = await _rows(
        engine, select(MessageEvent.status).where(MessageEvent.message_id == message_id)
    )
    assert history == ["delivered"]

    # A permanent error (unknown destination) suppresses the number.
    other = await _message(engine, ws, profile, Channel.sms)
    path = f"/webhooks/twilio/{ws.id}/status?wm={other}"
    failed = {"MessageSid": "SM2", "MessageStatus": "undelivered", "ErrorCode": "30005"}
    assert (await client.post(path, data=failed, headers=_twilio(path, failed))).status_code == 204
    suppressions = await _rows(engine, select(Suppression))
    assert [(s.channel, s.address, s.reason) for s in suppressions] == [
        ("sms", "+48600100200", "invalid_number")
    ]
    metrics = await _rows(engine, select(Event.metric).where(Event.profile_id == profile.id))
    assert metrics == ["Failed to Deliver SMS"]


async def test_twilio_inbound_keywords_change_consent(client, engine, workspaces):
    ws, profile = await _setup(client, engine, workspaces, twilio_auth_token=TWILIO_TOKEN)
    await _message(engine, ws, profile, Channel.sms)
    path = f"/webhooks/twilio/{ws.id}/inbound"

    async def inbound(body: str, sid: str, sender: str = "+48600100200"):
        params = {"MessageSid": sid, "From": sender, "To": "+48500000000", "Body": body}
        return await client.post(path, data=params, headers=_twilio(path, params))

    stop = await inbound("Stop please", "SMa")
    assert stop.status_code == 200 and "<Response></Response>" in stop.text
    assert (await inbound("Stop please", "SMa")).status_code == 200  # replay
    assert (await inbound("JOIN", "SMb")).status_code == 200
    assert (await inbound("what are your hours?", "SMc")).status_code == 200
    forged = await client.post(
        path, data={"From": "+48600100200", "Body": "STOP"}, headers={"X-Twilio-Signature": "x"}
    )
    assert forged.status_code == 401

    changes = await _rows(
        engine,
        select(ConsentChange)
        .where(ConsentChange.channel == Channel.sms, ConsentChange.source == "keyword")
        .order_by(ConsentChange.id),
    )
    assert [c.state for c in changes] == ["unsubscribed", "subscribed"]
    replies = await _rows(
        engine,
        select(Event).where(Event.metric == "Replied to SMS").order_by(Event.id),
    )
    assert [r.properties["keyword"] for r in replies] == ["STOP", "JOIN", "WHAT"]
    assert replies[2].properties["body"] == "what are your hours?"
    unsubscribed = await _rows(engine, select(Event).where(Event.metric == "Unsubscribed from SMS"))
    assert len(unsubscribed) == 1
    message = (await _rows(engine, select(Message)))[0]
    assert message.status == "unsubscribed"

    # WhatsApp, from a number nobody has yet: a profile is created, WhatsApp consent granted.
    assert (await inbound("START", "SMd", sender="whatsapp:+48600999888")).status_code == 200
    created = await _rows(engine, select(Profile).where(Profile.phone == "+48600999888"))
    assert len(created) == 1
    consent = await _rows(
        engine,
        select(ConsentChange.state).where(
            ConsentChange.profile_id == created[0].id, ConsentChange.channel == Channel.whatsapp
        ),
    )
    assert consent == ["subscribed"]


async def test_channel_settings_api(client, workspaces):
    ws = await workspaces.create(timezone="Europe/Warsaw")
    response = await client.get("/v1/workspace/channel-settings", headers=ws.admin)
    body = response.json()
    assert body["smart_sending_hours"] == {"email": 16, "sms": 24, "push": 24, "whatsapp": 24}
    assert body["quiet_hours"] == {"enabled": True, "start": "21:00", "end": "08:00"}
    assert body["effective_timezone"] == "Europe/Warsaw"

    response = await client.patch(
        "/v1/workspace/channel-settings",
        json={"smart_sending_hours": {"email": 8}, "twilio_auth_token": TWILIO_TOKEN},
        headers=ws.admin,
    )
    body = response.json()
    assert body["smart_sending_hours"]["email"] == 8 and body["smart_sending_hours"]["sms"] == 24
    assert body["twilio_auth_token_set"] is True and "twilio_auth_token" not in body

    bad = await client.patch(
        "/v1/workspace/channel-settings",
        json={"sendgrid_webhook_public_key": "not a key", "timezone": "Mars/Base"},
        headers=ws.admin,
    )
    assert bad.status_code == 422
    assert "sendgrid_webhook_public_key" in bad.json()["error"]["message"]


async def test_sendgrid_events_are_applied_in_message_id_order(monkeypatch):
    """One webhook's events lock their messages' rows in id order, as the send path's batch
    statements do (no deadlock between the two); a message's own events keep their order."""
    from channels import webhooks_sendgrid

    ids = sorted(uuid.uuid4() for _ in range(5))
    events = [
        {"event": kind, "waymark_message_id": str(mid)}
        for mid in reversed(ids)
        for kind in ("processed", "delivered")
    ]
    events.insert(3, {"event": "bounce", "email": "nobody@example.com"})  # no Waymark id
    applied = []

    async def record(session, workspace_id, event):
        applied.append((event.get("waymark_message_id"), event["event"]))
        return True

    monkeypatch.setattr(webhooks_sendgrid, "apply_event", record)
    assert await webhooks_sendgrid.apply_events(None, uuid.uuid4(), [*events, "junk"]) == 11
    expected = [(str(mid), kind) for mid in ids for kind in ("processed", "delivered")]
    assert applied == [*expected, (None, "bounce")]
