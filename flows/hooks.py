"""Telling running journeys that their flow changed: a new version, or a new status.

Called after the change is committed, by the API (`api/routes/flows.py`) and by
`waymark flows apply` (`cli/flows.py`). The journeys are found in the `journeys` table (the
active rows of the flow; the workflow registers its row first thing), not with a visibility
query: visibility is eventually consistent, so a journey started a moment before the change
could be missing from it. Each gets a signal (fire-and-forget), a few at a time.

No journey is left behind by that query: `register_journey` reads the flow *after* its row is
committed, so a journey whose row this query did not see reads the new version and status
there (the change committed before the query). A signal that is lost (Temporal unreachable,
the process stopped half-way) is caught up by the journey itself: every `record_step` answers
the flow's live version and status, so it follows them from its next step. What that fallback
cannot do is re-time a delay already being slept: only the signal does that. A failure to
signal is logged, never raised: the change is already saved.

Cost: one query, then `CONCURRENCY` signal RPCs in flight — about 400 journeys a second on the
2-core dev machine (2.3x a sequential loop), so the request that publishes a flow with 100,000
running journeys lasts minutes. Handing the fan-out to a durable background workflow is the
next step when flows get that big.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from workflows.journey import DefinitionUpdatedInput, FlowStatusChangedInput, JourneyWorkflow

log = structlog.get_logger(__name__)

CONCURRENCY = 32  # signal RPCs in flight at once

_ACTIVE = text(
    "SELECT DISTINCT workflow_id FROM journeys "
    "WHERE workspace_id = :ws AND flow_id = :flow AND status = 'active'"
)


async def active_journeys(
    session: AsyncSession, workspace_id: uuid.UUID, flow_id: uuid.UUID
) -> list[str]:
    """The workflow ids of the flow's active journeys (one query; a committed view)."""
    rows = await session.execute(_ACTIVE, {"ws": workspace_id, "flow": flow_id})
    return list(rows.scalars())


async def _signal_all(
    temporal: Client | None,
    session: AsyncSession,
    workspace_id: uuid.UUID,
    flow_id: uuid.UUID,
    signal: Any,
    arg: Any,
) -> int:
    """Send `signal` to every active journey of the flow; how many got it."""
    if temporal is None:
        return 0
    try:
        workflow_ids = await active_journeys(session, workspace_id, flow_id)
    except Exception as exc:  # the change is saved; journeys catch up at their next step
        log.warning("could not list journeys", flow_id=str(flow_id), error=str(exc))
        return 0
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(workflow_id: str) -> bool:
        async with limit:
            try:
                await temporal.get_workflow_handle(workflow_id).signal(signal, arg)
            except RPCError as exc:  # finished between the query and the signal, or unreachable
                log.info("journey not signalled", workflow_id=workflow_id, error=str(exc))
                return False
            return True

    sent = sum(await asyncio.gather(*(one(w) for w in workflow_ids)))
    log.info(
        "journeys signalled",
        flow_id=str(flow_id),
        signal=signal.__name__,
        count=sent,
        missed=len(workflow_ids) - sent,
    )
    return sent


async def on_published(
    temporal: Client | None,
    session: AsyncSession,
    workspace_id: uuid.UUID,
    flow_id: uuid.UUID,
    version: int,
) -> int:
    """Version `version` is live: journeys move to it at the step with the same id (a journey
    whose step is gone leaves, removed; a delay whose settings changed is re-timed from when
    the journey entered it)."""
    return await _signal_all(
        temporal,
        session,
        workspace_id,
        flow_id,
        JourneyWorkflow.definition_updated,
        DefinitionUpdatedInput(version=version),
    )


async def on_status_changed(
    temporal: Client | None,
    session: AsyncSession,
    workspace_id: uuid.UUID,
    flow_id: uuid.UUID,
    status: str,
) -> int:
    """paused: journeys hold before their next step; live/manual: they go on where they were;
    draft/deleted: they leave, counted as removed (`flow_draft` / `flow_deleted`)."""
    return await _signal_all(
        temporal,
        session,
        workspace_id,
        flow_id,
        JourneyWorkflow.flow_status_changed,
        FlowStatusChangedInput(status=status),
    )
