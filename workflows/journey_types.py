"""What `JourneyWorkflow` takes and answers: its input and result, its signal and query
payloads, activity options, and the patch ids of its versioned changes (docs/VERSIONING.md).

A workflow module (re-imported by the sandbox with `workflows.journey`): only stdlib and
`temporalio` at the top. Callers import these names from `workflows.journey`, which re-exports
them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import uuid

    from pydantic import BaseModel, Field

# --- activity options --------------------------------------------------------------------------

DB = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(minutes=1)),
}
SEND_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=20)
WEBHOOK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)

# --- patch ids (docs/VERSIONING.md lists them with what each changed) ---------------------------

# FOLLOW_FLOW: a journey follows the flow's live version and status as its activities read them
# (a signal it missed).
FOLLOW_FLOW = "journey-follows-flow"
# STEP_REMOVED_OUTCOME: a journey whose current step an edit deleted records that step as
# skipped (`step_removed`).
STEP_REMOVED_OUTCOME = "journey-step-removed-outcome"
# PAUSE_CHECK: a paused journey reads its flow again every hour or so (jittered), in case the
# signal that set it live again was lost.
PAUSE_CHECK = "journey-pause-check"
PAUSE_CHECK_EVERY = timedelta(hours=1)
# REVIEW_QUEUE: in a manual flow, a send step waits in the review queue until released.
REVIEW_QUEUE = "journey-review-queue"
# LOCAL_DB: database activities run as local activities.
LOCAL_DB = "journey-local-db-activities"
# HELD_SEND_WAIT: a held send waits at least HELD_SEND_AT_LEAST before it is sent again, even
# when the gate's `hold_until` is not later than the journey's clock (it spun without a timer).
HELD_SEND_WAIT = "journey-held-send-wait"
HELD_SEND_AT_LEAST = timedelta(minutes=1)
# STEP_CLEARED_AT_END: an ended journey unsets `WaymarkStep` (keeps `WaymarkStatus`), so the
# operator's `WaymarkFlowId="…" AND WaymarkStep="…"` lists only journeys still at that step.
STEP_CLEARED_AT_END = "journey-step-cleared-at-end"
# REVIEW_FLOW_STATUS: a manual flow's send that finds no review row (the flow is not manual any
# more) follows the flow status `register_review` read: leaves when the flow was deleted or set
# to draft, holds while it is paused, and sends only when it is live (before: sent whatever it was).
REVIEW_FLOW_STATUS = "journey-review-flow-status"
# LEAVE_BEFORE_SEND: a journey that is leaving (exit, flow deleted or draft, as a signal or an
# activity's read of the flow told it during the step) leaves right before a send, not after it.
LEAVE_BEFORE_SEND = "journey-leave-before-send"
# REVIEW_CHECK: a send waiting for review reads its row and the flow again every
# REVIEW_CHECK_EVERY (+0–15 min jitter), and at once when the flow stops being manual, in case
# the `review_released` / `review_discarded` signal was lost.
REVIEW_CHECK = "journey-review-check"
REVIEW_CHECK_EVERY = PAUSE_CHECK_EVERY


# --- input, result, messages -------------------------------------------------------------------


class StartJourneyInput(BaseModel):
    workspace_id: uuid.UUID
    flow_id: uuid.UUID
    version: int
    profile_id: uuid.UUID
    journey_id: uuid.UUID
    # {id, metric, properties, value, occurred_at}: the event that started the journey.
    trigger_event: dict[str, Any] | None = None
    started_at: datetime | None = None
    # Carried over continue-as-new.
    resume_step: str | None = None
    resumed: bool = False
    paused: bool = False
    steps_done: int = 0


class JourneyResult(BaseModel):
    status: str  # completed | removed | exited (or how an earlier run with this id ended)
    reason: str | None = None
    last_step: str | None = None
    steps: int = 0


class ExitInput(BaseModel):
    reason: str = "exit"


class EventReceivedInput(BaseModel):
    metric: str
    properties: dict[str, Any] = Field(default_factory=dict)
    value: float | None = None
    occurred_at: datetime | None = None
    event_id: int | None = None


class ReviewDecisionInput(BaseModel):
    """`review_released` / `review_discarded`: a person decided on a queued send."""

    review_id: uuid.UUID


class DefinitionUpdatedInput(BaseModel):
    version: int


class FlowStatusChangedInput(BaseModel):
    status: str  # live | manual | paused | draft | deleted


class JourneyState(BaseModel):
    status: str
    flow_version: int
    current_step: str | None = None
    paused: bool = False
    wake_at: datetime | None = None
    leaving: str | None = None


# The names in the brief.
ExitSignal, EventSignal, DefinitionUpdatedSignal = (
    ExitInput,
    EventReceivedInput,
    DefinitionUpdatedInput,
)


class _Done(BaseModel):
    """What a step did: where to go next, its outcome, or that the journey leaves."""

    next: str | None = None
    outcome: str = "completed"
    reason: str | None = None
    leave: tuple[str, str] | None = None  # (status, reason)
