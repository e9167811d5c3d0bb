"""Lists through the API: CRUD, bulk membership by any identifier, the join/leave log."""

from __future__ import annotations

import uuid

from models import Scope
from tests.factories import bearer


async def _list(client, ws, name="VIP") -> dict:
    r = await client.post("/v1/lists", json={"name": name}, headers=ws.admin)
    assert r.status_code == 201, r.text
    return r.json()


async def test_crud_and_unique_name(client, workspaces):
    ws = await workspaces.create()
    created = await _list(client, ws, "Newsletter")
    assert created["member_count"] == 0

    r = await client.post("/v1/lists", json={"name": "Newsletter"}, headers=ws.admin)
    assert r.status_code == 409
    assert "Newsletter" in r.json()["error"]["message"]

    r = await client.patch(
        f"/v1/lists/{created['id']}",
        json={"name": "Weekly", "description": "Weekly news"},
        headers=ws.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Weekly" and r.json()["description"] == "Weekly news"

    r = await client.get(f"/v1/lists/{created['id']}", headers=ws.admin)
    assert r.json()["name"] == "Weekly"

    r = await client.delete(f"/v1/lists/{created['id']}", headers=ws.admin)
    assert r.status_code == 204
    r = await client.get(f"/v1/lists/{created['id']}", headers=ws.admin)
    assert r.status_code == 404


async def test_lists_are_paginated_with_member_counts(client, workspaces):
    ws = await workspaces.create()
    for i in range(5):
        await _list(client, ws, f"List {i}")
    first = await _list(client, ws, "With members")
    await client.post(
        f"/v1/lists/{first['id']}/members",
        json={"emails": ["a@example.com", "b@example.com"]},
        headers=ws.admin,
    )
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/lists", params=params, headers=ws.admin)).json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [x["name"] for x in seen] == [f"List {i}" for i in range(5)] + ["With members"]
    assert seen[-1]["member_count"] == 2


async def test_add_by_email_phone_and_external_id_creates_profiles(client, workspaces):
    ws = await workspaces.create()
    lst = await _list(client, ws)
    body = {
        "emails": ["Anna@Example.com", "not-an-email"],
        "phones": ["+48 600 100 200", "12"],
        "external_ids": ["cust-1"],
        "profile_ids": [str(uuid.uuid4())],
    }
    r = await client.post(f"/v1/lists/{lst['id']}/members", json=body, headers=ws.admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["joined"] == 3 and out["already_members"] == 0 and out["created_profiles"] == 3
    rejected = {(x["type"], x["identifier"]) for x in out["rejected"]}
    assert rejected == {
        ("email", "not-an-email"),
        ("phone", "12"),
        ("profile_id", body["profile_ids"][0]),
    }

    # The same people again (differently written): already members, no new profiles.
    again = {"emails": ["anna@example.com"], "phones": ["+48600100200"]}
    r = await client.post(f"/v1/lists/{lst['id']}/members", json=again, headers=ws.admin)
    assert r.json()["joined"] == 0 and r.json()["already_members"] == 2
    assert r.json()["created_profiles"] == 0

    members = (await client.get(f"/v1/lists/{lst['id']}/members", headers=ws.admin)).json()
    assert {m["email"] for m in members["data"]} == {"Anna@example.com", None}
    assert {m["phone"] for m in members["data"]} == {"+48600100200", None}
    assert {m["external_id"] for m in members["data"]} == {"cust-1", None}
    assert all(m["source"] == "api" for m in members["data"])
    r = await client.get(f"/v1/lists/{lst['id']}", headers=ws.admin)
    assert r.json()["member_count"] == 3


async def test_remove_and_change_log(client, workspaces):
    ws = await workspaces.create()
    lst = await _list(client, ws)
    url = f"/v1/lists/{lst['id']}/members"
    await client.post(url, json={"emails": ["a@example.com", "b@example.com"]}, headers=ws.admin)
    members = (await client.get(url, headers=ws.admin)).json()["data"]
    a = next(m for m in members if m["email"] == "a@example.com")

    r = await client.request(
        "DELETE",
        url,
        json={"profile_ids": [a["profile_id"]], "emails": ["nobody@example.com"]},
        headers=ws.admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["left"] == 1 and r.json()["not_members"] == 0
    assert r.json()["rejected"] == [
        {"type": "email", "identifier": "nobody@example.com", "reason": "no such profile"}
    ]
    r = await client.request("DELETE", url, json={"emails": ["a@example.com"]}, headers=ws.admin)
    assert r.json()["left"] == 0 and r.json()["not_members"] == 1

    # Rejoin: the log has join, join, leave, join, in order, paginated.
    await client.post(url, json={"emails": ["a@example.com"]}, headers=ws.admin)
    log, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (
            await client.get(f"/v1/lists/{lst['id']}/changes", params=params, headers=ws.admin)
        ).json()
        log += page["data"]
        if not (cursor := page["next_cursor"]):
            break
    assert [c["action"] for c in log] == ["joined", "joined", "left", "joined"]
    assert [c["profile_id"] for c in log[2:]] == [a["profile_id"]] * 2
    assert all(c["source"] == "api" and c["occurred_at"] for c in log)


async def test_limits_scopes_and_tenancy(client, workspaces):
    ws, other = await workspaces.create(), await workspaces.create("Other shop")
    lst = await _list(client, ws)
    url = f"/v1/lists/{lst['id']}/members"

    too_many = {"emails": [f"u{i}@example.com" for i in range(10_001)]}
    r = await client.post(url, json=too_many, headers=ws.admin)
    assert r.status_code == 422 and "10000" in r.json()["error"]["message"]

    reader = bearer(await ws.key(Scope.read))
    assert (await client.get(url, headers=reader)).status_code == 200
    r = await client.post(url, json={"emails": ["a@example.com"]}, headers=reader)
    assert r.status_code == 403
    assert (await client.get("/v1/lists")).status_code == 401

    # Another workspace's list does not exist for this one.
    for method, path in [
        ("GET", f"/v1/lists/{lst['id']}"),
        ("PATCH", f"/v1/lists/{lst['id']}"),
        ("DELETE", f"/v1/lists/{lst['id']}"),
        ("GET", url),
        ("POST", url),
        ("GET", f"/v1/lists/{lst['id']}/changes"),
    ]:
        body = {"emails": ["a@example.com"]} if method == "POST" else {"name": "x"}
        r = await client.request(method, path, json=body, headers=other.admin)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    assert (await client.get("/v1/lists", headers=other.admin)).json()["data"] == []
