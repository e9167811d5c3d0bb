"""Segments through the API: CRUD, 422s located in the definition, preview, members, the
entry/exit log, daily history, manual refresh, the JSON Schema, and delete guarded by use; a
rename is not a new definition (its next entries still start "entered segment" flows)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from core.db import session_scope
from ingest.events import NewEvent, store_events
from tests.flows.test_journey import until
from tests.flows.test_router import _journeys as journeys
from tests.flows.test_triggers import count_of, live_flow, queued
from worker import build_dispatcher, build_worker

NOW = datetime.now(UTC)


def did(metric: str, *, days: int | None = None, at_least: int = 1) -> dict:
    timeframe = (
        {"kind": "in_last", "amount": days, "unit": "days"} if days else {"kind": "all_time"}
    )
    return {
        "type": "behaviour",
        "metric": metric,
        "count": {"op": "at_least", "value": at_least},
        "timeframe": timeframe,
    }


def lapsed(days: int) -> dict:
    """Ordered once, but not in the last `days` days."""
    return {"all": [did("Placed Order"), {"not": did("Placed Order", days=days)}]}


def in_segment(segment_id: str) -> dict:
    return {"type": "segment_membership", "op": "in", "segment_id": segment_id}


async def profiles(client, ws, *emails: str) -> list[str]:
    ids = []
    for email in emails:
        r = await client.post("/v1/profiles", json={"email": email}, headers=ws.admin)
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["id"])
    return ids


async def events(engine, ws, *items: tuple[str, str, datetime]) -> None:
    async with session_scope(engine) as session:
        await store_events(
            session,
            ws.id,
            [NewEvent(uuid.UUID(p), m, f"m-{uuid.uuid4()}", at) for p, m, at in items],
        )


async def create(client, ws, name: str, definition: dict, status: int = 201) -> dict:
    r = await client.post(
        "/v1/segments", json={"name": name, "definition": definition}, headers=ws.admin
    )
    assert r.status_code == status, r.text
    return r.json()


async def test_crud_computes_membership_at_once(client, workspaces, engine):
    ws = await workspaces.create()
    a, b, _ = await profiles(client, ws, "a@example.com", "b@example.com", "c@example.com")
    await events(
        engine, ws, (a, "Placed Order", NOW), (b, "Placed Order", NOW), (b, "Placed Order", NOW)
    )
    buyers = await create(client, ws, "Buyers", did("Placed Order"))
    assert buyers["member_count"] == 2 and buyers["last_refreshed_at"]

    await create(client, ws, "Buyers", did("Placed Order"), status=409)

    r = await client.patch(
        f"/v1/segments/{buyers['id']}",
        json={"name": "Repeat buyers", "definition": did("Placed Order", at_least=2)},
        headers=ws.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Repeat buyers" and r.json()["member_count"] == 1

    r = await client.patch(
        f"/v1/segments/{buyers['id']}", json={"description": "2+ orders"}, headers=ws.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "2+ orders" and r.json()["member_count"] == 1

    r = await client.get(f"/v1/segments/{buyers['id']}/changes", headers=ws.admin)
    log = [(c["action"], c["profile_id"]) for c in r.json()["data"]]
    assert sorted(log[:2]) == sorted([("entered", a), ("entered", b)])
    assert log[2:] == [("exited", a)]
    r = await client.get(
        f"/v1/segments/{buyers['id']}/changes", params={"action": "exited"}, headers=ws.admin
    )
    assert [c["profile_id"] for c in r.json()["data"]] == [a]
    r = await client.get(
        f"/v1/segments/{buyers['id']}/changes",
        params={"since": (NOW + timedelta(days=1)).isoformat()},
        headers=ws.admin,
    )
    assert r.json()["data"] == []

    r = await client.get(f"/v1/segments/{buyers['id']}/members", headers=ws.admin)
    assert [m["email"] for m in r.json()["data"]] == ["b@example.com"]

    r = await client.delete(f"/v1/segments/{buyers['id']}", headers=ws.admin)
    assert r.status_code == 204
    r = await client.get(f"/v1/segments/{buyers['id']}", headers=ws.admin)
    assert r.status_code == 404


async def test_invalid_definitions_are_422_located_in_the_body(client, workspaces):
    ws = await workspaces.create()
    bad = {
        "all": [
            did("Placed Order"),
            {"type": "behaviour", "metric": "X", "count": {"op": "at_least"}},
        ]
    }
    r = await client.post("/v1/segments", json={"name": "Bad", "definition": bad}, headers=ws.admin)
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    assert [d["loc"] for d in details] == ["body.definition.all[1].count.value"]

    r = await client.post(
        "/v1/segments",
        json={"name": "Bad", "definition": in_segment(str(uuid.uuid4()))},
        headers=ws.admin,
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == "body.definition.segment_id"

    r = await client.post(
        "/v1/segments", json={"name": "Bad", "definition": {"type": "nope"}}, headers=ws.admin
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"].startswith("body.definition")

    r = await client.get("/v1/segments", headers=ws.admin)
    assert r.json()["data"] == []  # nothing was saved


async def test_a_segment_cannot_reference_itself_through_update(client, workspaces):
    ws = await workspaces.create()
    first = await create(client, ws, "First", did("Placed Order"))
    second = await create(client, ws, "Second", in_segment(first["id"]))
    r = await client.patch(
        f"/v1/segments/{first['id']}",
        json={"definition": in_segment(second["id"])},
        headers=ws.admin,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["loc"].startswith("body.definition")


async def test_delete_is_refused_while_another_segment_reads_it(client, workspaces):
    ws = await workspaces.create()
    buyers = await create(client, ws, "Buyers", did("Placed Order"))
    await create(
        client, ws, "Buyers who viewed", {"all": [in_segment(buyers["id"]), did("Viewed Product")]}
    )
    r = await client.delete(f"/v1/segments/{buyers['id']}", headers=ws.admin)
    assert r.status_code == 409
    assert "Buyers who viewed" in r.json()["error"]["message"]


async def test_preview_counts_and_samples_without_saving(client, workspaces, engine):
    ws = await workspaces.create()
    ids = await profiles(client, ws, *[f"p{i}@example.com" for i in range(25)])
    await events(engine, ws, *[(p, "Viewed Product", NOW) for p in ids[:22]])
    r = await client.post(
        "/v1/segments/preview", json={"definition": did("Viewed Product")}, headers=ws.admin
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 22 and len(body["sample"]) == 20
    assert {s["profile_id"] for s in body["sample"]} <= set(ids[:22])
    r = await client.get("/v1/segments", headers=ws.admin)
    assert r.json()["data"] == []

    r = await client.post(
        "/v1/segments/preview", json={"definition": {"any": []}}, headers=ws.admin
    )
    assert r.status_code == 422


async def test_list_is_paginated_and_workspaces_do_not_mix(client, workspaces):
    ws, other = await workspaces.create(), await workspaces.create()
    for i in range(5):
        await create(client, ws, f"S{i}", did(f"Metric {i}"))
    foreign = await create(client, other, "Theirs", did("X"))
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/segments", params=params, headers=ws.admin)).json()
        seen += page["data"]
        if not (cursor := page["next_cursor"]):
            break
    assert [s["name"] for s in seen] == [f"S{i}" for i in range(5)]
    assert all(s["member_count"] == 0 for s in seen)
    r = await client.get(f"/v1/segments/{foreign['id']}", headers=ws.admin)
    assert r.status_code == 404


async def test_members_pages_history_and_manual_refresh(client, workspaces, engine):
    ws = await workspaces.create()
    ids = await profiles(client, ws, *[f"m{i}@example.com" for i in range(5)])
    await events(engine, ws, *[(p, "Viewed Product", NOW - timedelta(days=1)) for p in ids])
    seg = await create(client, ws, "Recent viewers", did("Viewed Product", days=30))
    assert seg["member_count"] == 5

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = await client.get(f"/v1/segments/{seg['id']}/members", params=params, headers=ws.admin)
        seen += [m["profile_id"] for m in r.json()["data"]]
        if not (cursor := r.json()["next_cursor"]):
            break
    assert sorted(seen) == sorted(ids)

    # Two views age out of the window; a manual refresh applies it.
    async with session_scope(engine) as session:
        await session.execute(
            text("UPDATE events SET occurred_at = :t WHERE profile_id = ANY(CAST(:p AS uuid[]))"),
            {"t": NOW - timedelta(days=40), "p": ids[:2]},
        )
    r = await client.post(f"/v1/segments/{seg['id']}/refresh", headers=ws.admin)
    assert r.json() == {"entered": 0, "exited": 2, "member_count": 3}

    # Yesterday: 5 entered the day before... all entries and exits happened today here;
    # move the entries back two days to see a curve.
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "UPDATE segment_membership_changes SET occurred_at = occurred_at - "
                "interval '2 days' WHERE action = 'entered' AND segment_id = :s"
            ),
            {"s": seg["id"]},
        )
    r = await client.get(f"/v1/segments/{seg['id']}/history", params={"days": 4}, headers=ws.admin)
    assert r.status_code == 200, r.text
    days = r.json()["days"]
    assert [(d["members"], d["entered"], d["exited"]) for d in days] == [
        (0, 0, 0),
        (5, 5, 0),
        (5, 0, 0),
        (3, 0, 2),
    ]


async def test_schema_describes_the_condition_language(client, workspaces):
    ws = await workspaces.create()
    r = await client.get("/v1/segments/schema", headers=ws.admin)
    assert r.status_code == 200
    assert "behaviour" in json.dumps(r.json())


async def test_a_rename_does_not_swallow_the_next_entries(
    client, workspaces, engine, temporal_env, settings
):
    """Only a new definition makes a baseline (its first computation starts no "entered
    segment" flow): after a new name or description, the next refresh's entries start the
    flow like any other; a real redefinition still does not flood it."""
    ws = await workspaces.create()
    old, recent, newer = await profiles(client, ws, "o@example.com", "r@example.com", "n@x.com")
    await events(
        engine,
        ws,
        (old, "Placed Order", NOW - timedelta(days=40)),
        (recent, "Placed Order", NOW - timedelta(days=10)),
        (newer, "Placed Order", NOW - timedelta(days=20)),
    )
    seg = await create(client, ws, "Lapsed", lapsed(30))
    assert seg["member_count"] == 1  # old
    dispatcher = build_dispatcher(temporal_env.client, settings, engine)
    await dispatcher.drain()  # the orders' own outbox rows: nothing enters
    flow_id = await live_flow(client, ws, {"type": "segment_entered", "segment_id": seg["id"]})

    r = await client.patch(
        f"/v1/segments/{seg['id']}",
        json={"name": "Lapsed buyers", "description": "no order for 30 days"},
        headers=ws.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Lapsed buyers"
    assert r.json()["updated_at"] == seg["updated_at"]  # the definition did not change

    # Recent's last order ages out of the window: the next refresh finds them lapsed.
    async with session_scope(engine) as session:
        await session.execute(
            text("UPDATE events SET occurred_at = :t WHERE profile_id = :p"),
            {"t": NOW - timedelta(days=40), "p": uuid.UUID(recent)},
        )
    r = await client.post(f"/v1/segments/{seg['id']}/refresh", headers=ws.admin)
    assert r.json() == {"entered": 1, "exited": 0, "member_count": 2}
    assert await queued(engine) == 1  # owed to the flow, committed with the entry
    async with build_worker(temporal_env.client, settings, engine):
        assert await dispatcher.drain() == 1
        await until(count_of(engine, flow_id, 1))
    [journey] = await journeys(engine, uuid.UUID(flow_id))
    assert journey.profile_id == uuid.UUID(recent)

    # The same definition again changes nothing; a new one is a baseline: newer (last order
    # 20 days ago) is logged as entered but starts no journey.
    same = {"definition": lapsed(30)}
    r = await client.patch(f"/v1/segments/{seg['id']}", json=same, headers=ws.admin)
    assert r.json()["updated_at"] == seg["updated_at"]
    r = await client.patch(
        f"/v1/segments/{seg['id']}", json={"definition": lapsed(15)}, headers=ws.admin
    )
    assert r.status_code == 200, r.text
    moved = datetime.fromisoformat(r.json()["updated_at"])
    assert r.json()["member_count"] == 3 and moved > datetime.fromisoformat(seg["updated_at"])
    assert await queued(engine) == 0
