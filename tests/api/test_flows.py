"""The flows API: drafts, validation, publishing versions, diffs and statuses."""

from __future__ import annotations

from tests.flows import flow_body


async def _template(client, ws) -> str:
    body = {
        "name": "Cart SMS",
        "channel": "sms",
        "body": "Back to your cart: {{ event.checkout_url }}",
    }
    r = await client.post("/v1/templates", json=body, headers=ws.admin)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_flow_lifecycle(client, workspaces):
    ws = await workspaces.create()
    h = ws.admin
    tpl = await _template(client, ws)
    r = await client.post("/v1/flows", json={"definition": flow_body("Cart", tpl)}, headers=h)
    assert r.status_code == 201, r.text
    flow = r.json()
    fid = flow["id"]
    assert flow["status"] == "draft" and flow["live_version"] is None
    dup = await client.post("/v1/flows", json={"definition": flow_body("Cart", tpl)}, headers=h)
    assert dup.status_code == 409

    # Publishing: version 1, live; publishing an unchanged draft makes no version.
    r = await client.post(f"/v1/flows/{fid}/publish", json={"message": "first"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["version"]["version"] == 1 and r.json()["status"] == "live"
    assert r.json()["warnings"][0]["step_id"] == "remind"
    again = await client.post(f"/v1/flows/{fid}/publish", json={}, headers=h)
    assert again.json()["published"] is False

    # Edit the draft: live stays on version 1 until published as version 2.
    changed = flow_body("Cart", tpl)
    changed["steps"][0]["duration"]["amount"] = 6
    r = await client.put(f"/v1/flows/{fid}/draft", json={"definition": changed}, headers=h)
    assert (
        r.json()["draft_changed"] is True
        and r.json()["live"]["steps"][0]["duration"]["amount"] == 4
    )
    r = await client.post(f"/v1/flows/{fid}/publish", json={"message": "longer"}, headers=h)
    assert r.json()["version"]["version"] == 2
    versions = (await client.get(f"/v1/flows/{fid}/versions", headers=h)).json()
    assert [(v["version"], v["message"]) for v in versions] == [(2, "longer"), (1, "first")]
    v1 = (await client.get(f"/v1/flows/{fid}/versions/1", headers=h)).json()
    assert v1["definition"]["steps"][0]["duration"]["amount"] == 4
    diff = (await client.get(f"/v1/flows/{fid}/diff?from=1&to=2", headers=h)).json()
    assert diff["changed"][0]["step_id"] == "wait"
    assert diff["changed"][0]["changes"] == [{"path": "duration.amount", "before": 4, "after": 6}]

    # Validation errors block publishing with the step id.
    bad = flow_body("Cart", tpl)
    bad["steps"][0]["next"] = "nowhere"
    await client.put(f"/v1/flows/{fid}/draft", json={"definition": bad}, headers=h)
    report = (await client.post(f"/v1/flows/{fid}/validate", headers=h)).json()
    assert report["valid"] is False and report["errors"][0]["step_id"] == "wait"
    r = await client.post(f"/v1/flows/{fid}/publish", json={}, headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == "steps.wait.next"

    # Statuses.
    async def status(to: str) -> int:
        resp = await client.post(f"/v1/flows/{fid}/status", json={"status": to}, headers=h)
        return resp.status_code

    assert await status("paused") == 200
    assert await status("manual") == 409  # paused -> manual is not a transition
    assert await status("live") == 200 and await status("manual") == 200
    assert await status("deleted") == 200
    assert await status("live") == 409  # restore goes through paused
    assert await status("paused") == 200
    listed = (await client.get("/v1/flows?status=paused", headers=h)).json()["data"]
    assert [f["id"] for f in listed] == [fid]
    assert (await client.get("/v1/flows/schema", headers=h)).json()["title"] == "FlowDefinition"
    library = (await client.get("/v1/flows/templates-library", headers=h)).json()
    assert {"Abandoned cart", "Post-purchase"} <= {f["name"] for f in library}


async def test_bad_definition_is_422_with_locations(client, workspaces):
    ws = await workspaces.create()
    body = flow_body("Bad", "not-a-uuid")
    r = await client.post("/v1/flows", json={"definition": body}, headers=ws.admin)
    assert r.status_code == 422
    assert any("template_id" in d["loc"] for d in r.json()["error"]["details"])
