"""One customer's trip through a flow: `JourneyWorkflow` interprets the pinned flow version.

Started by the event router (`flows.router`) with a deterministic workflow id. The definition
is loaded by an activity; each step records `entered` then `completed` / `skipped` / `failed`
(`journey_steps`), and the journey's row in `journeys` (the router's per-profile index) is
registered first and closed last.

Interruptions are signals: `exit` (an exit condition matched: leave at once, even mid-delay),
`event_received` (for wait-for-event steps), `definition_updated` (move to version N+1 at the
step with the same id; a deleted step removes the journey; a delay whose settings changed is
re-timed from when the journey entered it), `flow_status_changed` (paused: hold before the next
step; draft/deleted: leave, counted as removed), `review_released` / `review_discarded` (a flow
in status manual: each send step waits in the review queue, `flows.reviews`, until a person
decides; a discard removes the journey). Delays and waits are
`workflow.wait_condition(..., timeout=...)`, never polling.

The flow filter is checked first thing in the workflow (not by the router: the router's work
stays one query per batch) and again before every step, with `since` = the journey's start.

Here: the run loop, signals, queries and the journey's own activities (load, register, record,
end) and search attributes. The steps are `workflows.journey_steps` (the `JourneySteps` mixin;
a send's review queue: `workflows.journey_review`);
inputs, results, activity options and patch ids are `workflows.journey_types`, re-exported here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.journey_steps import JourneySteps
from workflows.journey_types import (
    DB,
    FOLLOW_FLOW,
    LOCAL_DB,
    PAUSE_CHECK,
    PAUSE_CHECK_EVERY,
    STEP_CLEARED_AT_END,
    DefinitionUpdatedInput,
    DefinitionUpdatedSignal,
    EventReceivedInput,
    EventSignal,
    ExitInput,
    ExitSignal,
    FlowStatusChangedInput,
    JourneyResult,
    JourneyState,
    ReviewDecisionInput,
    StartJourneyInput,
)

with workflow.unsafe.imports_passed_through():
    from activities.journeys import (
        EndJourneyInput,
        EvaluateInput,
        JourneyActivities,
        LoadFlowVersionInput,
        RecordStepInput,
        RegisterJourneyInput,
    )
    from flows import definition as d
    from segments import dump_condition
    from workflows import search_attributes as sa

# Re-exported: callers (router, hooks, reviews, tests) import these from `workflows.journey`.
__all__ = [
    "DefinitionUpdatedInput",
    "DefinitionUpdatedSignal",
    "EventReceivedInput",
    "EventSignal",
    "ExitInput",
    "ExitSignal",
    "FlowStatusChangedInput",
    "JourneyResult",
    "JourneyState",
    "JourneyWorkflow",
    "ReviewDecisionInput",
    "StartJourneyInput",
]


@workflow.defn
class JourneyWorkflow(JourneySteps):
    def __init__(self) -> None:
        self._exit: str | None = None
        self._cancel: str | None = None
        self._paused = False
        self._status_signals = 0  # flow_status_changed signals received
        self._pending: int | None = None
        self._events: list[EventReceivedInput] = []
        self._version = 0
        self._step: str | None = None
        self._wake_at: datetime | None = None
        self._status = "active"
        self._name = ""
        self._manual = False  # the flow is in status manual (sends wait for review)
        self._reviews: dict[str, str] = {}  # review id → released | discarded
        self._step_cleared = False  # ended: `WaymarkStep` unset (STEP_CLEARED_AT_END)

    # --- messages -------------------------------------------------------------------------

    @workflow.signal
    def review_released(self, input: ReviewDecisionInput) -> None:
        self._reviews.setdefault(str(input.review_id), "released")

    @workflow.signal
    def review_discarded(self, input: ReviewDecisionInput) -> None:
        self._reviews.setdefault(str(input.review_id), "discarded")

    @workflow.signal
    def exit(self, input: ExitInput) -> None:
        self._exit = self._exit or input.reason

    @workflow.signal
    def event_received(self, input: EventReceivedInput) -> None:
        self._events = [*self._events[-99:], input]

    @workflow.signal
    def definition_updated(self, input: DefinitionUpdatedInput) -> None:
        if input.version > max(self._version, self._pending or 0):
            self._pending = input.version

    @workflow.signal
    def flow_status_changed(self, input: FlowStatusChangedInput) -> None:
        self._status_signals += 1
        self._set_status(input.status)

    def _set_status(self, status: str) -> None:
        if status in ("draft", "deleted"):
            self._cancel = self._cancel or f"flow_{status}"
        else:
            self._paused = status == "paused"
            self._manual = status == "manual"

    def _follow(self, live_version: int | None, status: str | None, seen: int) -> None:
        """What an activity read of the flow says (`seen`: status signals before the read): a
        newer live version becomes pending, a status applies — the signal for it was missed
        or is on its way. A status signal that arrived since the read is newer and wins."""
        fresh = seen == self._status_signals
        if fresh and status is not None:
            self._manual = status == "manual"
        if status == "paused" and fresh:
            self._paused = True
        newer = live_version is not None and live_version > max(self._version, self._pending or 0)
        resumed = fresh and status in ("live", "manual") and self._paused
        gone = fresh and status in ("draft", "deleted") and self._cancel is None
        if (newer or resumed or gone) and workflow.patched(FOLLOW_FLOW):
            if newer:
                self._pending = live_version
            if status is not None and (resumed or gone):
                self._set_status(status)

    @workflow.query
    def get_state(self) -> JourneyState:
        return JourneyState(
            status=self._status,
            flow_version=self._version,
            current_step=self._step,
            paused=self._paused,
            wake_at=self._wake_at,
            leaving=self._leaving(),
        )

    def _leaving(self) -> str | None:
        return self._exit or self._cancel

    # --- the journey ----------------------------------------------------------------------

    @workflow.run
    async def run(self, input: StartJourneyInput) -> JourneyResult:
        self._in = input
        self._paused = input.paused
        self._started = input.started_at or workflow.now()
        self._steps_done = input.steps_done
        await self._load(input.version)
        self._publish()
        if input.resumed:
            step_id: str | None = input.resume_step
        else:
            seen = self._status_signals
            registered = await self._db(
                JourneyActivities.register_journey,
                RegisterJourneyInput(
                    journey_id=input.journey_id,
                    workspace_id=input.workspace_id,
                    flow_id=input.flow_id,
                    version=input.version,
                    profile_id=input.profile_id,
                    workflow_id=workflow.info().workflow_id,
                    started_at=self._started,
                ),
            )
            if registered.status != "active":  # a journey that already ran (re-delivery)
                return JourneyResult(status=registered.status, reason="already_ran")
            self._follow(registered.live_version, registered.flow_status, seen)
            if not await self._filter_passes():
                return await self._end("removed", "filter")
            step_id = self._defn.entry
        while step_id is not None:
            await self._hold()
            if reason := self._leaving():
                return await self._end(*self._leave_status(reason))
            if self._pending is not None:
                await self._apply_version()
            if step_id not in self._steps:
                await self._record(step_id, "skipped", "step_removed")
                return await self._end("removed", "step_removed")
            if not await self._filter_passes():
                await self._record(step_id, "skipped", "filter")
                return await self._end("removed", "filter")
            self._step, self._wake_at = step_id, None
            self._publish()
            await self._record(step_id, "entered")
            done = await self._run_step(self._steps[step_id])
            if done.leave is not None:
                if done.outcome != "entered":
                    await self._record(step_id, done.outcome, done.reason)
                return await self._end(*done.leave)
            await self._record(step_id, done.outcome, done.reason)
            step_id = done.next
            self._steps_done += 1
            if step_id is not None and workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    input.model_copy(
                        update={
                            "version": self._version,
                            "resume_step": step_id,
                            "resumed": True,
                            "paused": self._paused,
                            "started_at": self._started,
                            "steps_done": self._steps_done,
                        }
                    )
                )
        return await self._end("completed", None)

    async def _db(self, activity: Any, arg: Any) -> Any:
        """A short database activity (`DB` options). Local since `LOCAL_DB`: it runs inside the
        workflow task, without an activity task's round trips through the server."""
        if workflow.patched(LOCAL_DB):
            return await workflow.execute_local_activity_method(activity, arg, **DB)
        return await workflow.execute_activity_method(activity, arg, **DB)

    def _leave_status(self, reason: str) -> tuple[str, str]:
        return ("exited", reason) if reason == self._exit else ("removed", reason)

    async def _load(self, version: int) -> bool:
        seen = self._status_signals
        loaded = await self._db(
            JourneyActivities.load_flow_version,
            LoadFlowVersionInput(flow_id=self._in.flow_id, version=version),
        )
        try:
            self._defn = d.parse_definition(loaded.definition)
        except ValueError as exc:  # not a workflow-task retry loop: the journey fails visibly
            raise ApplicationError(
                f"flow version {version} unreadable: {exc}", non_retryable=True
            ) from exc
        self._steps = d.step_map(self._defn)
        self._version, self._name = version, loaded.flow_name or self._defn.name
        self._follow(loaded.live_version, loaded.status, seen)
        return True

    async def _hold(self) -> None:
        """While the flow is paused, hold here (before the next step)."""

        def free() -> bool:
            return not self._paused or bool(self._leaving())

        while not free() and workflow.patched(PAUSE_CHECK):
            jitter = timedelta(minutes=workflow.random().randint(0, 15))
            try:
                await workflow.wait_condition(free, timeout=PAUSE_CHECK_EVERY + jitter)
            except TimeoutError:
                seen = self._status_signals
                loaded = await self._db(
                    JourneyActivities.load_flow_version,
                    LoadFlowVersionInput(flow_id=self._in.flow_id, version=self._version),
                )
                self._follow(loaded.live_version, loaded.status, seen)
        await workflow.wait_condition(free)

    async def _apply_version(self) -> bool:
        version, self._pending = self._pending, None
        if version is not None and version > self._version:
            await self._load(version)
            self._publish()
        return True

    async def _filter_passes(self) -> bool:
        condition = self._defn.settings.filter
        if condition is None:
            return True
        return await self._evaluate(condition)

    async def _evaluate(self, condition: Any) -> bool:
        result = await self._db(
            JourneyActivities.evaluate,
            EvaluateInput(
                workspace_id=self._in.workspace_id,
                profile_id=self._in.profile_id,
                condition=dump_condition(condition),
                since=self._started,
            ),
        )
        return result.matches

    async def _record(self, step_id: str, outcome: str, reason: str | None = None) -> None:
        seen = self._status_signals
        flow = await self._db(
            JourneyActivities.record_step,
            RecordStepInput(
                journey_id=self._in.journey_id,
                workspace_id=self._in.workspace_id,
                flow_id=self._in.flow_id,
                version=self._version,
                step_id=step_id,
                outcome=outcome,
                reason=reason,
                key=f"{step_id}:{outcome}",
                occurred_at=workflow.now(),
            ),
        )
        if flow is not None:  # None in histories recorded before record_step answered
            self._follow(flow.live_version, flow.flow_status, seen)

    async def _end(self, status: str, reason: str | None) -> JourneyResult:
        await self._db(
            JourneyActivities.end_journey,
            EndJourneyInput(
                journey_id=self._in.journey_id,
                status=status,
                reason=reason,
                ended_at=workflow.now(),
            ),
        )
        self._status, self._wake_at = status, None
        # An ended journey is at no step: the UI's `WaymarkStep="…"` lists only journeys there.
        self._step_cleared = workflow.patched(STEP_CLEARED_AT_END)
        self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return JourneyResult(
            status=status, reason=reason, last_step=self._step, steps=self._steps_done
        )

    def _publish(self) -> None:
        """Search attributes and the readable summary in the UI (an ended journey keeps its
        `WaymarkStatus` and, since STEP_CLEARED_AT_END, has no `WaymarkStep`)."""
        if self._step_cleared:
            at_step = sa.STEP.value_unset()
        else:
            at_step = sa.STEP.value_set(self._step or "-")
        workflow.upsert_search_attributes(
            [
                sa.WORKSPACE_ID.value_set(str(self._in.workspace_id)),
                sa.FLOW_ID.value_set(str(self._in.flow_id)),
                sa.FLOW_VERSION.value_set(self._version),
                sa.PROFILE_ID.value_set(str(self._in.profile_id)),
                at_step,
                sa.STATUS.value_set(self._status),
            ]
        )
        step = self._steps.get(self._step) if self._step else None
        wake = self._wake_at.isoformat(timespec="minutes") if self._wake_at else "-"
        workflow.set_current_details(
            f"Flow **{self._name}** (v{self._version}) · profile `{self._in.profile_id}`\n"
            f"Step: {self._step or '-'}{f' ({step.type})' if step else ''} · status: "
            f"{self._status}{' (paused)' if self._paused else ''} · next wake-up: {wake}"
        )
