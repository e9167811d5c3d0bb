"""The profiles REST API as a client sees it: create, read, update, list, look up."""

from __future__ import annotations

import uuid

import pytest

from core.db import session_scope
from models import ListMember, ProfileList, Scope
from tests.api.test_push import subscription
from tests.factories import bearer


def _locs(response) -> set[str]:
    return {d["loc"] for d in response.json()["error"]["details"]}


async def test_create_and_get_normalizes_reserved_fields(client, workspaces):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/profiles",
        headers=ws.admin,
        json={
            "external_id": "cust-1",
            "email": "  Jan.Kowalski@Example.COM ",
            "phone": "601 234 567",
            "country": "pl",
            "first_name": "Jan",
            "timezone": "Europe/Warsaw",
            "locale": "pl_PL",
            "latitude": 52.23,
            "longitude": 21.01,
            "properties": {"vip": True, "orders": 3, "birthday": "1990-05-17"},
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["email"] == "Jan.Kowalski@example.com"
    assert created["phone"] == "+48601234567"  # national number, the profile's country
    assert created["country"] == "PL"
    assert created["locale"] == "pl-PL"
    assert created["properties"] == {"vip": True, "orders": 3, "birthday": "1990-05-17"}

    r = await client.get(f"/v1/profiles/{created['id']}", headers=ws.admin)
    assert r.status_code == 200
    assert r.json() == created

    r = await client.get(f"/v1/profiles/{uuid.uuid4()}", headers=ws.admin)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"email": "not-an-email"}, "body.email"),
        ({"phone": "12"}, "body.phone"),
        ({"timezone": "Mars/Olympus"}, "body.timezone"),
        ({"country": "XX"}, "body.country"),
        ({"latitude": 123}, "body.latitude"),
        ({"latitude": "north"}, "body.latitude"),
        ({"properties": {"bio": "x" * (100 * 1024 + 1)}}, "body.properties.bio"),
        ({"properties": {"born": "2024-02-30"}}, "body.properties.born"),
        ({"properties": {f"p{i}": i for i in range(401)}}, "body.properties"),
        ({"properties": {"email": "a@b.pl"}}, "body.properties.email"),
        ({"nickname": "J"}, "body.nickname"),
        ({"consents": {"email": "maybe"}}, "body.consents.email"),
    ],
)
async def test_each_invalid_field_is_named(client, workspaces, body, loc):
    ws = await workspaces.create()
    r = await client.post("/v1/profiles", headers=ws.admin, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"
    assert loc in _locs(r)
    r = await client.get("/v1/profiles", headers=ws.admin)
    assert r.json()["data"] == []  # nothing half-written


async def test_all_bad_fields_reported_at_once(client, workspaces):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/profiles",
        headers=ws.admin,
        json={"email": "nope", "timezone": "Nowhere", "properties": {"born": "1990-13-01"}},
    )
    assert r.status_code == 422
    assert _locs(r) == {"body.email", "body.timezone", "body.properties.born"}


async def test_taken_identifier_is_409_naming_the_field(client, workspaces):
    ws = await workspaces.create()
    first = await client.post(
        "/v1/profiles", headers=ws.admin, json={"email": "ola@example.com", "external_id": "a"}
    )
    assert first.status_code == 201
    r = await client.post("/v1/profiles", headers=ws.admin, json={"email": "OLA@example.com"})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "conflict"
    assert _locs(r) == {"body.email"}

    other = await client.post("/v1/profiles", headers=ws.admin, json={"external_id": "b"})
    r = await client.patch(
        f"/v1/profiles/{other.json()['id']}", headers=ws.admin, json={"external_id": "a"}
    )
    assert r.status_code == 409
    assert _locs(r) == {"body.external_id"}

    # Another workspace may have the same email.
    ws2 = await workspaces.create()
    r = await client.post("/v1/profiles", headers=ws2.admin, json={"email": "ola@example.com"})
    assert r.status_code == 201


