"""Keeping segments current: right after each event, and after profile, list or consent changes.

- `SegmentEventRouter` is an outbox router: for each batch of new events it finds, per
  workspace, the segments whose condition reads one of the batch's metrics (and the segments that
  read those), and refreshes them for the batch's profiles only — a few indexed queries per
  workspace and batch, never one per event. Parsed definitions are cached per segment and
  re-read only when the segment's `updated_at` moved.
- `refresh_for_profiles` does the same for changes that are not events: a profile's properties
  or location, list joins and leaves, consents (`changed` says which kinds changed).
- Conditions that change with time alone ("in the last 30 days") are the periodic refresh's job
  (`workflows.segment_refresh`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.outbox import StoredEvent
from models import Segment
from segments.membership import (
    RefreshResult,
    SegmentDefinition,
    parse,
    refresh_segments,
    with_dependents,
)

log = structlog.get_logger(__name__)

# What `refresh_for_profiles(changed=...)` understands.
PROPERTIES = "properties"  # any profile field or custom property; names may be given instead
LISTS = "lists"
CONSENTS = "consents"
SEGMENTS = "segments"
EVENTS = "events"  # a profile's events changed other than by new events (profile merge)
EVERYTHING = frozenset({PROPERTIES, LISTS, CONSENTS, SEGMENTS, EVENTS})


class DefinitionCache:
    """Parsed segment definitions per workspace, re-parsed only when a segment was updated."""

    def __init__(self) -> None:
        self._by_id: dict[uuid.UUID, SegmentDefinition] = {}

    async def workspaces(
        self, session: AsyncSession, workspace_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, dict[uuid.UUID, SegmentDefinition]]:
        """Every segment of these workspaces: one query for versions, one for stale bodies."""
        rows = (
            await session.execute(
                select(Segment.id, Segment.workspace_id, Segment.updated_at).where(
                    Segment.workspace_id.in_(list(workspace_ids))
                )
            )
        ).all()
        stale = [
            sid for sid, _, at in rows if (c := self._by_id.get(sid)) is None or c.updated_at != at
        ]
        if stale:
            fresh = await session.execute(
                select(
                    Segment.id, Segment.workspace_id, Segment.definition, Segment.updated_at
                ).where(Segment.id.in_(stale))
            )
            for sid, ws, definition, at in fresh:
                try:
                    self._by_id[sid] = parse(sid, ws, definition, at)
                except ValueError:
                    log.warning("segment definition no longer parses", segment_id=str(sid))
        live = {sid for sid, _, _ in rows}
        for sid in [s for s in self._by_id if s not in live]:
            del self._by_id[sid]
        out: dict[uuid.UUID, dict[uuid.UUID, SegmentDefinition]] = defaultdict(dict)
        for sid, ws, _ in rows:
            if sid in self._by_id:
                out[ws][sid] = self._by_id[sid]
        return out


def _touched_by(definition: SegmentDefinition, changed: Collection[str]) -> bool:
    deps = definition.deps
    for kind in changed:
        if kind == PROPERTIES and deps.properties:
            return True
        if kind == LISTS and deps.lists:
            return True
        if kind == CONSENTS and deps.consent_channels:
            return True
        if kind == SEGMENTS and deps.segments:
            return True
        if kind == EVENTS and deps.metrics:
            return True
        if kind in deps.properties:
            return True
    return False


async def refresh_for_profiles(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    profile_ids: Iterable[uuid.UUID],
    *,
    changed: set[str],
    now: datetime | None = None,
    cache: DefinitionCache | None = None,
) -> dict[uuid.UUID, RefreshResult]:
    """Re-evaluate the segments that read what changed, for these profiles only.

    `changed`: any of "properties", "lists", "consents", "segments", "events" (EVERYTHING for a
    new or merged profile), or property / field names (e.g. {"city", "latitude", "longitude"}).
    Call it inside the transaction that made the change, after the change: membership then
    commits (or rolls back) with it."""
    ids = list(dict.fromkeys(profile_ids))
    if not ids or not changed:
        return {}
    cache = cache or DefinitionCache()
    definitions = (await cache.workspaces(session, [workspace_id])).get(workspace_id, {})
    direct = [sid for sid, d in definitions.items() if _touched_by(d, changed)]
    if not direct:
        return {}
    chosen = with_dependents(definitions, direct)
    return await refresh_segments(
        session, workspace_id, definitions, chosen, now=now or datetime.now(UTC), profile_ids=ids
    )


class SegmentEventRouter:
    """The outbox router that keeps event-based segments current right after each event."""

    def __init__(self, cache: DefinitionCache | None = None) -> None:
        self.cache = cache or DefinitionCache()

    async def route(self, session: AsyncSession, events: Sequence[StoredEvent]) -> None:
        by_workspace: dict[uuid.UUID, list[StoredEvent]] = defaultdict(list)
        for event in events:
            by_workspace[event.workspace_id].append(event)
        catalog = await self.cache.workspaces(session, list(by_workspace))
        now = datetime.now(UTC)
        for workspace_id, batch in by_workspace.items():
            definitions = catalog.get(workspace_id)
            if not definitions:
                continue
            metrics = {e.metric for e in batch}
            direct = [sid for sid, d in definitions.items() if d.deps.metrics & metrics]
            if not direct:
                continue
            profiles = sorted({e.profile_id for e in batch}, key=str)
            results = await refresh_segments(
                session,
                workspace_id,
                definitions,
                with_dependents(definitions, direct),
                now=now,
                profile_ids=profiles,
            )
            moved = sum(len(r.entered) + len(r.exited) for r in results.values())
            if moved:
                log.debug(
                    "segments updated after events",
                    workspace_id=str(workspace_id),
                    segments=len(results),
                    changes=moved,
                )
