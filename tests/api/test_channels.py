"""Channel credentials over the API: validated, stored encrypted, never returned; the local
outbox readable by API and page; the VAPID key and the browser scripts."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from channels.base import OutgoingEmail, OutgoingSms
from channels.credentials import CredentialsUnreadable, SecretBox
from channels.providers.local import LocalOutboxProvider
from core.db import session_scope
from models import ChannelCredential, Scope
from tests.factories import bearer

API_KEY = "SG.very-secret-sendgrid-key-0123456789"
TOKEN = "twilio-secret-auth-token-0123"


async def test_credentials_are_encrypted_and_never_returned(client, workspaces, engine):
    ws = await workspaces.create()
    r = await client.get("/v1/channels", headers=ws.admin)
    assert r.status_code == 200
    assert {c["channel"]: c["mode"] for c in r.json()["data"]} == {
        "email": "local",
        "sms": "local",
        "whatsapp": "local",
        "push": "local",
    }

    body = {"api_key": API_KEY, "from_email": "news@shop.example", "from_name": "Shop"}
    r = await client.put("/v1/channels/email/credentials", headers=ws.admin, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "provider" and r.json()["provider"] == "sendgrid"
    assert r.json()["config"] == {"from_email": "news@shop.example", "from_name": "Shop"}
    assert r.json()["secret"] == {"api_key": "…6789"}
    assert API_KEY not in r.text

    sms = {"account_sid": "AC" + "a" * 32, "auth_token": TOKEN, "from_number": "+14155550199"}
    r = await client.put("/v1/channels/sms/credentials", headers=ws.admin, json=sms)
    assert r.status_code == 200, r.text

    r = await client.get("/v1/channels", headers=ws.admin)
    assert API_KEY not in r.text and TOKEN not in r.text
    modes = {c["channel"]: c["mode"] for c in r.json()["data"]}
    assert modes == {"email": "provider", "sms": "provider", "whatsapp": "local", "push": "local"}

    async with session_scope(engine) as session:
        rows = (
            await session.execute(
                select(ChannelCredential).where(ChannelCredential.workspace_id == ws.id)
            )
        ).scalars()
        stored = {row.channel: row for row in rows}
    assert API_KEY.encode() not in stored["email"].secret
    assert TOKEN.encode() not in stored["sms"].secret
    assert API_KEY not in str(stored["email"].config) and TOKEN not in str(stored["sms"].config)

    r = await client.delete("/v1/channels/email/credentials", headers=ws.admin)
    assert r.status_code == 204
    r = await client.get("/v1/channels", headers=ws.admin)
    assert {c["channel"]: c["mode"] for c in r.json()["data"]}["email"] == "local"
    r = await client.delete("/v1/channels/email/credentials", headers=ws.admin)
    assert r.status_code == 404


async def test_credentials_are_validated_and_need_admin(client, workspaces):
    ws = await workspaces.create()
    r = await client.put(
        "/v1/channels/email/credentials",
        headers=ws.admin,
        json={"api_key": "not-a-sendgrid-key-xxxxx", "from_email": "nope"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    assert "from_email" in r.json()["error"]["message"]
    r = await client.put(
        "/v1/channels/sms/credentials",
        headers=ws.admin,
        json={"account_sid": "AC" + "a" * 32, "auth_token": TOKEN},
    )
    assert r.status_code == 422
    assert "from_number" in r.json()["error"]["message"]
    r = await client.put("/v1/channels/fax/credentials", headers=ws.admin, json={})
    assert r.status_code == 422

    writer = bearer(await ws.key(Scope.write))
    body = {"api_key": API_KEY, "from_email": "news@shop.example"}
    r = await client.put("/v1/channels/email/credentials", headers=writer, json=body)
    assert r.status_code == 403


async def test_push_key_for_browsers_and_push_delivery_switch(client, workspaces):
    ws = await workspaces.create()
    r = await client.get("/v1/push/vapid-public-key", headers=ws.tracking)
    assert r.status_code == 200
    key = r.json()["public_key"]
    assert len(key) == 87  # 65 bytes, base64url without padding
    r = await client.get("/v1/push/vapid-public-key", headers=ws.tracking)
    assert r.json()["public_key"] == key
    assert (await client.get("/v1/push/vapid-public-key")).status_code == 401

    r = await client.put(
        "/v1/channels/push/credentials",
        headers=ws.admin,
        json={"subject": "mailto:ops@shop.example"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "provider" and r.json()["vapid_public_key"] == key


async def test_outbox_lists_recorded_messages(client, workspaces, engine):
    ws, other = await workspaces.create(), await workspaces.create()
    outbox = LocalOutboxProvider(engine, ws.id)
    for i in range(3):
        await outbox.send_emails(
            [
                OutgoingEmail(
                    message_id=uuid.uuid4(),
                    to=f"c{i}@example.com",
                    from_email="shop@example.com",
                    subject=f"<script>alert({i})</script>",
                    html="<p>hi</p>",
                    text="hi",
                )
            ]
        )
    await outbox.send_sms([OutgoingSms(message_id=uuid.uuid4(), to="+14155550100", body="Hi")])
    await LocalOutboxProvider(engine, other.id).send_sms(
        [OutgoingSms(message_id=uuid.uuid4(), to="+14155550100", body="not yours")]
    )

    r = await client.get("/v1/outbox", headers=ws.admin)
    assert r.status_code == 200
    assert len(r.json()["data"]) == 4
    assert r.json()["data"][0]["channel"] == "sms"  # newest first

    r = await client.get("/v1/outbox?channel=email&limit=2", headers=ws.admin)
    page = r.json()
    assert [m["channel"] for m in page["data"]] == ["email", "email"]
    r = await client.get(f"/v1/outbox?channel=email&cursor={page['next_cursor']}", headers=ws.admin)
    assert len(r.json()["data"]) == 1 and r.json()["next_cursor"] is None
    seen = {m["to"] for m in page["data"]} | {m["to"] for m in r.json()["data"]}
    assert seen == {"c0@example.com", "c1@example.com", "c2@example.com"}

    r = await client.get("/v1/outbox?to=c1@example.com", headers=ws.admin)
    assert [m["subject"] for m in r.json()["data"]] == ["<script>alert(1)</script>"]
    assert (await client.get("/v1/outbox")).status_code == 401

    # The page holds no data and no key; it fetches /v1/outbox with the key the user types.
    r = await client.get("/outbox")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "alert" not in r.text
    r = await client.get("/outbox.js")
    assert "textContent" in r.text and 'setAttribute("sandbox", "")' in r.text


async def test_browser_scripts(client):
    r = await client.get("/waymark-push.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert "/v1/push/vapid-public-key" in r.text and "/v1/push/subscriptions" in r.text
    r = await client.get("/waymark-sw.js")
    assert r.status_code == 200 and "showNotification" in r.text


def test_secret_key_rotation_keeps_secrets_readable():
    old = SecretBox("old-secret-key-that-is-long-enough-000000000")
    token = old.encrypt("ws-1/email", {"api_key": API_KEY})
    rotated = SecretBox(
        "new-secret-key-that-is-long-enough-111111111",
        ["old-secret-key-that-is-long-enough-000000000"],
    )
    assert rotated.decrypt("ws-1/email", token) == {"api_key": API_KEY}
    new_token = rotated.rotate(token)
    assert SecretBox("new-secret-key-that-is-long-enough-111111111").decrypt(
        "ws-1/email", new_token
    )
    with pytest.raises(CredentialsUnreadable, match="WAYMARK_PREVIOUS_SECRET_KEYS"):
        SecretBox("new-secret-key-that-is-long-enough-111111111").decrypt("ws-1/email", token)
    # A blob copied into another workspace's row does not decrypt there.
    with pytest.raises(CredentialsUnreadable, match="belongs elsewhere"):
        old.decrypt("ws-2/email", token)