async def test_property_type_is_fixed_per_workspace(client, workspaces):
    ws = await workspaces.create()
    r = await client.post("/v1/profiles", headers=ws.admin, json={"properties": {"score": 10}})
    assert r.status_code == 201
    r = await client.post("/v1/profiles", headers=ws.admin, json={"properties": {"score": "high"}})
    assert r.status_code == 422
    assert _locs(r) == {"body.properties.score"}
    assert "number" in r.json()["error"]["message"]
    # Another workspace fixes its own types.
    ws2 = await workspaces.create()
    r = await client.post("/v1/profiles", headers=ws2.admin, json={"properties": {"score": "high"}})
    assert r.status_code == 201


async def test_patch_changes_only_what_is_sent(client, workspaces):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/profiles",
        headers=ws.admin,
        json={
            "external_id": "p-1",
            "email": "a@example.com",
            "first_name": "Anna",
            "city": "Kraków",
            "properties": {"plan": "gold", "points": 5},
        },
    )
    profile = r.json()
    r = await client.patch(
        f"/v1/profiles/{profile['id']}",
        headers=ws.admin,
        json={"first_name": "Anne", "city": None, "properties": {"points": 7, "plan": None}},
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["first_name"] == "Anne"
    assert patched["city"] is None
    assert patched["email"] == "a@example.com"
    assert patched["external_id"] == "p-1"
    assert patched["properties"] == {"points": 7}
    assert patched["updated_at"] > profile["updated_at"]

    r = await client.patch(
        f"/v1/profiles/{profile['id']}",
        headers=ws.admin,
        json={"external_id": None, "properties": {"tags": ["a", "b"]}},
    )
    assert r.json()["external_id"] is None
    assert r.json()["properties"] == {"points": 7, "tags": ["a", "b"]}

    r = await client.patch(
        f"/v1/profiles/{profile['id']}", headers=ws.admin, json={"email": "broken"}
    )
    assert r.status_code == 422
    assert _locs(r) == {"body.email"}
    r = await client.patch(f"/v1/profiles/{uuid.uuid4()}", headers=ws.admin, json={})
    assert r.status_code == 404


async def test_patch_phone_uses_stored_country(client, workspaces):
    ws = await workspaces.create()
    r = await client.post("/v1/profiles", headers=ws.admin, json={"country": "DE"})
    r = await client.patch(
        f"/v1/profiles/{r.json()['id']}", headers=ws.admin, json={"phone": "030 901820"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["phone"] == "+4930901820"


async def test_list_walks_every_page_once(client, workspaces):
    ws = await workspaces.create()
    ids = []
    for i in range(120):
        r = await client.post("/v1/profiles", headers=ws.admin, json={"external_id": f"u{i}"})
        ids.append(r.json()["id"])
    other = await workspaces.create()
    await client.post("/v1/profiles", headers=other.admin, json={"external_id": "elsewhere"})

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 50} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/v1/profiles", headers=ws.admin, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["data"]) <= 50
        seen += [p["id"] for p in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == ids  # oldest first, each exactly once, nothing from the other workspace

    r = await client.get("/v1/profiles", headers=ws.admin, params={"limit": 201})
    assert r.status_code == 422
    r = await client.get("/v1/profiles", headers=ws.admin, params={"cursor": "garbage!"})
    assert r.status_code == 422
    assert _locs(r) == {"query.cursor"}
    r = await client.get("/v1/profiles", headers=ws.admin)
    assert len(r.json()["data"]) == 50  # the default page


async def test_list_filters(client, workspaces, engine):
    ws = await workspaces.create()
    a = (
        await client.post(
            "/v1/profiles",
            headers=ws.admin,
            json={"email": "A@Example.com", "phone": "+48601234567", "external_id": "ea"},
        )
    ).json()
    b = (await client.post("/v1/profiles", headers=ws.admin, json={"external_id": "eb"})).json()

    async def ids(**params) -> list[str]:
        r = await client.get("/v1/profiles", headers=ws.admin, params=params)
        assert r.status_code == 200, r.text
        return [p["id"] for p in r.json()["data"]]

    assert await ids(email="a@EXAMPLE.com") == [a["id"]]
    assert await ids(phone="+48 601-234-567") == [a["id"]]
    assert await ids(external_id="eb") == [b["id"]]
    assert await ids(created_since=b["created_at"]) == [b["id"]]
    await client.patch(f"/v1/profiles/{a['id']}", headers=ws.admin, json={"first_name": "A"})
    patched = (await client.get(f"/v1/profiles/{a['id']}", headers=ws.admin)).json()
    assert await ids(updated_since=patched["updated_at"]) == [a["id"]]

    async with session_scope(engine) as session:
        vip = ProfileList(workspace_id=ws.id, name="VIP")
        session.add(vip)
        await session.flush()
        session.add(
            ListMember(list_id=vip.id, profile_id=b["id"], workspace_id=ws.id, source="api")
        )
    assert await ids(list_id=str(vip.id)) == [b["id"]]
    assert await ids(list_id=str(uuid.uuid4())) == []


async def test_lookup_normalizes_identifiers(client, workspaces):
    ws = await workspaces.create()
    profile = (
        await client.post(
            "/v1/profiles",
            headers=ws.admin,
            json={"email": "Zofia@Example.com", "phone": "+48601234567", "external_id": "z-9"},
        )
    ).json()
    reader = bearer(await ws.key(Scope.read))
    for params in (
        {"email": "zofia@example.COM"},
        {"email": " ZOFIA@example.com "},
        {"phone": "+48 601 234 567"},
        {"phone": "+48601234567"},
        {"external_id": "z-9"},
    ):
        r = await client.get("/v1/profiles/lookup", headers=reader, params=params)
        assert r.status_code == 200, (params, r.text)
        assert r.json()["id"] == profile["id"]

    r = await client.get("/v1/profiles/lookup", headers=reader, params={"email": "x@example.com"})
    assert r.status_code == 404
    r = await client.get("/v1/profiles/lookup", headers=reader, params={"anonymous_id": "nope"})
    assert r.status_code == 404
    r = await client.get("/v1/profiles/lookup", headers=reader)
    assert r.status_code == 422
    r = await client.get(
        "/v1/profiles/lookup", headers=reader, params={"email": "a@b.pl", "external_id": "x"}
    )
    assert r.status_code == 422
    r = await client.get("/v1/profiles/lookup", headers=reader, params={"email": "not an email"})
    assert r.status_code == 422
    assert _locs(r) == {"query.email"}


async def test_lookup_by_anonymous_id(client, workspaces):
    ws = await workspaces.create()
    r = await client.post(
        "/v1/push/subscriptions",
        headers=ws.tracking,
        json={"anonymousId": "anon-42", "subscription": subscription("a")},
    )
    assert r.status_code == 201, r.text
    r = await client.get(
        "/v1/profiles/lookup", headers=ws.admin, params={"anonymous_id": "anon-42"}
    )
    assert r.status_code == 200
    subs = await client.get(f"/v1/profiles/{r.json()['id']}/push-subscriptions", headers=ws.admin)
    assert len(subs.json()["data"]) == 1


async def test_scopes_and_workspaces(client, workspaces):
    ws = await workspaces.create()
    profile = (await client.post("/v1/profiles", headers=ws.admin, json={})).json()
    reader = bearer(await ws.key(Scope.read))
    r = await client.post("/v1/profiles", headers=reader, json={})
    assert r.status_code == 403
    r = await client.patch(f"/v1/profiles/{profile['id']}", headers=reader, json={})
    assert r.status_code == 403
    assert (await client.get(f"/v1/profiles/{profile['id']}", headers=reader)).status_code == 200
    r = await client.post("/v1/profiles", headers=ws.tracking, json={})
    assert r.status_code == 401  # the public write key is for tracking only

    other = await workspaces.create()
    for method, path, body in [
        ("GET", "", None),
        ("PATCH", "", {"first_name": "X"}),
        ("GET", "/consents", None),
        ("GET", "/consents/history", None),
        ("PUT", "/consents/email", {"state": "subscribed"}),
        ("GET", "/push-subscriptions", None),
        ("GET", "/export", None),
        ("DELETE", "", None),
    ]:
        r = await client.request(
            method, f"/v1/profiles/{profile['id']}{path}", headers=other.admin, json=body
        )
        assert r.status_code == 404, (method, path, r.text)
    assert (await client.get(f"/v1/profiles/{profile['id']}", headers=ws.admin)).status_code == 200
