"""Open pixel, click redirect, one-click unsubscribe and the preference page, end to end."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from channels import links
from channels.links import LinkKind, LinkToken
from core.db import session_scope
from models import Channel, Event, Message, MessageEvent, SourceType


async def _profile(client, ws, **fields) -> uuid.UUID:
    body = {"email": f"p-{uuid.uuid4().hex[:8]}@example.com", **fields}
    r = await client.post("/v1/profiles", headers=ws.admin, json=body)
    assert r.status_code == 201, r.text
    return uuid.UUID(r.json()["id"])


async def _message(engine, ws, profile_id: uuid.UUID, channel=Channel.email) -> uuid.UUID:
    message = Message(
        workspace_id=ws.id,
        profile_id=profile_id,
        channel=channel,
        source_type=SourceType.campaign,
        idempotency_key=f"test:{uuid.uuid4()}",
    )
    async with session_scope(engine) as session:
        session.add(message)
    return message.id


async def _events(engine, profile_id: uuid.UUID) -> list[Event]:
    async with session_scope(engine) as session:
        rows = await session.scalars(
            select(Event).where(Event.profile_id == profile_id).order_by(Event.id)
        )
        return list(rows)


async def _history(engine, message_id: uuid.UUID) -> list[str]:
    async with session_scope(engine) as session:
        rows = await session.scalars(
            select(MessageEvent.status)
            .where(MessageEvent.message_id == message_id)
            .order_by(MessageEvent.id)
        )
        return list(rows)


def _cart_email(settings, ws, profile_id: uuid.UUID, message_id: uuid.UUID, **options) -> str:
    """A one-link email (to the cart) as sent to the profile, its links signed."""
    html = '<html><body><a href="https://shop.example.com/cart">Cart</a></body></html>'
    return links.prepare_email_html(
        html,
        settings=settings,
        workspace_id=ws.id,
        message_id=message_id,
        profile_id=profile_id,
        **options,
    )


def _path(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


async def test_open_pixel_records_one_opened_email_event_per_message(
    client, workspaces, settings, engine
):
    ws = await workspaces.create()
    profile_id = await _profile(client, ws)
    message_id = await _message(engine, ws, profile_id)
    url = links.open_pixel_url(
        settings=settings, workspace_id=ws.id, message_id=message_id, profile_id=profile_id
    )

    for _ in range(3):
        r = await client.get(_path(url))
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/gif" and r.content.startswith(b"GIF89a")
        assert "no-store" in r.headers["cache-control"]

    opened = [e for e in await _events(engine, profile_id) if e.metric == "Opened Email"]
    assert len(opened) == 1
    assert opened[0].properties["message_id"] == str(message_id)
    assert await _history(engine, message_id) == ["opened"] * 3  # the ledger keeps every open

    forged = _path(url).replace(".gif", "x.gif")
    assert (await client.get(forged)).status_code == 404


async def test_click_redirects_only_to_the_signed_url(client, workspaces, settings, engine):
    ws, other = await workspaces.create(), await workspaces.create("Other shop")
    profile_id = await _profile(client, ws)
    message_id = await _message(engine, ws, profile_id)
    sent = _cart_email(settings, ws, profile_id, message_id, utm={"utm_source": "waymark"})
    url = sent.split('href="', 1)[1].split('"', 1)[0]

    r = await client.get(_path(url))
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example.com/cart?utm_source=waymark"
    clicked = [e for e in await _events(engine, profile_id) if e.metric == "Clicked Email"]
    assert len(clicked) == 1 and clicked[0].properties["url"] == r.headers["location"]
    assert await _history(engine, message_id) == ["clicked"]

    token = url.rsplit("/", 1)[1]
    body, mac = token.split(".")
    payload = links._unb64(body)
    swapped = payload.replace(b"https://shop.example.com/cart", b"https://evil.example.net/x")
    from_other = payload[:3] + other.id.bytes + payload[19:]  # A's signature, B's workspace
    signed_by_other = links.sign(
        settings.model_copy(update={"secret_key": "another-server-secret-" * 3}),
        LinkToken(
            LinkKind.click,
            Channel.email,
            ws.id,
            profile_id,
            message_id,
            "https://evil.example.net/",
        ),
    )
    for bad in (f"{links._b64(swapped)}.{mac}", f"{links._b64(from_other)}.{mac}", signed_by_other):
        r = await client.get(f"/l/c/{bad}")
        assert r.status_code == 404 and "location" not in r.headers
        assert r.json()["error"]["code"] == "not_found"
    assert len(await _events(engine, profile_id)) == 1


async def test_a_click_in_an_email_of_a_shared_copy_redirects_to_its_link(
    client, workspaces, settings, engine
):
    ws = await workspaces.create()
    profile_id = await _profile(client, ws)
    message_id = await _message(engine, ws, profile_id)
    sent = _cart_email(settings, ws, profile_id, message_id, copy=b"\x01" * links.COPY_BYTES)
    url = sent.split('href="', 1)[1].split('"', 1)[0]
    message_token, link_token = url.split("/")[-2:]
    other = links.signer(settings, ws.id).link_token(
        b"\x02" * links.COPY_BYTES, "https://x.example/"
    )

    for bad in (f"{message_token}/{other}", f"{link_token}/{message_token}", f"x/{link_token}"):
        r = await client.get(f"/l/c/{bad}")
        assert r.status_code == 404 and "location" not in r.headers
    r = await client.get(_path(url))
    assert r.status_code == 302 and r.headers["location"] == "https://shop.example.com/cart"
    clicked = [e for e in await _events(engine, profile_id) if e.metric == "Clicked Email"]
    assert len(clicked) == 1 and clicked[0].properties["url"] == r.headers["location"]
    pixel = sent.split('<img src="', 1)[1].split('"', 1)[0]
    assert (await client.get(_path(pixel))).status_code == 200
    assert await _history(engine, message_id) == ["clicked", "opened"]


async def test_one_click_unsubscribe_revokes_email_consent(client, workspaces, settings, engine):
    ws = await workspaces.create("Łąka & Co")
    profile_id = await _profile(client, ws, consents={"email": "subscribed"})
    message_id = await _message(engine, ws, profile_id)
    headers = links.list_unsubscribe_headers(
        settings=settings, workspace_id=ws.id, profile_id=profile_id, message_id=message_id
    )
    path = _path(headers["List-Unsubscribe"].strip("<>"))

    page = await client.get(path)  # a scanner following the link changes nothing
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Łąka &amp; Co" in page.text and '<form method="post">' in page.text
    consents = await client.get(f"/v1/profiles/{profile_id}/consents", headers=ws.admin)
    assert consents.json()["channels"]["email"]["state"] == "subscribed"

    for _ in range(2):  # RFC 8058 one-click, twice: idempotent
        r = await client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200 and "unsubscribed" in r.text

    history = await client.get(f"/v1/profiles/{profile_id}/consents/history", headers=ws.admin)
    email = [c for c in history.json()["data"] if c["channel"] == "email"]
    assert [(c["state"], c["source"]) for c in email] == [
        ("unsubscribed", "unsubscribe_link"),
        ("subscribed", "api"),
    ]
    events = [e for e in await _events(engine, profile_id) if e.metric == "Unsubscribed from Email"]
    assert len(events) == 1 and events[0].properties["message_id"] == str(message_id)
    assert await _history(engine, message_id) == ["unsubscribed"]

    assert (await client.post(path.replace("/l/u/", "/l/p/"))).status_code == 404


async def test_an_email_of_a_shared_copy_unsubscribes_with_its_message_token(
    client, workspaces, settings, engine
):
    """A same-copy email signs one token per message: its unsubscribe link (page and RFC 8058
    one-click) and preference page are that token's where it was signed to stand for them; a
    token altered, or of an email without those links, is 404."""
    ws = await workspaces.create()
    profile_id = await _profile(client, ws, consents={"email": "subscribed"})
    message_id = await _message(engine, ws, profile_id)
    signer = links.signer(settings, ws.id)
    grants = links.GRANTS[LinkKind.unsubscribe] | links.GRANTS[LinkKind.preferences]
    token = signer.message_token(Channel.email, profile_id, message_id, b"\x03" * 16, grants)
    bare = _path(  # the token of an email without those links
        signer.message_url(
            LinkKind.unsubscribe,
            signer.message_token(Channel.email, profile_id, message_id, b"\x03" * 16),
        )
    )
    assert (await client.post(bare)).status_code == 404
    unsubscribe = _path(signer.message_url(LinkKind.unsubscribe, token))
    preferences = _path(signer.message_url(LinkKind.preferences, token))

    assert (await client.get(unsubscribe[:-2] + "AA")).status_code == 404
    page = await client.get(preferences)
    assert page.status_code == 200 and 'value="email" checked' in page.text
    assert (await client.get(unsubscribe)).status_code == 200
    r = await client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "unsubscribed" in r.text
    consents = await client.get(f"/v1/profiles/{profile_id}/consents", headers=ws.admin)
    assert consents.json()["channels"]["email"]["state"] == "unsubscribed"
    events = [e for e in await _events(engine, profile_id) if e.metric == "Unsubscribed from Email"]
    assert len(events) == 1 and events[0].properties["message_id"] == str(message_id)
    assert await _history(engine, message_id) == ["unsubscribed"]


async def test_preference_page_round_trip(client, workspaces, settings, engine):
    ws = await workspaces.create()
    profile_id = await _profile(
        client, ws, phone="+48601234567", consents={"email": "subscribed", "sms": "subscribed"}
    )
    path = _path(
        links.preferences_url(settings=settings, workspace_id=ws.id, profile_id=profile_id)
    )

    page = await client.get(path)
    assert page.status_code == 200
    assert 'value="email" checked' in page.text and 'value="sms" checked' in page.text

    r = await client.post(path, data={"save": "1", "channel": ["email"]})  # SMS off
    assert r.status_code == 200 and "Saved." in r.text
    assert 'value="email" checked' in r.text and 'value="sms" disabled' in r.text

    r = await client.post(path, data={"save": "1"})  # email off too
    assert 'value="email">' in r.text
    r = await client.post(path, data={"save": "1", "channel": ["email", "sms"]})  # email back on
    assert 'value="email" checked' in r.text and 'value="sms" disabled' in r.text

    status = (await client.get(f"/v1/profiles/{profile_id}/consents", headers=ws.admin)).json()
    assert status["channels"]["email"]["state"] == "subscribed"
    assert status["channels"]["email"]["source"] == "form"
    assert status["channels"]["sms"]["state"] == "unsubscribed"
    assert status["channels"]["sms"]["source"] == "unsubscribe_link"
    metrics = [e.metric for e in await _events(engine, profile_id)]
    assert sorted(metrics) == ["Unsubscribed from Email", "Unsubscribed from SMS"]

    assert (await client.get(path + "A")).status_code == 404
