"""Web push against a local push service that checks what a real one checks: the VAPID JWT
(ES256 under the workspace's public key, `aud` = the endpoint's origin, `exp` ahead, `sub`) and
a payload that decrypts (aes128gcm, RFC 8291) with the browser's subscription keys."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from channels import vapid
from channels.base import OutgoingPush, SendStatus
from channels.credentials import SecretBox
from channels.providers.webpush import MAX_TTL_SECONDS, WebPushProvider
from core.db import session_scope
from models import Profile, PushSubscription

SUBJECT = "mailto:ops@shop.example"
BOX = SecretBox("test-secret-key-that-is-long-enough-0123456789")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Browser:
    """What a browser makes when it subscribes: a P-256 key pair and a 16-byte auth secret."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.p256dh = b64url(point)

    def decrypt(self, body: bytes) -> dict:
        plain = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


async def setup(engine, workspaces, sink):
    ws = await workspaces.create()
    browser = Browser()
    async with session_scope(engine) as session:
        public_key = await vapid.ensure_keys(session, BOX, ws.id)
        pem = await vapid.private_pem(session, BOX, ws.id)
        profile = Profile(workspace_id=ws.id, external_id="u-1")
        session.add(profile)
        await session.flush()
        subscription = PushSubscription(
            workspace_id=ws.id,
            profile_id=profile.id,
            endpoint=f"{sink.url}/push/{uuid.uuid4()}",
            p256dh=browser.p256dh,
            auth=b64url(browser.auth),
        )
        session.add(subscription)
    provider = WebPushProvider(pem, SUBJECT, engine, retry_delays=(0.01, 0.01))
    return ws, browser, public_key, subscription, provider


def push(subscription, **kw) -> OutgoingPush:
    fields = {
        "message_id": uuid.uuid4(),
        "subscription_id": subscription.id,
        "endpoint": subscription.endpoint,
        "p256dh": subscription.p256dh,
        "auth": subscription.auth,
        "payload": {
            "title": "Still thinking?",
            "body": "Your cart: 2 items 🛒",
            "url": "https://shop.example/c",
        },
    }
    return OutgoingPush(**(fields | kw))


async def test_push_is_signed_and_decrypts(engine, workspaces, sink):
    ws, browser, public_key, subscription, provider = await setup(engine, workspaces, sink)
    sink.default = (201, {"Location": f"{sink.url}/m/1"}, b"")
    message = push(subscription, ttl_seconds=100 * 3600, urgency="high")
    [result] = await provider.send_push([message])
    assert result.status is SendStatus.sent
    assert result.provider_message_id == f"{sink.url}/m/1"

    [(method, path, raw_headers, body)] = sink.requests
    headers = {k.lower(): v for k, v in raw_headers.items()}
    assert (method, path) == ("POST", subscription.endpoint.removeprefix(sink.url))
    assert headers["ttl"] == str(MAX_TTL_SECONDS)  # 100 h clamped to 72 h
    assert headers["urgency"] == "high"
    assert headers["content-encoding"] == "aes128gcm"

    # Authorization: vapid t=<JWT>, k=<the workspace's public key>
    scheme, params = headers["authorization"].split(" ", 1)
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == public_key
    verifying_key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), unb64url(public_key)
    )
    claims = jwt.decode(fields["t"], verifying_key, algorithms=["ES256"], audience=sink.url)
    assert claims["sub"] == SUBJECT
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600

    assert browser.decrypt(body) == message.payload


async def test_gone_subscription_is_deleted(engine, workspaces, sink):
    ws, _, _, subscription, provider = await setup(engine, workspaces, sink)
    sink.answers = [(410, {}, b"push subscription has unsubscribed or expired.")]
    [result] = await provider.send_push([push(subscription)])
    assert result.status is SendStatus.failed
    assert result.error == "subscription expired"
    async with session_scope(engine) as session:
        left = (
            await session.execute(
                select(PushSubscription.id).where(PushSubscription.workspace_id == ws.id)
            )
        ).all()
    assert left == []


async def test_429_is_retried_and_400_fails_without_deleting(engine, workspaces, sink):
    ws, _, _, subscription, provider = await setup(engine, workspaces, sink)
    sink.answers = [(429, {"Retry-After": "0"}, b""), (201, {}, b""), (400, {}, b"bad payload")]
    first, second = push(subscription), push(subscription)
    [ok] = await provider.send_push([first])
    [bad] = await provider.send_push([second])
    assert ok.status is SendStatus.sent
    assert len(sink.requests) == 3
    assert bad.status is SendStatus.failed and "400" in bad.error
    async with session_scope(engine) as session:
        assert await session.get(PushSubscription, subscription.id) is not None


async def test_rotating_vapid_keys_drops_subscriptions(engine, workspaces, sink):
    ws, _, public_key, subscription, _ = await setup(engine, workspaces, sink)
    async with session_scope(engine) as session:
        assert await vapid.ensure_keys(session, BOX, ws.id) == public_key  # stable
        rotated = await vapid.ensure_keys(session, BOX, ws.id, rotate=True)
    assert rotated != public_key and len(unb64url(rotated)) == 65
    async with session_scope(engine) as session:
        assert await session.get(PushSubscription, subscription.id) is None
