"""List joins and segment entries as journey entries (the `membership_outbox` side of the router).

Which changes reach here is decided where they are logged (migration 0014's triggers): a join
(`list_membership_changes`, action `joined`, from any writer: API, CSV import, a journey's list
step) or an entry (`segment_membership_changes`, action `entered`, from any refresh but a
definition's first computation — see `segments.membership`) queues one row per flow that was
live or manual with that trigger when the change committed. So a flow only takes in profiles
who join or enter after it went live; one who leaves and comes back is a new change and enters
again, subject to the flow's duplicate policy and cooldown (`flows.router_start`).

Here one query reads those flows as they are now: a flow paused, set to draft or deleted since,
or whose live version's trigger no longer names that list or segment, takes no one in. Each
journey is keyed `list-{change id}` / `segment-{change id}`, so a re-delivered row starts
nothing twice, and gets a synthetic trigger event (`membership_event`), so templates and
trigger splits have an `event` to read.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from flows.definition import (
    FlowDefinition,
    ListJoinedTrigger,
    SegmentEnteredTrigger,
    parse_definition,
)
from flows.router_start import Entry
from ingest.outbox import MembershipChange

log = structlog.get_logger(__name__)

LIST_JOINED_METRIC = "Joined List"
SEGMENT_ENTERED_METRIC = "Entered Segment"

_FLOWS = text(
    """
    SELECT f.id, f.workspace_id, f.live_version, v.definition,
           coalesce(l.name, s.name) AS source_name
    FROM flows f
    JOIN flow_versions v ON v.flow_id = f.id AND v.version = f.live_version
    LEFT JOIN lists l ON l.id = f.trigger_list_id AND l.workspace_id = f.workspace_id
    LEFT JOIN segments s ON s.id = f.trigger_segment_id AND s.workspace_id = f.workspace_id
    WHERE f.id = ANY(CAST(:flows AS uuid[])) AND f.status IN ('live', 'manual')
    """
)


def change_key(change: MembershipChange) -> str:
    """The journey key of a membership change (with the flow id: the journey id)."""
    kind = "list" if change.trigger_type == "list_joined" else "segment"
    return f"{kind}-{change.change_id}"


def membership_event(change: MembershipChange, name: str | None) -> dict[str, Any]:
    """The journey's trigger event for a join / entry, shaped like a stored event's
    (`flows.router._event_dict`): properties at the top level and under `properties`."""
    if change.trigger_type == "list_joined":
        metric = LIST_JOINED_METRIC
        properties: dict[str, Any] = {
            "list_id": str(change.list_id),
            "list_name": name,
            "source": change.source,
        }
    else:
        metric = SEGMENT_ENTERED_METRIC
        properties = {"segment_id": str(change.segment_id), "segment_name": name}
    return {
        **properties,
        "id": change_key(change),
        "metric": metric,
        "properties": properties,
        "value": None,
        "occurred_at": change.occurred_at.isoformat(),
    }


def _still_triggers(defn: FlowDefinition, change: MembershipChange) -> bool:
    trigger = defn.trigger
    if change.trigger_type == "list_joined":
        return isinstance(trigger, ListJoinedTrigger) and trigger.list_id == change.list_id
    return isinstance(trigger, SegmentEnteredTrigger) and trigger.segment_id == change.segment_id


async def membership_entries(
    session: AsyncSession, changes: Sequence[MembershipChange]
) -> list[Entry]:
    """The journeys a batch of membership changes starts, in change order. One query."""
    if not changes:
        return []
    rows = await session.execute(_FLOWS, {"flows": sorted({c.flow_id for c in changes})})
    flows: dict[uuid.UUID, tuple[uuid.UUID, int, FlowDefinition, str | None]] = {}
    for flow_id, ws, version, raw, name in rows:
        try:
            flows[flow_id] = (ws, version, parse_definition(raw), name)
        except ValueError as exc:
            log.warning("flow version unreadable", flow_id=str(flow_id), error=str(exc))
    entries = []
    for change in changes:
        flow = flows.get(change.flow_id)
        if flow is None:
            continue  # no longer live or manual: no one new enters
        ws, version, defn, name = flow
        if ws != change.workspace_id or not _still_triggers(defn, change):
            continue
        entries.append(
            Entry(
                workspace_id=ws,
                flow_id=change.flow_id,
                version=version,
                definition=defn,
                profile_id=change.profile_id,
                key=change_key(change),
                trigger_event=membership_event(change, name),
            )
        )
    return entries
