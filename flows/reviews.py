"""The review queue of manual flows: releasing and discarding the sends journeys hold.

A journey of a flow in status `manual` registers each send step in `journey_reviews`
(`JourneyActivities.register_review`) and waits for a decision. Deciding is set-based: one
UPDATE decides one row, a step's rows or the whole flow's, and answers the journeys' workflow
ids; the caller commits, then `signal` wakes each journey (`review_released` /
`review_discarded`). The row is the truth, the signal only a wake-up: a journey that registers
after a decision finds it in its row.

Idempotent: deciding again decides nothing new, but signals again the journeys whose decision
is recorded while they still sit at that step (a signal lost when the API died between its
commit and the signal, or while Temporal was unreachable), so repeating a release is how such a
journey is moved on.

`signal` runs inside the caller's HTTP request (bulk release / discard, and manual → live in
`POST /v1/flows/{id}/status`), `SIGNAL_CONCURRENCY` at a time, after the commit: a call over many
journeys may time out at the client while the decision is already saved. Repeating the call is
safe (see above) and is what the routes' documentation tells callers to do.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

log = structlog.get_logger(__name__)
SIGNAL_CONCURRENCY = 16
Decision = Literal["released", "discarded"]


@dataclass(frozen=True)
class Decided:
    review_id: uuid.UUID
    workflow_id: str
    new: bool  # decided now (False: decided before, signalled again)


_DECIDE = text(
    """
    WITH decided AS (
        UPDATE journey_reviews r
        SET status = CAST(:decision AS varchar), decided_at = now(), decided_by = :by,
            reason = CASE WHEN CAST(:decision AS varchar) = 'discarded'
                          THEN 'review_discarded' END
        WHERE r.workspace_id = :ws AND r.flow_id = :flow AND r.status = 'waiting'
          AND (CAST(:review AS uuid) IS NULL OR r.id = CAST(:review AS uuid))
          AND (CAST(:step AS varchar) IS NULL OR r.step_id = CAST(:step AS varchar))
        RETURNING r.id, r.journey_id
    ), earlier AS (
        SELECT r.id, r.journey_id FROM journey_reviews r
        JOIN journeys j ON j.id = r.journey_id
        WHERE r.workspace_id = :ws AND r.flow_id = :flow
          AND r.status = CAST(:decision AS varchar)
          AND (CAST(:review AS uuid) IS NULL OR r.id = CAST(:review AS uuid))
          AND (CAST(:step AS varchar) IS NULL OR r.step_id = CAST(:step AS varchar))
          AND j.status = 'active' AND j.current_step = r.step_id
    )
    SELECT x.id, j.workflow_id, x.new FROM (
        SELECT id, journey_id, true AS new FROM decided
        UNION ALL SELECT id, journey_id, false AS new FROM earlier
    ) x JOIN journeys j ON j.id = x.journey_id
    """
)


async def decide(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    flow_id: uuid.UUID,
    decision: Decision,
    *,
    by: str,
    review_id: uuid.UUID | None = None,
    step_id: str | None = None,
) -> list[Decided]:
    """Release or discard the waiting sends of a flow (one review, one step's, or all); the
    caller commits, then calls `signal`."""
    rows = await session.execute(
        _DECIDE,
        {
            "ws": workspace_id,
            "flow": flow_id,
            "decision": decision,
            "by": by[:255],
            "review": review_id,
            "step": step_id,
        },
    )
    return [Decided(r.id, r.workflow_id, r.new) for r in rows]


async def release_on_live(
    session: AsyncSession, workspace_id: uuid.UUID, flow_id: uuid.UUID, by: str
) -> list[Decided]:
    """A manual flow went live: everything waiting is released (in the status change's
    transaction, which holds the flow row, so no journey queues a send after it)."""
    return await decide(session, workspace_id, flow_id, "released", by=f"flow live: {by}")


async def signal(temporal: Client | None, decided: list[Decided], decision: Decision) -> int:
    """Wake the journeys (after the commit); how many were signalled. A journey that is gone
    or unreachable is logged, never raised: the decision is saved and repeating it signals
    again."""
    if temporal is None or not decided:
        return 0
    from workflows.journey import JourneyWorkflow, ReviewDecisionInput

    method: Any = (
        JourneyWorkflow.review_released
        if decision == "released"
        else JourneyWorkflow.review_discarded
    )
    limit = asyncio.Semaphore(SIGNAL_CONCURRENCY)

    async def one(d: Decided) -> bool:
        async with limit:
            try:
                handle = temporal.get_workflow_handle(d.workflow_id)
                await handle.signal(method, ReviewDecisionInput(review_id=d.review_id))
            except Exception as exc:  # finished meanwhile, or Temporal unreachable
                log.info("journey not signalled", workflow_id=d.workflow_id, error=str(exc)[:200])
                return False
            return True

    sent = sum(await asyncio.gather(*(one(d) for d in decided)))
    log.info("review decisions signalled", decision=decision, count=sent, total=len(decided))
    return sent
