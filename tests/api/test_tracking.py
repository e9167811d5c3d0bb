"""The Segment-compatible tracking endpoints, end to end through the API and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.factories import bearer


async def rows(engine, sql: str, **params):
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).mappings().all()


async def test_track_stores_event_with_value_and_hands_it_to_the_outbox(client, workspaces, engine):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/track",
        headers=ws.tracking,
        json={
            "userId": "u-1",
            "event": "Placed Order",
            "messageId": "m-1",
            "properties": {"revenue": 129.99, "currency": "pln", "items": [{"sku": "A"}]},
            "timestamp": "2026-11-01T10:00:00Z",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    [event] = await rows(engine, "SELECT * FROM events WHERE workspace_id = :ws", ws=ws.id)
    assert event["metric"] == "Placed Order"
    assert float(event["value"]) == 129.99 and event["currency"] == "PLN"
    assert event["properties"]["items"] == [{"sku": "A"}]
    assert event["occurred_at"] == datetime(2026, 11, 1, 10, tzinfo=UTC)
    [profile] = await rows(engine, "SELECT * FROM profiles WHERE id = :id", id=event["profile_id"])
    assert profile["external_id"] == "u-1"
    outbox = await rows(engine, "SELECT event_id FROM event_outbox")
    assert [o["event_id"] for o in outbox] == [event["id"]]


async def test_same_message_id_is_stored_once(client, workspaces, engine):
    ws = await workspaces.create()
    call = {"userId": "u-1", "event": "Viewed Product", "messageId": "dup-1"}
    for _ in range(3):
        assert (await client.post("/v1/track", headers=ws.tracking, json=call)).status_code == 200
    assert len(await rows(engine, "SELECT id FROM events")) == 1
    assert len(await rows(engine, "SELECT event_id FROM event_outbox")) == 1


async def test_replaying_ten_thousand_events_stores_ten_thousand(client, workspaces, engine):
    ws = await workspaces.create()
    calls = [
        {
            "type": "track",
            "userId": f"user-{i % 700}",
            "event": "Added to Cart",
            "messageId": f"msg-{i}",
            "properties": {"value": i},
        }
        for i in range(10_000)
    ]
    for _ in range(2):
        for start in range(0, len(calls), 500):
            r = await client.post(
                "/v1/batch", headers=ws.tracking, json={"batch": calls[start : start + 500]}
            )
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == 500
    [count] = await rows(
        engine, "SELECT count(*) AS n, count(DISTINCT profile_id) AS p FROM events"
    )
    assert (count["n"], count["p"]) == (10_000, 700)


async def test_identify_creates_and_merges_typed_traits(client, workspaces, engine):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/identify",
        headers=ws.tracking,
        json={
            "userId": "u-7",
            "traits": {
                "email": "Anna@Example.com",
                "firstName": "Anna",
                "phone": "+48 601 234 567",
                "address": {"city": "Kraków", "country": "pl"},
                "birthday": "1990-05-01",
                "vip": True,
            },
            "context": {"locale": "pl-PL", "timezone": "Europe/Warsaw"},
        },
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/v1/identify", headers=ws.tracking, json={"userId": "u-7", "traits": {"plan": "gold"}}
    )
    assert r.status_code == 200
    [p] = await rows(engine, "SELECT * FROM profiles WHERE external_id = 'u-7'")
    assert p["email"] == "Anna@example.com" and p["phone"] == "+48601234567"
    assert (p["first_name"], p["city"], p["country"]) == ("Anna", "Kraków", "PL")
    assert (p["locale"], p["timezone"]) == ("pl-PL", "Europe/Warsaw")
    assert p["properties"] == {"birthday": "1990-05-01", "vip": True, "plan": "gold"}
    types = await rows(engine, "SELECT name, type FROM property_definitions ORDER BY name")
    assert [(t["name"], t["type"]) for t in types] == [
        ("birthday", "date"),
        ("plan", "string"),
        ("vip", "boolean"),
    ]
    # A value of another type for a typed property is refused, naming the property.
    r = await client.post(
        "/v1/identify", headers=ws.tracking, json={"userId": "u-7", "traits": {"vip": "yes"}}
    )
    assert r.status_code == 422
    assert "vip" in r.json()["error"]["message"]


async def test_identify_with_both_ids_merges_the_anonymous_profile(client, workspaces, engine):
    ws = await workspaces.create()
    for i in range(3):
        await client.post(
            "/v1/track",
            headers=ws.tracking,
            json={"anonymousId": "anon-1", "event": "Viewed Product", "messageId": f"v{i}"},
        )
    await client.post(
        "/v1/track",
        headers=ws.tracking,
        json={"userId": "known", "event": "Started Checkout", "messageId": "c1"},
    )
    r = await client.post(
        "/v1/identify",
        headers=ws.tracking,
        json={"userId": "known", "anonymousId": "anon-1", "traits": {"email": "k@example.com"}},
    )
    assert r.status_code == 200, r.text
    profiles = await rows(engine, "SELECT id, external_id, email FROM profiles")
    assert [(p["external_id"], p["email"]) for p in profiles] == [("known", "k@example.com")]
    events = await rows(engine, "SELECT profile_id FROM events")
    assert len(events) == 4 and {e["profile_id"] for e in events} == {profiles[0]["id"]}
    # Later anonymous events land on the known profile.
    await client.post(
        "/v1/track",
        headers=ws.tracking,
        json={"anonymousId": "anon-1", "event": "Viewed Product", "messageId": "v9"},
    )
    assert len(await rows(engine, "SELECT id FROM profiles")) == 1


async def test_alias_merges_previous_id_into_user_id(client, workspaces, engine):
    ws = await workspaces.create()
    await client.post(
        "/v1/page",
        headers=ws.tracking,
        json={"anonymousId": "device-9", "properties": {"url": "https://shop.test/p/1"}},
    )
    r = await client.post(
        "/v1/alias", headers=ws.tracking, json={"previousId": "device-9", "userId": "cust-9"}
    )
    assert r.status_code == 200, r.text
    [p] = await rows(engine, "SELECT id, external_id FROM profiles")
    assert p["external_id"] == "cust-9"
    [e] = await rows(engine, "SELECT profile_id, metric, properties FROM events")
    assert e["profile_id"] == p["id"] and e["metric"] == "Viewed Page"
    assert e["properties"]["url"] == "https://shop.test/p/1"


async def test_page_takes_url_from_context(client, workspaces, engine):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/page",
        headers=ws.tracking,
        json={
            "userId": "u",
            "name": "Thank you",
            "context": {"page": {"url": "https://shop.test/thank-you", "path": "/thank-you"}},
        },
    )
    assert r.status_code == 200
    [e] = await rows(engine, "SELECT metric, properties FROM events")
    assert e["metric"] == "Viewed Page"
    assert e["properties"] == {
        "url": "https://shop.test/thank-you",
        "path": "/thank-you",
        "name": "Thank you",
    }


async def test_clock_skew_is_corrected_from_sent_at(client, workspaces, engine):
    ws = await workspaces.create()
    # The client's clock runs two hours fast: it says it sent "now + 2h".
    skewed_now = datetime.now(UTC) + timedelta(hours=2)
    r = await client.post(
        "/v1/track",
        headers=ws.tracking,
        json={
            "userId": "u",
            "event": "Clicked",
            "timestamp": (skewed_now - timedelta(minutes=10)).isoformat(),
            "sentAt": skewed_now.isoformat(),
        },
    )
    assert r.status_code == 200
    [e] = await rows(engine, "SELECT occurred_at FROM events")
    expected = datetime.now(UTC) - timedelta(minutes=10)
    assert abs((e["occurred_at"] - expected).total_seconds()) < 30


async def test_batch_stores_good_calls_and_lists_bad_ones(client, workspaces, engine):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/batch",
        headers=ws.tracking,
        json={
            "batch": [
                {"type": "identify", "userId": "a", "traits": {"email": "a@example.com"}},
                {"type": "track", "event": "No one"},
                {"type": "track", "userId": "a", "event": "Placed Order", "messageId": "o1"},
                {"type": "identify", "userId": "b", "traits": {"email": "not-an-email"}},
                {"type": "screen", "userId": "a"},
                {"type": "track", "userId": "a", "event": "X", "properties": {"value": "abc"}},
                {"type": "page", "anonymousId": "z", "properties": {"url": "https://s.test/"}},
            ]
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 3
    assert [x["index"] for x in body["rejected"]] == [1, 3, 4, 5]
    assert "userId or anonymousId" in body["rejected"][0]["reason"]
    assert "email" in body["rejected"][1]["reason"]
    # The bad identify left nothing behind: no profile "b".
    ids = {p["external_id"] for p in await rows(engine, "SELECT external_id FROM profiles")}
    assert ids == {"a", None}
    assert len(await rows(engine, "SELECT id FROM events")) == 2


async def test_batch_limits_and_malformed_json(client, workspaces):
    ws = await workspaces.create()
    headers = {**ws.tracking, "Content-Type": "application/json"}
    r = await client.post("/v1/batch", headers=headers, content=b'{"batch": [')
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    many = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 2001}
    r = await client.post("/v1/batch", headers=headers, json=many)
    assert r.status_code == 413
    huge = {"x": "y" * 600_000}
    big = {"batch": [{"type": "track", "userId": "u", "event": "E", "properties": huge}]}
    r = await client.post("/v1/batch", headers=headers, content=json.dumps(big).encode())
    assert r.status_code == 413
    r = await client.post("/v1/batch", headers=headers, json={"batch": "nope"})
    assert r.status_code == 400


async def test_tracking_auth(client, workspaces, engine):
    a = await workspaces.create()
    b = await workspaces.create()
    call = {"userId": "u", "event": "E"}
    assert (await client.post("/v1/track", json=call)).status_code == 401
    bad = {"Authorization": "Basic " + "d21fcGtfbm9wZTo="}  # wm_pk_nope:
    assert (await client.post("/v1/track", headers=bad, json=call)).status_code == 401
    # A private key works too, and a read-only one is refused.
    assert (await client.post("/v1/track", headers=a.admin, json=call)).status_code == 200
    from models import Scope

    reader = await a.key(Scope.read)
    assert (await client.post("/v1/track", headers=bearer(reader), json=call)).status_code == 403
    # B's write key writes into B only.
    assert (await client.post("/v1/track", headers=b.tracking, json=call)).status_code == 200
    counts = await rows(
        engine, "SELECT workspace_id, count(*) AS n FROM events GROUP BY workspace_id"
    )
    assert {c["workspace_id"]: c["n"] for c in counts} == {a.id: 1, b.id: 1}
    assert len({uuid.UUID(str(x["workspace_id"])) for x in counts}) == 2
