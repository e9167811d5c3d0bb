"""The journey router: what one batch of stored events (or of membership changes) does to
journeys, in one pass.

Events (`route`):
1. One query finds the live (or manual) flows of the batch's workspaces whose event trigger is
   one of the batch's metrics; trigger filters (`where`) are checked in Python per event.
2. The matching (flow, event) pairs start journeys through `flows.router_start.JourneyStarter`
   (already-started check, cooldown, duplicate policy mapped to deterministic workflow ids and
   Temporal's id reuse / conflict policies); the key of an event's journey is its event id.
3. One query on the per-profile index of active journeys (`ix_journeys_active_profile`) finds
   the batch's profiles' journeys: exit conditions that match send `exit`; journeys whose flow
   has a wait-for-event step on the event's metric get `event_received`.

List joins and segment entries (`route_memberships`, rows of `membership_outbox`): one query
reads the flows they are owed to (`flows.router_membership`), and the same starter starts them,
keyed `list-{change}` / `segment-{change}`.

Signals are RPCs: they run concurrently, at most `concurrency` at once (starts share the limit).
Everything is idempotent, as the outbox requires.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import structlog
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from flows.definition import Exit, FlowDefinition, parse_definition
from flows.router_membership import membership_entries
from flows.router_start import Entry, JourneyStarter
from flows.runtime import event_passes, exit_matches, journey_id
from ingest.outbox import MembershipChange, StoredEvent
from workflows.journey import EventReceivedInput, ExitInput, JourneyWorkflow

log = structlog.get_logger(__name__)
# Start / signal RPCs in flight at once per router (per worker process).
CONCURRENCY = 16
_EXITS = TypeAdapter(list[Exit])

_FLOWS = text(
    """
    SELECT f.id, f.workspace_id, f.live_version, v.definition
    FROM flows f JOIN flow_versions v ON v.flow_id = f.id AND v.version = f.live_version
    WHERE f.workspace_id = ANY(CAST(:ws AS uuid[])) AND f.status IN ('live', 'manual')
      AND f.trigger_type = 'event' AND f.trigger_metric = ANY(CAST(:metrics AS text[]))
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


def _event_dict(e: StoredEvent) -> dict[str, Any]:
    # As templates see it (`channels.render.event_context`): the properties at the top level too.
    return {
        **(e.properties or {}),
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
        concurrency: int = CONCURRENCY,
        task_queue: str | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.engine = engine
        self.task_queue = task_queue or settings.task_queue
        self.limit = asyncio.Semaphore(concurrency)
        self.starter = JourneyStarter(client, self.task_queue, self.limit)

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
        entries = [
            Entry(e.workspace_id, flow_id, version, defn, e.profile_id, e.id, _event_dict(e))
            for e in events
            for flow_id, ws, version, defn in flows
            if ws == e.workspace_id
            and defn.trigger.type == "event"
            and defn.trigger.metric == e.metric
            and event_passes(defn.trigger.where, e.properties or {}, e.value)
        ]
        await self.starter.start(session, entries)

    async def route_memberships(
        self, session: AsyncSession, changes: Sequence[MembershipChange]
    ) -> None:
        """Start the journeys owed to list joins and segment entries (`membership_outbox`)."""
        await self.starter.start(session, await membership_entries(session, changes))

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
