"""The periodic recompute of segments whose conditions change with time alone.

Started by the `segment-refresh` Schedule (`workflows.schedules`) every few minutes: it walks
every workspace that has segments, a page at a time, and refreshes each workspace's
time-dependent segments in one activity (a few workspaces at once). Event, profile, list and
consent changes are applied as they happen (`segments.updates`); this catches "in the last 30
days" windows that slide with the clock. Continues as new when the history grows long.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.segments import (
        ListSegmentWorkspacesInput,
        RefreshWorkspaceSegmentsInput,
        RefreshWorkspaceSegmentsResult,
        SegmentActivities,
    )

PAGE = 100
PARALLEL = 4  # workspaces refreshed at once (each is a few SQL statements on the database)


class RefreshSegmentsInput(BaseModel):
    include_all: bool = False  # True: every segment, not only the time-dependent ones
    after: uuid.UUID | None = None  # continue-as-new: the last workspace done
    workspaces: int = 0
    segments: int = 0
    entered: int = 0
    exited: int = 0


class RefreshSegmentsResult(BaseModel):
    workspaces: int = 0
    segments: int = 0
    entered: int = 0
    exited: int = 0


@workflow.defn
class SegmentRefreshWorkflow:
    @workflow.run
    async def run(self, input: RefreshSegmentsInput) -> RefreshSegmentsResult:
        state = input.model_copy()
        while True:
            page = await workflow.execute_activity_method(
                SegmentActivities.list_segment_workspaces,
                ListSegmentWorkspacesInput(after=state.after, limit=PAGE),
                start_to_close_timeout=timedelta(minutes=1),
            )
            ids = page.workspace_ids
            for start in range(0, len(ids), PARALLEL):
                done = await asyncio.gather(
                    *(self._refresh(ws, input.include_all) for ws in ids[start : start + PARALLEL])
                )
                for one in done:
                    state.segments += one.segments
                    state.entered += one.entered
                    state.exited += one.exited
            state.workspaces += len(ids)
            if page.next_after is None:
                break
            state.after = page.next_after
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(state)
        workflow.logger.info(
            "segments refreshed: %s workspaces, %s segments, %s entered, %s exited",
            state.workspaces,
            state.segments,
            state.entered,
            state.exited,
        )
        return RefreshSegmentsResult(
            workspaces=state.workspaces,
            segments=state.segments,
            entered=state.entered,
            exited=state.exited,
        )

    async def _refresh(
        self, workspace_id: uuid.UUID, include_all: bool
    ) -> RefreshWorkspaceSegmentsResult:
        return await workflow.execute_activity_method(
            SegmentActivities.refresh_workspace_segments,
            RefreshWorkspaceSegmentsInput(workspace_id=workspace_id, include_all=include_all),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )
