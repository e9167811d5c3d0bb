"""Segment activities: the periodic recompute of segments that change with time alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from models import Segment


class ListSegmentWorkspacesInput(BaseModel):
    after: uuid.UUID | None = None
    limit: int = 100


class ListSegmentWorkspacesResult(BaseModel):
    workspace_ids: list[uuid.UUID] = []
    next_after: uuid.UUID | None = None


class RefreshWorkspaceSegmentsInput(BaseModel):
    workspace_id: uuid.UUID
    # False: only segments whose conditions move with time (and the segments that read them).
    include_all: bool = False


class RefreshWorkspaceSegmentsResult(BaseModel):
    segments: int = 0
    entered: int = 0
    exited: int = 0


class SegmentActivities:
    """`segments.*` is imported when an activity runs (the workflow module imports this one)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def _session(self):
        from core.db import session_scope  # core.settings imports the workflows package

        return session_scope(self.engine)

    @activity.defn
    async def list_segment_workspaces(
        self, input: ListSegmentWorkspacesInput
    ) -> ListSegmentWorkspacesResult:
        """A page of the workspaces that have segments, by id."""
        query = select(Segment.workspace_id).distinct().order_by(Segment.workspace_id)
        if input.after is not None:
            query = query.where(Segment.workspace_id > input.after)
        async with self._session() as session:
            ids = list((await session.execute(query.limit(input.limit))).scalars())
        return ListSegmentWorkspacesResult(
            workspace_ids=ids, next_after=ids[-1] if len(ids) == input.limit else None
        )

    @activity.defn
    async def refresh_workspace_segments(
        self, input: RefreshWorkspaceSegmentsInput
    ) -> RefreshWorkspaceSegmentsResult:
        """Recompute a workspace's time-dependent segments at the current time, each in its own
        transaction, in dependency order, heartbeating between them. Safe to retry: a refresh
        diffs against the stored members, so a repeated one changes nothing."""
        from segments.membership import (
            dependency_order,
            load_definitions,
            refresh_segment,
            with_dependents,
        )

        async with self._session() as session:
            definitions = await load_definitions(session, input.workspace_id)
        seeds = [
            sid for sid, d in definitions.items() if input.include_all or d.deps.time_dependent
        ]
        chosen = with_dependents(definitions, seeds)
        order = dependency_order({sid: definitions[sid].deps.segments for sid in chosen})
        result = RefreshWorkspaceSegmentsResult()
        for sid in order:
            async with self._session() as session:
                done = await refresh_segment(
                    session,
                    input.workspace_id,
                    sid,
                    now=datetime.now(UTC),
                    condition=definitions[sid].condition,
                )
            result.segments += 1
            result.entered += len(done.entered)
            result.exited += len(done.exited)
            activity.heartbeat(str(sid))
        return result
