"""Web-push subscriptions: a browser registers with the public write key."""

from __future__ import annotations

import base64
import hashlib

from models import Scope
from tests.factories import bearer


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def subscription(seed: str, endpoint: str | None = None) -> dict:
    """A PushSubscription.toJSON() as a browser gives it (keys derived from `seed`)."""
    digest = hashlib.sha512(seed.encode()).digest()
    return {
        "endpoint": endpoint or f"https://fcm.googleapis.com/fcm/send/{seed}",
        "expirationTime": None,
        "keys": {"p256dh": _b64url(b"\x04" + digest[:64]), "auth": _b64url(digest[:16])},
    }


async def _subscriptions(client, ws, profile_id: str) -> list[dict]:
    r = await client.get(f"/v1/profiles/{profile_id}/push-subscriptions", headers=ws.admin)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_browser_subscribes_with_public_key(client, workspaces):
    ws = await workspaces.create()
    profile = (
        await client.post("/v1/profiles", headers=ws.admin, json={"external_id": "u-1"})
    ).json()
    r = await client.post(
        "/v1/push/subscriptions",
        headers=ws.tracking | {"User-Agent": "Firefox/130"},
        json={"userId": "u-1", "subscription": subscription("one")},
    )
    assert r.status_code == 201, r.text
    assert r.json()["endpoint"] == subscription("one")["endpoint"]
    assert "profile_id" not in r.json()  # a browser learns nothing about the profile
    [stored] = await _subscriptions(client, ws, profile["id"])
    assert stored["endpoint"] == subscription("one")["endpoint"]
    assert stored["user_agent"] == "Firefox/130"

    # A private write key works too; a read key does not.
    writer = bearer(await ws.key(Scope.write))
    r = await client.post(
        "/v1/push/subscriptions",
        headers=writer,
        json={"userId": "u-1", "subscription": subscription("two"), "userAgent": "Safari"},
    )
    assert r.status_code == 201
    assert len(await _subscriptions(client, ws, profile["id"])) == 2
    reader = bearer(await ws.key(Scope.read))
    r = await client.post(
        "/v1/push/subscriptions", headers=reader, json={"userId": "u-1", "subscription": {}}
    )
    assert r.status_code == 403


async def test_resubscribe_moves_endpoint_to_new_profile(client, workspaces):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/push/subscriptions",
        headers=ws.tracking,
        json={"anonymousId": "device-1", "subscription": subscription("shared")},
    )
    assert r.status_code == 201
    first_id = r.json()["id"]
    anonymous = (
        await client.get(
            "/v1/profiles/lookup", headers=ws.admin, params={"anonymous_id": "device-1"}
        )
    ).json()

    # Same browser, now logged in as someone else, with fresh keys.
    fresh = subscription("shared-2", endpoint=subscription("shared")["endpoint"])
    r = await client.post(
        "/v1/push/subscriptions",
        headers=ws.tracking,
        json={"userId": "known-7", "subscription": fresh},
    )
    assert r.status_code == 200, r.text  # known endpoint: updated, not duplicated
    assert r.json()["id"] == first_id
    known = (
        await client.get("/v1/profiles/lookup", headers=ws.admin, params={"external_id": "known-7"})
    ).json()
    [moved] = await _subscriptions(client, ws, known["id"])
    assert moved["id"] == first_id
    assert await _subscriptions(client, ws, anonymous["id"]) == []

    # The browser unsubscribes: gone; doing it twice is harmless.
    for _ in range(2):
        r = await client.request(
            "DELETE",
            "/v1/push/subscriptions",
            headers=ws.tracking,
            json={"endpoint": fresh["endpoint"]},
        )
        assert r.status_code == 204
    assert await _subscriptions(client, ws, known["id"]) == []


async def test_invalid_subscriptions_are_rejected(client, workspaces):
    ws = await workspaces.create()
    good = subscription("x")
    cases = [
        ({"subscription": good}, "body"),  # no id at all
        (
            {"userId": "u", "subscription": good | {"endpoint": "http://insecure.example/x"}},
            "body.subscription.endpoint",
        ),
        (
            {"userId": "u", "subscription": good | {"keys": good["keys"] | {"p256dh": "AAAA"}}},
            "body.subscription.keys.p256dh",
        ),
        (
            {"userId": "u", "subscription": good | {"keys": good["keys"] | {"auth": "!!"}}},
            "body.subscription.keys.auth",
        ),
        (
            {"userId": "u", "subscription": {"endpoint": good["endpoint"]}},
            "body.subscription.keys",
        ),
    ]
    for body, loc in cases:
        r = await client.post("/v1/push/subscriptions", headers=ws.tracking, json=body)
        assert r.status_code == 422, (body, r.text)
        assert loc in {d["loc"] for d in r.json()["error"]["details"]}, r.text

    r = await client.post(
        "/v1/push/subscriptions",
        headers={"Authorization": "Basic d21fcGtfbm9wZTo="},  # wm_pk_nope:
        json={"userId": "u", "subscription": good},
    )
    assert r.status_code == 401


async def test_subscriptions_stay_in_their_workspace(client, workspaces):
    a, b = await workspaces.create(), await workspaces.create()
    endpoint = subscription("same")["endpoint"]
    for ws in (a, b):
        r = await client.post(
            "/v1/push/subscriptions",
            headers=ws.tracking,
            json={"userId": "u", "subscription": subscription("same")},
        )
        assert r.status_code == 201  # the same endpoint in two workspaces is two subscriptions
    r = await client.request(
        "DELETE", "/v1/push/subscriptions", headers=b.tracking, json={"endpoint": endpoint}
    )
    assert r.status_code == 204
    profile = (
        await client.get("/v1/profiles/lookup", headers=a.admin, params={"external_id": "u"})
    ).json()
    assert len(await _subscriptions(client, a, profile["id"])) == 1
    r = await client.get(f"/v1/profiles/{profile['id']}/push-subscriptions", headers=b.admin)
    assert r.status_code == 404
