"""The review queue's races, at the database (no worker): a send registered while its flow goes
live is never stranded, and a decision that loses the race to the other one answers 409."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import ActivityEnvironment

from activities.journeys import JourneyActivities, RegisterReviewInput, RegisterReviewResult
from api.routes import flow_reviews
from core.db import session_scope
from core.settings import Settings
from flows import reviews, service
from models import Flow, FlowStatus
from tests.flows.test_journey import customer, definition, shop, store_flow
from tests.helpers import until


@dataclass
class Queue:
    """A manual flow whose journeys (rows only, no workflows) stand at the send step `mail`."""

    ws: Any  # tests.factories.TestWorkspace (by name, pytest would collect it)
    flow_id: uuid.UUID
    template_id: uuid.UUID
    people: list[uuid.UUID]
    journeys: list[uuid.UUID]
    acts: JourneyActivities

    async def register(self, i: int) -> RegisterReviewResult:
        """The journey's send step registering itself, as the workflow's activity does."""
        request = RegisterReviewInput(
            workspace_id=self.ws.id, flow_id=self.flow_id, version=1, step_id="mail",
            journey_id=self.journeys[i], profile_id=self.people[i], channel="email",
            template_id=self.template_id,
        )  # fmt: skip
        return await ActivityEnvironment().run(self.acts.register_review, request)


async def queue(engine, workspaces, size: int) -> Queue:
    ws, template_id = await shop(engine, workspaces)
    steps = [{"type": "send", "id": "mail", "channel": "email", "template_id": str(template_id)}]
    flow_id = await store_flow(engine, ws.id, definition(steps), status="manual")
    people = [await customer(engine, ws) for _ in range(size)]
    journeys = [uuid.uuid4() for _ in people]
    insert = text(
        "INSERT INTO journeys (id, workspace_id, flow_id, flow_version, profile_id, workflow_id, "
        "status, current_step) VALUES (:j, :ws, :f, 1, :p, :wf, 'active', 'mail')"
    )
    async with engine.begin() as conn:
        for jid, pid in zip(journeys, people, strict=True):
            row = {"j": jid, "ws": ws.id, "f": flow_id, "p": pid, "wf": f"wf-{jid}"}
            await conn.execute(insert, row)
    acts = JourneyActivities(engine, Settings(database_url="postgresql://x/y"))
    return Queue(ws, flow_id, template_id, people, journeys, acts)


async def test_a_send_queued_while_the_flow_goes_live_is_never_stranded(engine, workspaces):
    """The journey's registration waits for a status change in flight (it holds the flow row),
    then sees `live` and sends at once; a registration before it is released by it."""
    q = await queue(engine, workspaces, 2)
    before = await q.register(0)
    assert before.status == "waiting"
    async with AsyncSession(engine, expire_on_commit=False) as session:
        flow = await session.get(Flow, q.flow_id)
        await service.change_status(session, flow, FlowStatus.live, author="test")
        racing = asyncio.create_task(q.register(1))

        async def blocked() -> bool:
            """The racing registration, in this test's database, waits for a lock (the flow
            row the status change holds); not any lock wait of the cluster."""
            async with engine.connect() as other:
                waiting = await other.execute(
                    text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                        " WHERE NOT l.granted AND a.datname = current_database()"
                        " AND a.query LIKE 'INSERT INTO journey_reviews%'"
                    )
                )
                return waiting.scalar_one() > 0

        await until(blocked)
        assert not racing.done()
        released = await reviews.release_on_live(session, q.ws.id, q.flow_id, "test")
        await session.commit()
    assert [d.review_id for d in released] == [before.review_id]
    after = await racing
    assert (after.status, after.review_id) == ("send", None)


async def test_a_decision_that_loses_the_race_answers_409(client, engine, workspaces, monkeypatch):
    """A discard whose check passes while the send is still waiting, but whose UPDATE comes
    after a release committed, answers 409 like a discard after the release — never a 200 with
    the row `released`."""
    q = await queue(engine, workspaces, 1)
    queued = await q.register(0)
    assert queued.status == "waiting"
    author = flow_reviews._author

    async def release_first(session, principal) -> str:
        """Between the discard's check and its UPDATE, a release commits."""
        async with session_scope(engine) as other:
            await reviews.decide(other, q.ws.id, q.flow_id, "released", by="rival",
                                 review_id=queued.review_id)  # fmt: skip
        return await author(session, principal)

    monkeypatch.setattr(flow_reviews, "_author", release_first)
    path = f"/v1/flows/{q.flow_id}/reviews/{queued.review_id}"
    r = await client.post(f"{path}/discard", headers=q.ws.admin)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "review_decided"
    assert "released already" in r.json()["error"]["message"]
    row = (await client.get(path, headers=q.ws.admin)).json()
    assert (row["status"], row["decided_by"]) == ("released", "rival")
