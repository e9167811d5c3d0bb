"""Templates over the API: saved only when they render, previewed for real or sample data."""

from __future__ import annotations

from models import Scope
from tests.factories import bearer

CART_EMAIL = {
    "name": "Abandoned cart",
    "channel": "email",
    "subject": "{{ profile.first_name }}, you left something behind",
    "html": "<html><body>\n<h1>Hi {{ profile.first_name }}</h1>\n"
    "{% for item in event.items %}<p>{{ item.name }}: {{ item.price|money }}</p>{% endfor %}\n"
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n</body></html>',
}


async def test_create_read_update_list_delete(client, workspaces):
    ws = await workspaces.create()
    r = await client.post("/v1/templates", headers=ws.admin, json=CART_EMAIL)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["channel"] == "email" and created["text"] is None

    got = await client.get(f"/v1/templates/{created['id']}", headers=ws.admin)
    assert got.status_code == 200 and got.json()["html"] == CART_EMAIL["html"]

    r = await client.patch(
        f"/v1/templates/{created['id']}", headers=ws.admin, json={"subject": "Still there?"}
    )
    assert r.status_code == 200 and r.json()["subject"] == "Still there?"
    assert r.json()["updated_at"] > created["updated_at"]

    assert (
        await client.post("/v1/templates", headers=ws.admin, json=CART_EMAIL)
    ).status_code == 409
    sms = {"name": "Cart SMS", "channel": "sms", "body": "{{ event.checkout_url }}"}
    assert (await client.post("/v1/templates", headers=ws.admin, json=sms)).status_code == 201
    page = await client.get("/v1/templates", headers=ws.admin, params={"limit": 1})
    assert len(page.json()["data"]) == 1 and page.json()["next_cursor"]
    rest = await client.get(
        "/v1/templates", headers=ws.admin, params={"cursor": page.json()["next_cursor"]}
    )
    assert [t["name"] for t in page.json()["data"] + rest.json()["data"]] == [
        "Abandoned cart",
        "Cart SMS",
    ]
    only_sms = await client.get("/v1/templates", headers=ws.admin, params={"channel": "sms"})
    assert [t["name"] for t in only_sms.json()["data"]] == ["Cart SMS"]

    r = await client.delete(f"/v1/templates/{created['id']}", headers=ws.admin)
    assert r.status_code == 204
    assert (await client.get(f"/v1/templates/{created['id']}", headers=ws.admin)).status_code == 404

    reader = bearer(await ws.key(Scope.read))
    r = await client.post("/v1/templates", headers=reader, json=CART_EMAIL | {"name": "x"})
    assert r.status_code == 403


async def test_a_template_that_does_not_render_is_rejected_with_line_and_name(client, workspaces):
    ws = await workspaces.create()
    broken = CART_EMAIL | {"html": CART_EMAIL["html"].replace("item.name", "item.nmae")}
    r = await client.post("/v1/templates", headers=ws.admin, json=broken)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "template_error"
    assert error["message"] == "html line 3: 'event.items[0]' has no attribute 'nmae'"
    assert {"loc": "html", "line": 3, "name": "nmae"}.items() <= error["details"][0].items()
    assert (await client.get("/v1/templates", headers=ws.admin)).json()["data"] == []

    r = await client.post("/v1/templates", headers=ws.admin, json=CART_EMAIL)
    template_id = r.json()["id"]
    r = await client.patch(
        f"/v1/templates/{template_id}", headers=ws.admin, json={"subject": "{{ coupon.code }}"}
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["name"] == "coupon"
    saved = await client.get(f"/v1/templates/{template_id}", headers=ws.admin)
    assert saved.json()["subject"] == CART_EMAIL["subject"]  # nothing half-saved

    missing = {"name": "No body", "channel": "sms"}
    r = await client.post("/v1/templates", headers=ws.admin, json=missing)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "body"


async def test_validate_without_saving(client, workspaces):
    ws = await workspaces.create()
    draft = {
        "channel": "sms",
        "body": "{% if event.coupon is defined %}{{ event.coupon }}{% endif %}"
        "Hi {{ profile.first_name }}, total {{ event.value|money }}",
    }
    r = await client.post("/v1/templates/validate", headers=ws.admin, json=draft)
    assert r.status_code == 200, r.text
    assert r.json()["body"] == "Hi Ada, total $67.00"

    r = await client.post(
        "/v1/templates/validate",
        headers=ws.admin,
        json={"channel": "sms", "body": "{{ ''.__class__ }}"},
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["name"] == "__class__"


async def test_preview_for_a_real_profile_and_given_event(client, workspaces):
    ws = await workspaces.create()
    template_id = (await client.post("/v1/templates", headers=ws.admin, json=CART_EMAIL)).json()[
        "id"
    ]
    r = await client.post(
        "/v1/profiles",
        headers=ws.admin,
        json={"email": "zofia@example.com", "first_name": "<Zofia>", "locale": "pl-PL"},
    )
    profile_id = r.json()["id"]
    event = {"items": [{"name": "Kubek", "price": 39.9}], "currency": "PLN"}

    r = await client.post(
        f"/v1/templates/{template_id}/preview",
        headers=ws.admin,
        json={"profile_id": profile_id, "event": event},
    )
    assert r.status_code == 200, r.text
    rendered = r.json()
    assert rendered["subject"] == "<Zofia>, you left something behind"
    assert "<h1>Hi &lt;Zofia&gt;</h1>" in rendered["html"]
    assert "Kubek: 39,90\xa0zł" in rendered["html"]
    assert "Hi <Zofia>" in rendered["text"]

    r = await client.post(
        f"/v1/templates/{template_id}/preview", headers=ws.admin, json={"event": {"items": [{}]}}
    )
    assert r.status_code == 422
    assert {"loc": "html", "name": "name"}.items() <= r.json()["error"]["details"][0].items()

    other = await workspaces.create("Other")
    r = await client.post(f"/v1/templates/{template_id}/preview", headers=other.admin, json={})
    assert r.status_code == 404
