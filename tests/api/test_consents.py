"""Consents per channel with their history, and suppressed addresses."""

from __future__ import annotations

from models import Scope
from tests.factories import bearer


async def _profile(client, ws, **fields) -> dict:
    r = await client.post("/v1/profiles", headers=ws.admin, json=fields)
    assert r.status_code == 201, r.text
    return r.json()


async def _consents(client, ws, profile_id: str) -> dict:
    r = await client.get(f"/v1/profiles/{profile_id}/consents", headers=ws.admin)
    assert r.status_code == 200, r.text
    return r.json()["channels"]


async def test_consents_start_as_never_and_change_with_history(client, workspaces):
    ws = await workspaces.create()
    profile = await _profile(
        client,
        ws,
        email="kasia@example.com",
        phone="+48601234567",
        consents={"email": "subscribed"},
    )
    channels = await _consents(client, ws, profile["id"])
    assert set(channels) == {"email", "sms", "whatsapp", "push"}
    assert channels["email"]["state"] == "subscribed"
    assert channels["email"]["source"] == "api"
    assert channels["email"]["updated_at"] is not None
    assert channels["email"]["can_receive_marketing"] is True
    for channel in ("sms", "whatsapp", "push"):
        assert channels[channel]["state"] == "never"
        assert channels[channel]["source"] is None
        assert channels[channel]["can_receive_marketing"] is False

    path = f"/v1/profiles/{profile['id']}/consents"
    r = await client.put(f"{path}/sms", headers=ws.admin, json={"state": "subscribed"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "subscribed"
    assert r.json()["address"] == "+48601234567"
    assert r.json()["can_receive_marketing"] is True
    r = await client.put(
        f"{path}/sms", headers=ws.admin, json={"state": "unsubscribed", "source": "keyword"}
    )
    assert r.json()["state"] == "unsubscribed"
    assert r.json()["source"] == "keyword"
    r = await client.put(
        f"{path}/email",
        headers=ws.admin,
        json={"state": "unsubscribed", "source": "unsubscribe_link"},
    )
    assert r.status_code == 200
    # Setting the state a profile already has is not a change.
    r = await client.put(
        f"{path}/email",
        headers=ws.admin,
        json={"state": "unsubscribed", "source": "unsubscribe_link"},
    )
    assert r.status_code == 200

    r = await client.get(f"{path}/history", headers=ws.admin)
    assert r.status_code == 200
    history = [(c["channel"], c["state"], c["source"]) for c in r.json()["data"]]
    assert history == [
        ("email", "unsubscribed", "unsubscribe_link"),
        ("sms", "unsubscribed", "keyword"),
        ("sms", "subscribed", "api"),
        ("email", "subscribed", "api"),
    ]
    times = [c["occurred_at"] for c in r.json()["data"]]
    assert times == sorted(times, reverse=True)
    r = await client.get(f"{path}/history", headers=ws.admin, params={"channel": "sms"})
    assert [c["state"] for c in r.json()["data"]] == ["unsubscribed", "subscribed"]


async def test_consent_input_is_validated(client, workspaces):
    ws = await workspaces.create()
    profile = await _profile(client, ws)
    path = f"/v1/profiles/{profile['id']}/consents"
    r = await client.put(f"{path}/fax", headers=ws.admin, json={"state": "subscribed"})
    assert r.status_code == 422
    r = await client.put(f"{path}/email", headers=ws.admin, json={"state": "maybe"})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == "body.state"
    r = await client.put(
        f"{path}/email", headers=ws.admin, json={"state": "subscribed", "source": "rumour"}
    )
    assert r.status_code == 422
    reader = bearer(await ws.key(Scope.read))
    r = await client.put(f"{path}/email", headers=reader, json={"state": "subscribed"})
    assert r.status_code == 403
    assert (await client.get(f"{path}/history", headers=reader)).json()["data"] == []


async def test_suppression_blocks_a_subscribed_address(client, workspaces):
    ws = await workspaces.create()
    profile = await _profile(
        client,
        ws,
        email="Bounce@Example.com",
        phone="+48601234567",
        consents={"email": "subscribed", "sms": "subscribed"},
    )
    r = await client.post(
        "/v1/suppressions",
        headers=ws.admin,
        json={"channel": "email", "address": " BOUNCE@example.COM", "reason": "hard_bounce"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["address"] == "bounce@example.com"
    r = await client.post(
        "/v1/suppressions",
        headers=ws.admin,
        json={"channel": "email", "address": "bounce@example.com", "reason": "manual"},
    )
    assert r.status_code == 200  # already suppressed: the first reason stays
    assert r.json()["reason"] == "hard_bounce"

    channels = await _consents(client, ws, profile["id"])
    assert channels["email"]["state"] == "subscribed"
    assert channels["email"]["suppressed"] is True
    assert channels["email"]["suppression_reason"] == "hard_bounce"
    assert channels["email"]["can_receive_marketing"] is False
    assert channels["sms"]["suppressed"] is False
    assert channels["sms"]["can_receive_marketing"] is True

    r = await client.post(
        "/v1/suppressions",
        headers=ws.admin,
        json={"channel": "sms", "address": "+48 601 234 567", "reason": "invalid_number"},
    )
    assert r.json()["address"] == "+48601234567"
    assert (await _consents(client, ws, profile["id"]))["sms"]["suppressed"] is True
    assert (await _consents(client, ws, profile["id"]))["whatsapp"]["suppressed"] is False

    r = await client.delete("/v1/suppressions/email/BOUNCE@example.com", headers=ws.admin)
    assert r.status_code == 204
    assert (await _consents(client, ws, profile["id"]))["email"]["can_receive_marketing"] is True
    r = await client.delete("/v1/suppressions/email/bounce@example.com", headers=ws.admin)
    assert r.status_code == 404
    r = await client.delete("/v1/suppressions/sms/+48 601 234 567", headers=ws.admin)
    assert r.status_code == 204


async def test_suppression_list_pages_and_filters(client, workspaces):
    ws = await workspaces.create()
    for i in range(5):
        r = await client.post(
            "/v1/suppressions",
            headers=ws.admin,
            json={"channel": "email", "address": f"u{i}@example.com", "reason": "spam_complaint"},
        )
        assert r.status_code == 201
    await client.post(
        "/v1/suppressions", headers=ws.admin, json={"channel": "sms", "address": "+48601234567"}
    )
    other = await workspaces.create()
    await client.post(
        "/v1/suppressions",
        headers=other.admin,
        json={"channel": "email", "address": "elsewhere@example.com"},
    )

    reader = bearer(await ws.key(Scope.read))
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/v1/suppressions", headers=reader, params=params)).json()
        seen += [(s["channel"], s["address"]) for s in body["data"]]
        if not (cursor := body["next_cursor"]):
            break
    assert seen == [("email", f"u{i}@example.com") for i in range(5)] + [("sms", "+48601234567")]

    r = await client.get("/v1/suppressions", headers=reader, params={"channel": "sms"})
    assert [s["address"] for s in r.json()["data"]] == ["+48601234567"]
    r = await client.post(
        "/v1/suppressions", headers=reader, json={"channel": "sms", "address": "+48601234568"}
    )
    assert r.status_code == 403


async def test_suppression_addresses_are_validated(client, workspaces):
    ws = await workspaces.create()
    for body in (
        {"channel": "email", "address": "no-at-sign"},
        {"channel": "sms", "address": "12"},
        {"channel": "push", "address": "https://push.example/x"},
    ):
        r = await client.post("/v1/suppressions", headers=ws.admin, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["loc"] == "body.address"
    r = await client.get("/v1/suppressions", headers=ws.admin)
    assert r.json()["data"] == []
