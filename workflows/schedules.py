"""Temporal Schedules Waymark runs, registered idempotently at worker start.

`ensure_schedules` creates each schedule, or updates it in place when it already exists (so a
new interval or workflow input takes effect on the next deploy). Schedule ids carry the task
queue: one schedule per deployment, not per worker process or per workspace.

Segment refresh is one global schedule rather than one per workspace: workspaces come and go
without touching Temporal, one run walks them in pages (few workspaces at once), and an overlap
policy of SKIP means a slow run is never stacked on by the next one.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from workflows.segment_refresh import RefreshSegmentsInput, SegmentRefreshWorkflow


def segment_refresh_schedule_id(task_queue: str) -> str:
    return f"{task_queue}-segment-refresh"


def segment_full_refresh_schedule_id(task_queue: str) -> str:
    return f"{task_queue}-segment-full-refresh"


def segment_refresh_schedule(
    task_queue: str, every: timedelta, *, include_all: bool = False
) -> Schedule:
    kind = "segment-full-refresh" if include_all else "segment-refresh"
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SegmentRefreshWorkflow.run,
            RefreshSegmentsInput(include_all=include_all),
            id=f"{task_queue}-{kind}-run",
            task_queue=task_queue,
            execution_timeout=max(every * 4, timedelta(hours=1)),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedule(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Create the schedule, or replace its action, spec and policy when it exists."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)


async def ensure_schedules(
    client: Client, settings, *, segment_refresh_every: timedelta | None = None
) -> None:
    """Every schedule Waymark runs. `settings.segment_refresh_minutes` (default 15) sets how
    often time-dependent segments are recomputed; every segment is recomputed once a day, a
    safety net for changes no incremental path saw (and it corrects member counts)."""
    every = segment_refresh_every or timedelta(minutes=settings.segment_refresh_minutes)
    await ensure_schedule(
        client,
        segment_refresh_schedule_id(settings.task_queue),
        segment_refresh_schedule(settings.task_queue, every),
    )
    await ensure_schedule(
        client,
        segment_full_refresh_schedule_id(settings.task_queue),
        segment_refresh_schedule(settings.task_queue, timedelta(days=1), include_all=True),
    )
