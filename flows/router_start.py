"""Starting journeys: the entry rules every trigger shares (events, list joins, segment entries).

The event router (`flows.router`) and the membership router (`flows.router_membership`) turn
their input into `Entry`s (a profile entering a flow, with the key of what made it enter and the
journey's trigger event); `JourneyStarter.start` applies the entry rules to a batch of them:

1. One query on `journeys` finds which of those would-be journeys already exist (a re-delivered
   batch) and, for flows with a cooldown, when the profile last entered the flow.
2. Journeys start with deterministic ids (`flows.runtime.journey_workflow_id`):
   - new_instance: `journey-{flow}-{profile}-{key}`; conflict USE_EXISTING, reuse
     REJECT_DUPLICATE: the same event (or membership change) never starts a second journey;
   - ignore: `journey-{flow}-{profile}`; conflict FAIL (refused while one runs), reuse
     ALLOW_DUPLICATE (a customer who finished the flow is not a duplicate);
   - restart: `journey-{flow}-{profile}`; conflict TERMINATE_EXISTING, reuse ALLOW_DUPLICATE;
     the terminated journey's row is closed here as removed (`restarted`), and a send it held
     in the review queue is discarded (`restarted`) — one statement per batch.
   The flow filter is not checked here: the journey checks it first thing (and before every
   step), so it is removed with reason `filter` and that shows in statistics.

Starts are RPCs: they run concurrently, at most `limit` at once, and starts of one workflow id
stay in batch order. Everything is idempotent, as the outbox requires.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from flows.definition import FlowDefinition
from flows.runtime import journey_id, journey_workflow_id
from workflows import search_attributes as sa
from workflows.journey import JourneyWorkflow, StartJourneyInput

POLICIES = {
    "new_instance": (WorkflowIDReusePolicy.REJECT_DUPLICATE, WorkflowIDConflictPolicy.USE_EXISTING),
    "ignore": (WorkflowIDReusePolicy.ALLOW_DUPLICATE, WorkflowIDConflictPolicy.FAIL),
    "restart": (WorkflowIDReusePolicy.ALLOW_DUPLICATE, WorkflowIDConflictPolicy.TERMINATE_EXISTING),
}

_KNOWN = text(
    """
    SELECT id, flow_id, profile_id, started_at FROM journeys
    WHERE id = ANY(CAST(:ids AS uuid[]))
       OR (flow_id = ANY(CAST(:flows AS uuid[])) AND profile_id = ANY(CAST(:profiles AS uuid[]))
           AND started_at > :since)
    """
)
# The journeys a restart replaced (TERMINATE_EXISTING: their `end_journey` never runs) are
# closed as removed, and a send one of them held in the review queue is discarded with them —
# one statement per batch, whatever the number of restarts.
_RESTARTED = text(
    """
    WITH started AS (
        SELECT * FROM unnest(CAST(:flows AS uuid[]), CAST(:profiles AS uuid[]),
                             CAST(:ids AS uuid[])) AS s(flow_id, profile_id, journey_id)
    ), closed AS (
        UPDATE journeys j SET status = 'removed', end_reason = 'restarted', ended_at = now()
        FROM started s
        WHERE j.flow_id = s.flow_id AND j.profile_id = s.profile_id AND j.status = 'active'
          AND j.id <> s.journey_id
        RETURNING j.id
    )
    UPDATE journey_reviews r
    SET status = 'discarded', reason = 'restarted', decided_at = now()
    FROM closed WHERE r.journey_id = closed.id AND r.status = 'waiting'
    """
)


@dataclass(frozen=True)
class Entry:
    """A profile entering a flow. `key` names what made it enter — an event id, or
    `list-{change}` / `segment-{change}` for a membership change — and with the flow id fixes
    the journey id and (new_instance) the workflow id."""

    workspace_id: uuid.UUID
    flow_id: uuid.UUID
    version: int
    definition: FlowDefinition
    profile_id: uuid.UUID
    key: int | str
    trigger_event: dict[str, Any]


class JourneyStarter:
    def __init__(self, client: Client, task_queue: str, limit: asyncio.Semaphore) -> None:
        self.client = client
        self.task_queue = task_queue
        self.limit = limit

    async def start(self, session: AsyncSession, entries: Sequence[Entry]) -> None:
        """Start a journey for each entry the entry rules let in (in the given order)."""
        if not entries:
            return
        now = datetime.now(UTC)
        cooling = [x for x in entries if x.definition.settings.cooldown_days]
        longest = max((x.definition.settings.cooldown_days or 0 for x in cooling), default=0)
        known = await session.execute(
            _KNOWN,
            {
                "ids": [journey_id(x.flow_id, x.key) for x in entries],
                "flows": sorted({x.flow_id for x in cooling}),
                "profiles": sorted({x.profile_id for x in entries}),
                "since": now - timedelta(days=longest),
            },
        )
        existing: set[uuid.UUID] = set()
        last_entry: dict[tuple[uuid.UUID, uuid.UUID], datetime] = {}
        for jid, flow_id, profile_id, started_at in known:
            existing.add(jid)
            key = (flow_id, profile_id)
            last_entry[key] = max(started_at, last_entry.get(key, started_at))
        by_id: dict[str, list[StartJourneyInput]] = defaultdict(list)
        duplicate: dict[str, str] = {}
        for x in entries:
            jid = journey_id(x.flow_id, x.key)
            if jid in existing:
                continue
            settings = x.definition.settings
            if (days := settings.cooldown_days) and (
                (last := last_entry.get((x.flow_id, x.profile_id)))
                and last > now - timedelta(days=days)
            ):
                continue
            wid = journey_workflow_id(settings.duplicate, x.flow_id, x.profile_id, x.key)
            duplicate[wid] = settings.duplicate
            by_id[wid].append(
                StartJourneyInput(
                    workspace_id=x.workspace_id,
                    flow_id=x.flow_id,
                    version=x.version,
                    profile_id=x.profile_id,
                    journey_id=jid,
                    trigger_event=x.trigger_event,
                    started_at=now,
                )
            )
            if days:  # a second entry in this batch is within the cooldown
                last_entry[(x.flow_id, x.profile_id)] = now
        results = await asyncio.gather(
            *(self._start_in_order(wid, duplicate[wid], starts) for wid, starts in by_id.items())
        )
        # Per flow and profile the last restart runs; every other active journey is closed.
        survivors = {(s.flow_id, s.profile_id): s.journey_id for done in results for s in done}
        if survivors:
            await session.execute(
                _RESTARTED,
                {
                    "flows": [flow for flow, _ in survivors],
                    "profiles": [profile for _, profile in survivors],
                    "ids": list(survivors.values()),
                },
            )

    async def _start_in_order(
        self, wid: str, duplicate: str, starts: list[StartJourneyInput]
    ) -> list[StartJourneyInput]:
        """Start one workflow id's journeys in batch order; the restarts that replaced one."""
        restarted: list[StartJourneyInput] = []
        for start in starts:
            async with self.limit:
                if await self._start_one(wid, duplicate, start) and duplicate == "restart":
                    restarted.append(start)
        return restarted

    async def _start_one(self, wid: str, duplicate: str, start: StartJourneyInput) -> bool:
        reuse, conflict = POLICIES[duplicate]
        if duplicate == "restart" and await self._is_running(wid, start.journey_id):
            return False  # this very journey (a re-delivery): nothing to restart
        try:
            await self.client.start_workflow(
                JourneyWorkflow.run,
                start,
                id=wid,
                task_queue=self.task_queue,
                id_reuse_policy=reuse,
                id_conflict_policy=conflict,
                memo={"journey_id": str(start.journey_id)},
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.WORKSPACE_ID, str(start.workspace_id)),
                        SearchAttributePair(sa.FLOW_ID, str(start.flow_id)),
                        SearchAttributePair(sa.FLOW_VERSION, start.version),
                        SearchAttributePair(sa.PROFILE_ID, str(start.profile_id)),
                        SearchAttributePair(sa.STATUS, "active"),
                    ]
                ),
            )
        except WorkflowAlreadyStartedError:
            return False  # ignore: one is running; new_instance: this key's already ran
        return True

    async def _is_running(self, wid: str, jid: uuid.UUID) -> bool:
        try:
            desc = await self.client.get_workflow_handle(wid).describe()
        except RPCError:
            return False
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return False
        return await desc.memo_value("journey_id", default=None) == str(jid)
