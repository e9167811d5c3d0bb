"""CSV import through the API: upload, background job on a real Temporal worker, report."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time

import pytest

from models import Scope
from tests.factories import bearer
from worker import build_worker

CSV = (
    "Email Address,phone,first_name,country,email_consent,sms_consent,orders,Notes\n"
    "anna@example.com,600100200,Anna,PL,subscribed,yes,3,a\n"
    "not-an-email,,Bob,PL,,,1,b\n"
    "carl@example.com,+1 12,Carl,US,,,2,c\n"
    "dora@example.com,+48600100300,Dora,PL,no,,0,d\n"
)


async def _wait_done(client, ws, job_id: str, within: float = 60) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/imports/{job_id}", headers=ws.admin)).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.2)
    pytest.fail(f"import {job_id} did not finish within {within} s: {job}")


async def _upload(client, ws, body: str, **form) -> dict:
    files = {"file": ("people.csv", body.encode(), "text/csv")}
    r = await client.post("/v1/imports", files=files, data=form, headers=ws.admin)
    assert r.status_code == 202, r.text
    return r.json()


async def test_import_job_creates_profiles_consents_list_and_reports_errors(
    client, workspaces, temporal_env, settings, engine, task_queue
):
    ws = await workspaces.create()
    lst = (await client.post("/v1/lists", json={"name": "Imported"}, headers=ws.admin)).json()
    form = {
        "list_id": lst["id"],
        "mapping": json.dumps({"Email Address": "email"}),
        "skip": json.dumps(["Notes"]),
    }
    async with build_worker(temporal_env.client, settings, engine, task_queue=task_queue):
        queued = await _upload(client, ws, CSV, **form)
        assert queued["status"] in ("queued", "running")
        job = await _wait_done(client, ws, queued["id"])
        assert job["status"] == "succeeded", job
        assert (job["total_rows"], job["created_rows"], job["failed_rows"]) == (4, 2, 2)

        r = await client.get(f"/v1/imports/{job['id']}/errors", headers=ws.admin)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        report = list(csv.DictReader(io.StringIO(r.text)))
        assert [(e["row"], e["column"]) for e in report] == [("3", "Email Address"), ("4", "phone")]

        members = (await client.get(f"/v1/lists/{lst['id']}/members", headers=ws.admin)).json()
        by_email = {m["email"]: m for m in members["data"]}
        assert set(by_email) == {"anna@example.com", "dora@example.com"}
        assert by_email["anna@example.com"]["phone"] == "+48600100200"
        assert all(m["source"] == "import" for m in members["data"])
        changes = (await client.get(f"/v1/lists/{lst['id']}/changes", headers=ws.admin)).json()
        assert [c["action"] for c in changes["data"]] == ["joined", "joined"]

        # The same file again: nothing changes, and the counts say so.
        again = await _wait_done(client, ws, (await _upload(client, ws, CSV, **form))["id"])
        assert (again["created_rows"], again["updated_rows"]) == (0, 0)
        assert (again["unchanged_rows"], again["failed_rows"]) == (2, 2)
        changes = (await client.get(f"/v1/lists/{lst['id']}/changes", headers=ws.admin)).json()
        assert len(changes["data"]) == 2


async def test_bad_file_fails_the_job_with_a_message(
    client, workspaces, temporal_env, settings, engine, task_queue
):
    ws = await workspaces.create()
    async with build_worker(temporal_env.client, settings, engine, task_queue=task_queue):
        job = await _upload(client, ws, "name,city\nAnna,Kraków\n")
        job = await _wait_done(client, ws, job["id"])
    assert job["status"] == "failed"
    assert "email, phone or external_id" in job["error"]


async def test_imports_are_private_to_their_workspace(client, workspaces):
    ws, other = await workspaces.create(), await workspaces.create("Other")
    files = {"file": ("p.csv", b"email\na@example.com\n", "text/csv")}
    assert (await client.post("/v1/imports", files=files)).status_code == 401
    reader = bearer(await ws.key(Scope.read))
    assert (await client.post("/v1/imports", files=files, headers=reader)).status_code == 403

    lst = (await client.post("/v1/lists", json={"name": "Mine"}, headers=ws.admin)).json()
    r = await client.post(
        "/v1/imports", files=files, data={"list_id": lst["id"]}, headers=other.admin
    )
    assert r.status_code == 404  # another workspace's list does not exist here
    r = await client.post(
        "/v1/imports", files=files, data={"mapping": "not json"}, headers=ws.admin
    )
    assert r.status_code == 422 and "mapping" in r.json()["error"]["message"]

    job = await _upload(client, ws, "email\na@example.com\n")
    assert (await client.get(f"/v1/imports/{job['id']}", headers=reader)).status_code == 200
    for path in (f"/v1/imports/{job['id']}", f"/v1/imports/{job['id']}/errors"):
        r = await client.get(path, headers=other.admin)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert (await client.get(path)).status_code == 401
