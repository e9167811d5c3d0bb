"""The review queue of a manual flow, through the API and the real worker on the dev server:
sends wait until released, a discard removes the journey, exits and new versions still work
while a send waits, and setting the flow back to live releases everything."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from httpx import AsyncClient
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from models import Scope
from tests.factories import bearer
from tests.helpers import until
from worker import build_dispatcher, build_worker
from workflows.journey import JourneyWorkflow

if TYPE_CHECKING:  # imported by name, pytest would try to collect it as a test class
    from tests.factories import TestWorkspace

HISTORIES = Path(__file__).parent / "histories"


class Manual:
    """A shop with a manual flow: Started Checkout → `mail` (email) → `later` (email) → tag."""

    def __init__(self, http: AsyncClient, ws: TestWorkspace, engine: Any, temporal: Any) -> None:
        self.http, self.ws, self.engine, self.temporal = http, ws, engine, temporal
        self.flow: str = ""

    async def api(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        r = await self.http.request(method, path, headers=kw.pop("headers", self.ws.admin), **kw)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    async def setup(self, **settings: Any) -> None:
        await self.api("PATCH", "/v1/workspace/channel-settings", json={
            "from_email": "shop@example.com", "smart_sending_hours": {"email": 0}})  # fmt: skip
        ids = []
        for n in (1, 2):
            body = {"name": f"Mail {n}", "channel": "email", "subject": f"Mail {n}",
                    "html": f"<p>Hi {{{{ profile.first_name }}}}, mail {n}</p>"}  # fmt: skip
            ids.append((await self.api("POST", "/v1/templates", 201, json=body))["id"])
        body = {"definition": flow(*ids, **settings)}
        self.flow = (await self.api("POST", "/v1/flows", 201, json=body))["id"]
        await self.api("POST", f"/v1/flows/{self.flow}/publish", json={})
        await self.api("POST", f"/v1/flows/{self.flow}/status", json={"status": "manual"})

    async def customer(self, name: str) -> str:
        body = {"external_id": name, "email": f"{name}@example.com", "first_name": name,
                "consents": {"email": "subscribed"}}  # fmt: skip
        return (await self.api("POST", "/v1/profiles", 201, json=body))["id"]

    async def track(self, user: str, event: str = "Started Checkout") -> None:
        call = {"userId": user, "event": event, "messageId": str(uuid.uuid4())}
        r = await self.http.post("/v1/track", headers=self.ws.tracking, json=call)
        assert r.status_code == 200, r.text

    async def queue(self, **params: Any) -> list[dict]:
        page = await self.api("GET", f"/v1/flows/{self.flow}/reviews", params=params)
        return page["data"]

    async def waiting(self, count: int, step: str = "mail") -> list[dict]:
        async def ready() -> list[dict] | None:
            rows = await self.queue(step_id=step)
            return rows if len(rows) == count else None

        return await until(ready)

    async def sent(self, profile_id: str) -> list[str]:
        page = await self.api("GET", "/v1/outbox", params={"profile_id": profile_id})
        return sorted(m["subject"] for m in page["data"])

    async def journey(self, profile_id: str) -> dict:
        async with self.engine.connect() as conn:
            from sqlalchemy import text

            rows = await conn.execute(
                text("SELECT * FROM journeys WHERE flow_id = :f AND profile_id = :p"),
                {"f": self.flow, "p": profile_id},
            )
            return dict(rows.mappings().one())

    async def ended(self, profile_id: str) -> dict:
        async def done() -> dict | None:
            row = await self.journey(profile_id)
            return row if row["status"] != "active" else None

        return await until(done)


def flow(first: str, second: str, **settings: Any) -> dict:
    return {
        "name": f"Manual {uuid.uuid4().hex[:6]}",
        "trigger": {"type": "event", "metric": "Started Checkout"},
        "settings": {"exits": [{"type": "order_placed"}], **settings},
        "entry": "mail",
        "steps": [
            {"id": "mail", "type": "send", "channel": "email", "template_id": first,
             "next": "later"},
            {"id": "later", "type": "send", "channel": "email", "template_id": second,
             "next": "done"},
            {"id": "done", "type": "tag", "tag": "reviewed"},
        ],
    }  # fmt: skip


@asynccontextmanager
async def running(
    client, workspaces, engine, temporal_env, settings, **flow_settings: Any
) -> AsyncIterator[Manual]:
    """The shop, its worker and the outbox dispatcher (with the journey router) running."""
    shop = Manual(client, await workspaces.create("Manual shop"), engine, temporal_env.client)
    await shop.setup(**flow_settings)
    stop = asyncio.Event()
    dispatcher = build_dispatcher(temporal_env.client, settings, engine)
    async with build_worker(temporal_env.client, settings, engine):
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            yield shop
        finally:
            stop.set()
            await task


@pytest.fixture
async def manual(client, workspaces, engine, temporal_env, settings) -> AsyncIterator[Manual]:
    async with running(client, workspaces, engine, temporal_env, settings) as shop:
        yield shop


@pytest.fixture
async def restarting(client, workspaces, engine, temporal_env, settings) -> AsyncIterator[Manual]:
    """The manual flow with the `restart` duplicate policy."""
    async with running(
        client, workspaces, engine, temporal_env, settings, duplicate="restart"
    ) as shop:
        yield shop


async def test_sends_wait_until_released_and_a_discard_removes_the_journey(manual: Manual):
    ann, bob, cid = [await manual.customer(n) for n in ("ann", "bob", "cid")]
    for user in ("ann", "bob", "cid"):
        await manual.track(user)
    queued = await manual.waiting(3)
    assert {r["profile_id"] for r in queued} == {ann, bob, cid}
    assert {r["profile_email"] for r in queued} == {"ann@example.com", "bob@example.com",
                                                    "cid@example.com"}  # fmt: skip
    assert all(r["status"] == "waiting" and r["channel"] == "email" for r in queued)
    by_profile = {r["profile_id"]: r for r in queued}
    for who in (ann, bob, cid):  # nothing goes out before a decision
        assert await manual.sent(who) == []

    async def in_review() -> bool:  # what an operator sees in the Temporal UI
        query = f'WaymarkFlowId = "{manual.flow}" AND WaymarkStatus = "in_review"'
        return len([w async for w in manual.temporal.list_workflows(query)]) == 3

    await until(in_review)

    # A reader lists the queue (paginated); only a writer decides.
    reader = bearer(await manual.ws.key(Scope.read, name="reviewer"))
    first = await manual.api("GET", f"/v1/flows/{manual.flow}/reviews", params={"limit": 2},
                             headers=reader)  # fmt: skip
    after = {"limit": 2, "cursor": first["next_cursor"]}
    rest = await manual.api("GET", f"/v1/flows/{manual.flow}/reviews", params=after,
                            headers=reader)  # fmt: skip
    assert [r["id"] for r in first["data"] + rest["data"]] == [r["id"] for r in queued]
    assert rest["next_cursor"] is None
    ann_review = f"/v1/flows/{manual.flow}/reviews/{by_profile[ann]['id']}"
    await manual.api("POST", f"{ann_review}/release", 403, headers=reader)

    # Ann's first mail is released: it goes out, and her second send waits in its turn.
    released = await manual.api("POST", f"{ann_review}/release")
    assert released["status"] == "released" and released["decided_by"]
    await manual.waiting(1, step="later")
    assert await manual.sent(ann) == ["Mail 1"]
    again = await manual.api("POST", f"{ann_review}/release")  # idempotent
    assert again["status"] == "released" and again["decided_at"] == released["decided_at"]
    assert await manual.sent(ann) == ["Mail 1"]

    # Bob's send is discarded: nothing is sent, and he is removed from the flow.
    bob_review = f"/v1/flows/{manual.flow}/reviews/{by_profile[bob]['id']}"
    assert (await manual.api("POST", f"{bob_review}/discard"))["status"] == "discarded"
    journey = await manual.ended(bob)
    assert (journey["status"], journey["end_reason"]) == ("removed", "review_discarded")
    error = await manual.api("POST", f"{bob_review}/release", 409)
    assert error["error"]["code"] == "review_decided"

    # Cid orders while his send waits: the exit takes him out, his send is discarded.
    await manual.track("cid", "Placed Order")
    journey = await manual.ended(cid)
    assert (journey["status"], journey["end_reason"]) == ("exited", "order_placed")
    cid_row = await manual.api("GET", f"/v1/flows/{manual.flow}/reviews/{by_profile[cid]['id']}")
    assert (cid_row["status"], cid_row["reason"]) == ("discarded", "order_placed")
    assert await manual.sent(bob) == [] and await manual.sent(cid) == []

    # Release everything waiting at `later`: Ann's second mail goes out, her journey completes.
    decided = await manual.api("POST", f"/v1/flows/{manual.flow}/reviews/release",
                               json={"step_id": "later"})  # fmt: skip
    assert decided == {"decided": 1, "signalled": 1}
    assert (await manual.ended(ann))["status"] == "completed"
    assert await manual.sent(ann) == ["Mail 1", "Mail 2"]
    assert await manual.queue() == []
    statuses = {r["status"] for r in await manual.queue(status="released")}
    assert statuses == {"released"} and len(await manual.queue(status="released")) == 2

    # A recorded history of a reviewed journey (docs/VERSIONING.md): it replays on this code.
    history = await _history(manual, ann)
    if os.environ.get("WM_RECORD_HISTORIES"):
        HISTORIES.joinpath("journey_review.json").write_text(history.to_json())
    await Replayer(
        workflows=[JourneyWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)


async def _history(manual: Manual, profile_id: str) -> WorkflowHistory:
    workflow_id = (await manual.journey(profile_id))["workflow_id"]
    return await manual.temporal.get_workflow_handle(workflow_id).fetch_history()


async def test_going_live_releases_everything_waiting(manual: Manual):
    people = [await manual.customer(n) for n in ("dan", "eve")]
    for user in ("dan", "eve"):
        await manual.track(user)
    await manual.waiting(2)
    changed = await manual.api("POST", f"/v1/flows/{manual.flow}/status",
                               json={"status": "live"})  # fmt: skip
    assert changed == {"status": "live", "previous": "manual"}
    for who in people:  # both sends, and the second step does not wait any more
        assert (await manual.ended(who))["status"] == "completed"
        assert await manual.sent(who) == ["Mail 1", "Mail 2"]
    released = await manual.queue(status="released")
    assert len(released) == 2 and all(r["decided_by"].startswith("flow live") for r in released)
    assert await manual.queue() == []


async def test_a_new_version_without_the_step_removes_a_waiting_journey(manual: Manual):
    fay = await manual.customer("fay")
    await manual.track("fay")
    [queued] = await manual.waiting(1)
    draft = (await manual.api("GET", f"/v1/flows/{manual.flow}"))["live"]
    draft["steps"] = [s for s in draft["steps"] if s["id"] != "mail"]
    draft["entry"] = "later"
    await manual.api("PUT", f"/v1/flows/{manual.flow}/draft", json={"definition": draft})
    await manual.api("POST", f"/v1/flows/{manual.flow}/publish", json={"message": "no mail"})
    journey = await manual.ended(fay)
    assert (journey["status"], journey["end_reason"]) == ("removed", "step_removed")
    row = await manual.api("GET", f"/v1/flows/{manual.flow}/reviews/{queued['id']}")
    assert (row["status"], row["reason"]) == ("discarded", "step_removed")
    assert await manual.sent(fay) == []


async def test_bad_requests_are_refused_clearly(manual: Manual):
    reviews = f"/v1/flows/{manual.flow}/reviews"
    r = await manual.api("POST", f"{reviews}/release", 422, json={"step_id": "Not A Step!"})
    assert r["error"]["code"]
    r = await manual.api("POST", f"{reviews}/{uuid.uuid4()}/release", 404)
    assert r["error"]["code"] == "not_found"
    r = await manual.api("GET", reviews, 400, params={"cursor": "bogus!"})
    assert r["error"]["code"] == "invalid_cursor"
    r = await manual.api("GET", reviews, 422, params={"status": "maybe"})
    assert r["error"]["code"]
    assert await manual.api("POST", f"{reviews}/release") == {"decided": 0, "signalled": 0}
    r = await manual.api("GET", f"/v1/flows/{uuid.uuid4()}/reviews", 404)
    assert r["error"]["code"] == "not_found"


async def test_deleting_the_flow_discards_the_waiting_sends(manual: Manual):
    gus = await manual.customer("gus")
    await manual.track("gus")
    [queued] = await manual.waiting(1)
    await manual.api("POST", f"/v1/flows/{manual.flow}/status", json={"status": "deleted"})
    journey = await manual.ended(gus)
    assert (journey["status"], journey["end_reason"]) == ("removed", "flow_deleted")
    row = await manual.api("GET", f"/v1/flows/{manual.flow}/reviews/{queued['id']}")
    assert (row["status"], row["reason"]) == ("discarded", "flow_deleted")
    assert await manual.sent(gus) == []


async def test_a_restart_discards_the_send_its_old_journey_held(restarting: Manual, engine):
    """`restart` terminates the old journey (its `end_journey` never runs): the router closes
    it and discards its waiting send — for a whole batch in one statement."""
    from sqlalchemy import event

    people = {name: await restarting.customer(name) for name in ("hal", "ida", "jon")}
    for name in people:
        await restarting.track(name)
    old = {r["journey_id"] for r in await restarting.waiting(3)}

    closing: list[str] = []

    def seen(conn, cursor, statement, *args: Any) -> None:
        if "end_reason = 'restarted'" in statement:
            closing.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        # All three check out again in one call: one outbox batch, three restarts.
        calls = [{"type": "track", "userId": name, "event": "Started Checkout",
                  "messageId": str(uuid.uuid4())} for name in people]  # fmt: skip
        r = await restarting.http.post(
            "/v1/batch", headers=restarting.ws.tracking, json={"batch": calls}
        )
        assert r.status_code == 200, r.text

        async def only_the_new_ones_wait() -> list[dict] | None:
            rows = await restarting.queue()
            fresh = [r for r in rows if r["journey_id"] not in old]
            return rows if len(fresh) == len(rows) == 3 else None

        queued = await until(only_the_new_ones_wait)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert {r["profile_id"] for r in queued} == set(people.values())
    discarded = await restarting.queue(status="discarded")
    assert {r["journey_id"] for r in discarded} == old
    assert {r["reason"] for r in discarded} == {"restarted"}
    async with engine.connect() as conn:
        from sqlalchemy import text

        ended = await conn.execute(
            text("SELECT status, end_reason FROM journeys WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": sorted(old)},
        )
        assert set(ended.all()) == {("removed", "restarted")}
    assert len(closing) == 1  # one statement for the batch, not one per restart
    for who in people.values():
        assert await restarting.sent(who) == []
