"""The journey router: what one batch of stored events does to journeys, in one pass.

1. One query finds the live (or manual) flows of the batch's workspaces whose event trigger is
   one of the batch's metrics; trigger filters (`where`) are checked in Python per event.
2. One query on `journeys` finds which of those would-be journeys already exist (a re-delivered
   batch) and, for flows with a cooldown, when the profile last entered the flow.
3. Journeys start with deterministic ids (`flows.runtime.journey_workflow_id`):
   - new_instance: `journey-{flow}-{profile}-{event}`; conflict USE_EXISTING, reuse
     REJECT_DUPLICATE: the same event never starts a second journey;
   - ignore: `journey-{flow}-{profile}`; conflict FAIL (refused while one runs), reuse
     ALLOW_DUPLICATE (a customer who finished the flow is not a duplicate);
   - restart: `journey-{flow}-{profile}`; conflict TERMINATE_EXISTING, reuse ALLOW_DUPLICATE;
     the terminated journey's row is closed here as removed (`restarted`).
   The flow filter is not checked here: the journey checks it first thing (and before every
   step), so it is removed with reason `filter` and that shows in statistics.
4. One query on the per-profile index of active journeys (`ix_journeys_active_profile`) finds
   the batch's profiles' journeys: exit conditions that match send `exit`; journeys whose flow
   has a wait-for-event step on the event's metric get `event_received`.

Starts and signals are RPCs: they run concurrently, at most `concurrency` at once, and starts
of one workflow id stay in event order. Everything is idempotent, as the outbox requires.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from flows.definition import Exit, FlowDefinition, parse_definition
from flows.runtime import event_passes, exit_matches, journey_id, journey_workflow_id
from ingest.outbox import StoredEvent
from workflows import search_attributes as sa
from workflows.journey import (
    EventReceivedInput,
    ExitInput,
    JourneyWorkflow,
    StartJourneyInput,
)

log = structlog.get_logger(__name__)
_EXITS = TypeAdapter(list[Exit])

POLICIES = {
    "new_instance": (WorkflowIDReusePolicy.REJECT_DUPLICATE, WorkflowIDConflictPolicy.USE_EXISTING),
    "ignore": (WorkflowIDReusePolicy.ALLOW_DUPLICATE, WorkflowIDConflictPolicy.FAIL),
    "restart": (WorkflowIDReusePolicy.ALLOW_DUPLICATE, WorkflowIDConflictPolicy.TERMINATE_EXISTING),
}

_FLOWS = text(
    """
    SELECT f.id, f.workspace_id, f.live_version, v.definition
    FROM flows f JOIN flow_versions v ON v.flow_id = f.id AND v.version = f.live_version
    WHERE f.workspace_id = ANY(CAST(:ws AS uuid[])) AND f.status IN ('live', 'manual')
      AND f.trigger_type = 'event' AND f.trigger_metric = ANY(CAST(:metrics AS text[]))
    """
)
_KNOWN = text(
    """
    SELECT id, flow_id, profile_id, started_at FROM journeys
    WHERE id = ANY(CAST(:ids AS uuid[]))
       OR (flow_id = ANY(CAST(:flows AS uuid[])) AND profile_id = ANY(CAST(:profiles AS uuid[]))
           AND started_at > :since)
    """
)
_ACTIVE = text(
    """
    SELECT j.id, j.workflow_id, j.workspace_id, j.profile_id, j.flow_id, j.started_at,
           coalesce(v.definition -> 'settings' -> 'exits', '[]'::jsonb) AS exits,
           ARRAY(SELECT DISTINCT s ->> 'metric' FROM jsonb_array_elements(v.definition -> 'steps') s
                 WHERE s ->> 'type' = 'wait_for_event') AS waits
    FROM journeys j
    JOIN flow_versions v ON v.flow_id = j.flow_id AND v.version = j.flow_version
    WHERE j.status = 'active' AND j.workspace_id = ANY(CAST(:ws AS uuid[]))
      AND j.profile_id = ANY(CAST(:profiles AS uuid[]))
    """
)
_RESTARTED = text(
    """
    UPDATE journeys SET status = 'removed', end_reason = 'restarted', ended_at = now()
    WHERE flow_id = :flow AND profile_id = :profile AND status = 'active' AND id <> :id
    """
)


def _event_dict(e: StoredEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "metric": e.metric,
        "properties": e.properties,
        "value": float(e.value) if e.value is not None else None,
        "occurred_at": e.occurred_at.isoformat(),
    }


class JourneyRouter:
    def __init__(
        self,
        client: Client,
        settings: Any,
        engine: AsyncEngine,
        *,
        concurrency: int = 16,
        task_queue: str | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.engine = engine
        self.task_queue = task_queue or settings.task_queue
        self.limit = asyncio.Semaphore(concurrency)

    async def route(self, session: AsyncSession, events: Sequence[StoredEvent]) -> None:
        if not events:
            return
        await self._start(session, events)
        await self._signal(session, events)

    # --- starting journeys ----------------------------------------------------------------

    async def _start(self, session: AsyncSession, events: Sequence[StoredEvent]) -> None:
        rows = await session.execute(
            _FLOWS,
            {
                "ws": sorted({e.workspace_id for e in events}),
                "metrics": sorted({e.metric for e in events}),
            },
        )
        flows: list[tuple[uuid.UUID, uuid.UUID, int, FlowDefinition]] = []
        for flow_id, ws, version, raw in rows:
            try:
                flows.append((flow_id, ws, version, parse_definition(raw)))
            except ValueError as exc:
                log.warning("flow version unreadable", flow_id=str(flow_id), error=str(exc))
        wanted = [
            (flow_id, version, defn, e)
            for e in events
            for flow_id, ws, version, defn in flows
            if ws == e.workspace_id
            and defn.trigger.type == "event"
            and defn.trigger.metric == e.metric
            and event_passes(defn.trigger.where, e.properties or {}, e.value)
        ]
        if not wanted:
            return
        now = datetime.now(UTC)
        cooldowns = [d.settings.cooldown_days for _, _, d, _ in wanted if d.settings.cooldown_days]
        known = await session.execute(
            _KNOWN,
            {
                "ids": [journey_id(f, e.id) for f, _, _, e in wanted],
                "flows": sorted({f for f, _, d, _ in wanted if d.settings.cooldown_days}),
                "profiles": sorted({e.profile_id for *_, e in wanted}),
                "since": now - timedelta(days=max(cooldowns, default=0)),
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
        for flow_id, version, defn, e in wanted:
            jid = journey_id(flow_id, e.id)
            if jid in existing:
                continue
            if (days := defn.settings.cooldown_days) and (
                (last := last_entry.get((flow_id, e.profile_id)))
                and last > now - timedelta(days=days)
            ):
                continue
            wid = journey_workflow_id(defn.settings.duplicate, flow_id, e.profile_id, e.id)
            duplicate[wid] = defn.settings.duplicate
            by_id[wid].append(
                StartJourneyInput(
                    workspace_id=e.workspace_id,
                    flow_id=flow_id,
                    version=version,
                    profile_id=e.profile_id,
                    journey_id=jid,
                    trigger_event=_event_dict(e),
                    started_at=now,
                )
            )
            if defn.settings.cooldown_days:  # a second event in this batch is within it
                last_entry[(flow_id, e.profile_id)] = now
        results = await asyncio.gather(
            *(self._start_in_order(wid, duplicate[wid], starts) for wid, starts in by_id.items())
        )
        for started in results:
            for start in started:
                await session.execute(
                    _RESTARTED,
                    {"flow": start.flow_id, "profile": start.profile_id, "id": start.journey_id},
                )

    async def _start_in_order(
        self, wid: str, duplicate: str, starts: list[StartJourneyInput]
    ) -> list[StartJourneyInput]:
        """Start one workflow id's journeys in event order; the restarts that replaced one."""
        restarted: list[StartJourneyInput] = []
        for start in starts:
            async with self.limit:
                if await self._start_one(wid, duplicate, start) and duplicate == "restart":
                    restarted.append(start)
        return restarted

    async def _start_one(self, wid: str, duplicate: str, start: StartJourneyInput) -> bool:
        reuse, conflict = POLICIES[duplicate]
        if duplicate == "restart" and await self._is_running(wid, start.journey_id):
            return False  # this very journey (a re-delivered event): nothing to restart
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
            return False  # ignore: one is running; new_instance: this event's already ran
        return True

    async def _is_running(self, wid: str, jid: uuid.UUID) -> bool:
        try:
            desc = await self.client.get_workflow_handle(wid).describe()
        except RPCError:
            return False
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return False
        return await desc.memo_value("journey_id", default=None) == str(jid)

    # --- signalling running journeys ------------------------------------------------------

    async def _signal(self, session: AsyncSession, events: Sequence[StoredEvent]) -> None:
        rows = (
            await session.execute(
                _ACTIVE,
                {
                    "ws": sorted({e.workspace_id for e in events}),
                    "profiles": sorted({e.profile_id for e in events}),
                },
            )
        ).all()
        if not rows:
            return
        by_profile: dict[tuple[uuid.UUID, uuid.UUID], list[Any]] = defaultdict(list)
        for row in rows:
            by_profile[(row.workspace_id, row.profile_id)].append(row)
        signals: list[Any] = []
        exited: set[uuid.UUID] = set()
        for e in events:
            for j in by_profile.get((e.workspace_id, e.profile_id), []):
                if j.id in exited or j.id == journey_id(j.flow_id, e.id):
                    continue  # already leaving, or the journey this event started
                if e.occurred_at < j.started_at:
                    continue
                reason = self._exit_reason(j.exits, e)
                if reason is not None:
                    exited.add(j.id)
                    signals.append((j.workflow_id, JourneyWorkflow.exit, ExitInput(reason=reason)))
                elif e.metric in (j.waits or []):
                    signals.append(
                        (
                            j.workflow_id,
                            JourneyWorkflow.event_received,
                            EventReceivedInput(
                                metric=e.metric,
                                properties=e.properties or {},
                                value=float(e.value) if e.value is not None else None,
                                occurred_at=e.occurred_at,
                                event_id=e.id,
                            ),
                        )
                    )
        await asyncio.gather(*(self._send(*s) for s in signals))

    @staticmethod
    def _exit_reason(raw: Any, e: StoredEvent) -> str | None:
        try:
            exits = _EXITS.validate_python(raw or [])
        except ValueError:
            return None
        for exit in exits:
            if reason := exit_matches(exit, e.metric, e.properties or {}, e.value):
                return reason
        return None

    async def _send(self, wid: str, signal: Any, arg: Any) -> None:
        async with self.limit:
            try:
                await self.client.get_workflow_handle(wid).signal(signal, arg)
            except RPCError as exc:  # finished meanwhile: nothing to tell
                log.info("journey not signalled", workflow_id=wid, error=str(exc))
