"""GDPR: export everything about a profile; erase it, and end its running journeys."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from sqlalchemy import text

    from core.db import session_scope
    from models import (
        Event,
        EventOutbox,
        ListAction,
        ListMember,
        ListMembershipChange,
        ProfileList,
    )
    from tests.api.test_push import subscription
    from workflows.search_attributes import PROFILE_ID, WORKSPACE_ID


@workflow.defn
class WaitingJourneyWorkflow:
    """Stands in for a journey waiting in a long delay."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False, timeout=timedelta(days=30))


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Wait until `check()` holds, failing after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def _populated_profile(client, engine, ws, *, key: str) -> dict:
    """A profile with a row in every table that holds personal data."""
    r = await client.post(
        "/v1/profiles",
        headers=ws.admin,
        json={
            "external_id": key,
            "email": f"{key}@example.com",
            "phone": "+48601234567" if key == "erase-me" else None,
            "properties": {"favourite": "tea"},
            "consents": {"email": "subscribed"},
        },
    )
    assert r.status_code == 201, r.text
    profile = r.json()
    r = await client.put(
        f"/v1/profiles/{profile['id']}/consents/sms",
        headers=ws.admin,
        json={"state": "unsubscribed", "source": "keyword"},
    )
    assert r.status_code == 200
    r = await client.post(
        "/v1/push/subscriptions",
        headers=ws.tracking,
        json={"userId": key, "anonymousId": f"anon-{key}", "subscription": subscription(key)},
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/suppressions",
        headers=ws.admin,
        json={"channel": "email", "address": f"{key}@example.com", "reason": "hard_bounce"},
    )
    assert r.status_code == 201
    async with session_scope(engine) as session:
        group = ProfileList(workspace_id=ws.id, name=f"list-{key}")
        session.add(group)
        await session.flush()
        session.add(
            ListMember(list_id=group.id, profile_id=profile["id"], workspace_id=ws.id, source="api")
        )
        session.add(
            ListMembershipChange(
                workspace_id=ws.id,
                list_id=group.id,
                profile_id=profile["id"],
                action=ListAction.joined,
                source="api",
            )
        )
        for n, metric in enumerate(["Viewed Product", "Added to Cart", "Placed Order"]):
            event = Event(
                workspace_id=ws.id,
                profile_id=profile["id"],
                metric=metric,
                message_id=f"{key}-{n}",
                value=Decimal("99.90") if metric == "Placed Order" else None,
                currency="PLN" if metric == "Placed Order" else None,
                properties={"sku": f"SKU-{n}"},
            )
            session.add(event)
            await session.flush()
            session.add(EventOutbox(event_id=event.id, workspace_id=ws.id))
    return profile


async def _rows_about(engine, profile_id: str) -> dict[str, int]:
    """Rows per table that reference the profile, over every table with a `profile_id`."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT table_name FROM information_schema.columns "
                    "WHERE column_name = 'profile_id' AND table_schema = current_schema()"
                )
            )
        ).scalars()
        counts = {}
        for table in tables:
            counts[table] = (
                await conn.execute(
                    text(f'SELECT count(*) FROM "{table}" WHERE profile_id = :p'),
                    {"p": profile_id},
                )
            ).scalar_one()
        counts["profiles"] = (
            await conn.execute(
                text("SELECT count(*) FROM profiles WHERE id = :p"), {"p": profile_id}
            )
        ).scalar_one()
        counts["event_outbox"] = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM event_outbox o LEFT JOIN events e ON e.id = o.event_id "
                    "WHERE e.id IS NULL OR e.profile_id = :p"
                ),
                {"p": profile_id},
            )
        ).scalar_one()
    return counts


async def _suppressed(engine, address: str) -> bool:
    async with engine.connect() as conn:
        return bool(
            (
                await conn.execute(
                    text("SELECT count(*) FROM suppressions WHERE address = :a"), {"a": address}
                )
            ).scalar_one()
        )


async def test_export_contains_everything_stored(client, engine, workspaces):
    ws = await workspaces.create()
    profile = await _populated_profile(client, engine, ws, key="export-me")
    r = await client.get(f"/v1/profiles/{profile['id']}/export", headers=ws.admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "attachment" in r.headers["content-disposition"]
    doc = json.loads(r.content)
    assert doc["profile"]["id"] == profile["id"]
    assert doc["profile"]["email"] == "export-me@example.com"
    assert doc["profile"]["properties"] == {"favourite": "tea"}
    assert [a["anonymous_id"] for a in doc["aliases"]] == ["anon-export-me"]
    assert {(c["channel"], c["state"]) for c in doc["consents"]} == {
        ("email", "subscribed"),
        ("sms", "unsubscribed"),
    }
    assert [(c["channel"], c["source"]) for c in doc["consent_history"]] == [
        ("sms", "keyword"),
        ("email", "api"),
    ]
    assert [s["address"] for s in doc["suppressions"]] == ["export-me@example.com"]
    assert [m["name"] for m in doc["lists"]] == ["list-export-me"]
    assert [c["action"] for c in doc["list_changes"]] == ["joined"]
    assert [p["endpoint"] for p in doc["push_subscriptions"]] == [
        subscription("export-me")["endpoint"]
    ]
    assert [e["metric"] for e in doc["events"]] == [
        "Viewed Product",
        "Added to Cart",
        "Placed Order",
    ]
    assert doc["events"][2]["value"] == 99.9
    assert doc["events"][2]["properties"] == {"sku": "SKU-2"}

    # A profile without events still exports a well-formed document.
    empty = (await client.post("/v1/profiles", headers=ws.admin, json={})).json()
    r = await client.get(f"/v1/profiles/{empty['id']}/export", headers=ws.admin)
    assert json.loads(r.content)["events"] == []


async def test_erasure_removes_all_data_and_terminates_journeys(
    client, engine, workspaces, temporal_env, task_queue
):
    ws = await workspaces.create()
    profile = await _populated_profile(client, engine, ws, key="erase-me")
    bystander = await _populated_profile(client, engine, ws, key="keep-me")
    before = await _rows_about(engine, profile["id"])
    for table in (
        "events",
        "consents",
        "consent_changes",
        "profile_aliases",
        "list_members",
        "list_membership_changes",
        "push_subscriptions",
        "profiles",
    ):
        assert before[table] > 0, table

    temporal = temporal_env.client

    async def start(profile_id: str) -> WorkflowHandle:
        return await temporal.start_workflow(
            WaitingJourneyWorkflow.run,
            id=f"journey-{uuid.uuid4()}",
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(WORKSPACE_ID, str(ws.id)),
                    SearchAttributePair(PROFILE_ID, profile_id),
                ]
            ),
        )

    async with Worker(temporal, task_queue=task_queue, workflows=[WaitingJourneyWorkflow]):
        journey = await start(profile["id"])
        other_journey = await start(bystander["id"])
        try:

            async def listable() -> bool:
                query = f'{PROFILE_ID.name} = "{profile["id"]}" AND ExecutionStatus = "Running"'
                return any([w.id == journey.id async for w in temporal.list_workflows(query)])

            await eventually(listable)  # visibility is eventually consistent

            r = await client.delete(f"/v1/profiles/{profile['id']}", headers=ws.admin)
            assert r.status_code == 204, r.text

            async def terminated() -> bool:
                return (await journey.describe()).status == WorkflowExecutionStatus.TERMINATED

            await eventually(terminated)
            last = (await journey.fetch_history()).events[-1]
            assert last.workflow_execution_terminated_event_attributes.reason == "profile erased"
            status = (await other_journey.describe()).status
            assert status == WorkflowExecutionStatus.RUNNING
        finally:
            await other_journey.terminate(reason="test over")

    after = await _rows_about(engine, profile["id"])
    assert after == {table: 0 for table in after}, after
    assert not await _suppressed(engine, "erase-me@example.com")
    assert await _suppressed(engine, "keep-me@example.com")
    assert (await _rows_about(engine, bystander["id"]))["events"] == 3

    assert (await client.get(f"/v1/profiles/{profile['id']}", headers=ws.admin)).status_code == 404
    r = await client.get(
        "/v1/profiles/lookup", headers=ws.admin, params={"email": "erase-me@example.com"}
    )
    assert r.status_code == 404
    r = await client.delete(f"/v1/profiles/{profile['id']}", headers=ws.admin)
    assert r.status_code == 404


async def test_another_workspace_cannot_erase_or_export(client, engine, workspaces):
    ws, other = await workspaces.create(), await workspaces.create()
    profile = await _populated_profile(client, engine, ws, key="mine")
    for method in ("DELETE", "GET"):
        path = f"/v1/profiles/{profile['id']}" + ("/export" if method == "GET" else "")
        r = await client.request(method, path, headers=other.admin)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
    assert (await _rows_about(engine, profile["id"]))["events"] == 3
