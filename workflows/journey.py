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
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import uuid

    from pydantic import BaseModel, Field

    from activities.channels import SendActivities, SendMessageInput, SendOutcome
    from activities.journey_actions import (
        JourneyActionActivities,
        SendAlertInput,
        SendWebhookInput,
    )
    from activities.journeys import (
        EndJourneyInput,
        EvaluateInput,
        JourneyActivities,
        ListActionInput,
        LoadFlowVersionInput,
        RecordStepInput,
        RegisterJourneyInput,
        RegisterReviewInput,
        ResolveDelayInput,
        TagActionInput,
        UpdateProfileInput,
    )
    from flows import definition as d
    from flows.runtime import event_passes
    from segments import dump_condition
    from workflows import search_attributes as sa

DB = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(minutes=1)),
}
# Database activities run as local activities (patch: histories before it replay as before).
LOCAL_DB = "journey-local-db-activities"
SEND_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=20)
WEBHOOK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)


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


# Patch ids (docs/VERSIONING.md). FOLLOW_FLOW: a journey follows the flow's live version and
# status as its activities read them (a signal it missed). STEP_REMOVED_OUTCOME: a journey
# whose current step an edit deleted records that step as skipped (`step_removed`).
FOLLOW_FLOW = "journey-follows-flow"
STEP_REMOVED_OUTCOME = "journey-step-removed-outcome"
# PAUSE_CHECK: a paused journey reads its flow again every hour or so (jittered), in case the
# signal that set it live again was lost.
PAUSE_CHECK = "journey-pause-check"
PAUSE_CHECK_EVERY = timedelta(hours=1)
# REVIEW_QUEUE: in a manual flow, a send step waits in the review queue until released.
REVIEW_QUEUE = "journey-review-queue"


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


@workflow.defn
class JourneyWorkflow:
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
        self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return JourneyResult(
            status=status, reason=reason, last_step=self._step, steps=self._steps_done
        )

    def _publish(self) -> None:
        """Search attributes and the readable summary in the UI."""
        workflow.upsert_search_attributes(
            [
                sa.WORKSPACE_ID.value_set(str(self._in.workspace_id)),
                sa.FLOW_ID.value_set(str(self._in.flow_id)),
                sa.FLOW_VERSION.value_set(self._version),
                sa.PROFILE_ID.value_set(str(self._in.profile_id)),
                sa.STEP.value_set(self._step or "-"),
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

    async def _wait(self, until: datetime, also: Any = None) -> str:
        """Sleep until `until` unless the journey leaves, a version arrives or `also()`:
        "timeout" | "leave" | "version" | "also"."""
        self._wake_at = until
        self._publish()

        def woken() -> bool:
            return bool(self._leaving()) or self._pending is not None or bool(also and also())

        remaining = (until - workflow.now()).total_seconds()
        if remaining > 0:
            try:
                await workflow.wait_condition(woken, timeout=timedelta(seconds=remaining))
            except TimeoutError:
                return "timeout"
        if self._leaving():
            return "leave"
        if also and also():
            return "also"
        return "version" if self._pending is not None else "timeout"

    async def _moved(self, step: Any) -> tuple[Any, _Done | None]:
        """Apply a pending version mid-step: the step as the new version has it, or leave."""
        await self._apply_version()
        new = self._steps.get(step.id)
        if new is None:
            gone = ("removed", "step_removed")
            if workflow.patched(STEP_REMOVED_OUTCOME):
                return step, _Done(outcome="skipped", reason="step_removed", leave=gone)
            return step, _Done(outcome="entered", leave=gone)
        return new, None

    # --- steps ----------------------------------------------------------------------------

    async def _run_step(self, step: Any) -> _Done:
        handler = getattr(self, f"_step_{step.type}")
        try:
            return await handler(step)
        except ActivityError as exc:  # a data step that failed after its retries: go on
            if not hasattr(step, "next"):
                raise
            return _Done(next=step.next, outcome="failed", reason=str(exc.cause or exc)[:255])

    async def _delay_until(self, step: d.DelayStep, entered: datetime) -> datetime | str:
        if step.duration is not None:
            return entered + timedelta(seconds=step.duration.seconds())
        resolved = await self._db(
            JourneyActivities.resolve_delay,
            ResolveDelayInput(
                workspace_id=self._in.workspace_id,
                profile_id=self._in.profile_id,
                entered_at=entered,
                until_time=step.until_time.model_dump() if step.until_time else None,
                until_date=step.until_date.model_dump() if step.until_date else None,
            ),
        )
        return resolved.wake_at or resolved.reason or "no_time"

    async def _step_delay(self, step: d.DelayStep) -> _Done:
        entered = workflow.now()
        until = await self._delay_until(step, entered)
        while True:
            if isinstance(until, str):
                return _Done(next=step.next, outcome="skipped", reason=until)
            woke = await self._wait(until)
            if woke == "timeout":
                return _Done(next=step.next)
            if woke == "leave":
                return _Done(outcome="entered", leave=self._leave_status(self._leaving() or ""))
            new, gone = await self._moved(step)
            if gone is not None:
                return gone
            if not isinstance(new, d.DelayStep):
                return await self._run_step(new)
            if new != step:  # settings changed: re-timed from when the journey entered
                step, until = new, await self._delay_until(new, entered)
            else:
                step = new

    async def _step_condition_split(self, step: d.ConditionSplit) -> _Done:
        return _Done(next=step.yes if await self._evaluate(step.condition) else step.no)

    async def _step_trigger_split(self, step: d.TriggerSplit) -> _Done:
        event = self._in.trigger_event or {}
        hit = bool(event) and event_passes(
            step.where, event.get("properties") or {}, event.get("value")
        )
        return _Done(next=step.yes if hit else step.no)

    async def _step_multi_split(self, step: d.MultiSplit) -> _Done:
        for branch in step.branches:
            if await self._evaluate(branch.condition):
                return _Done(next=branch.next, reason=f"branch:{branch.name}")
        return _Done(next=step.otherwise, reason="otherwise")

    async def _step_random_split(self, step: d.RandomSplit) -> _Done:
        roll = workflow.random().randint(1, sum(b.weight for b in step.branches))
        for index, branch in enumerate(step.branches):
            roll -= branch.weight
            if roll <= 0:
                return _Done(next=branch.next, reason=f"branch:{branch.name or index}")
        return _Done(next=step.branches[-1].next)  # unreachable

    async def _step_wait_for_event(self, step: d.WaitForEvent) -> _Done:
        entered, self._events = workflow.now(), []

        def arrived() -> bool:
            return any(
                e.metric == step.metric and event_passes(step.where, e.properties, e.value)
                for e in self._events
            )

        while True:
            woke = await self._wait(entered + timedelta(seconds=step.timeout.seconds()), arrived)
            if woke == "also":
                self._events = []
                return _Done(next=step.on_event, reason="event")
            if woke == "timeout":
                return _Done(next=step.on_timeout, reason="timeout")
            if woke == "leave":
                return _Done(outcome="entered", leave=self._leave_status(self._leaving() or ""))
            new, gone = await self._moved(step)
            if gone is not None:
                return gone
            if not isinstance(new, d.WaitForEvent):
                return await self._run_step(new)
            step = new

    async def _step_send(self, step: d.SendStep) -> _Done:
        send = SendMessageInput(
            workspace_id=self._in.workspace_id,
            profile_id=self._in.profile_id,
            channel=step.channel,
            template_id=step.template_id,
            idempotency_key=f"journey:{self._in.journey_id}:{step.id}",
            flow_id=str(self._in.flow_id),
            flow_version=self._version,
            step_id=step.id,
            journey_id=str(self._in.journey_id),
            transactional=step.transactional,
            smart_sending=step.smart_sending,
            utm=step.utm,
            event=self._in.trigger_event,
        )
        if self._manual and workflow.patched(REVIEW_QUEUE):
            reviewed = await self._review(step)
            if reviewed is not None:
                return reviewed
        while True:
            try:
                result = await workflow.execute_activity_method(
                    SendActivities.send_message,
                    send,
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=SEND_RETRY,
                )
            except ActivityError as exc:
                return _Done(next=step.next, outcome="failed", reason=str(exc.cause or exc)[:255])
            if result.outcome == SendOutcome.held and result.hold_until is not None:
                woke = await self._wait(result.hold_until)
                if woke == "leave":
                    return _Done(outcome="entered", leave=self._leave_status(self._leaving() or ""))
                if woke == "version":
                    await self._apply_version()  # a held message goes out as it was
                continue
            if result.outcome == SendOutcome.sent:
                return _Done(next=step.next)
            if result.outcome == SendOutcome.skipped:
                return _Done(next=step.next, outcome="skipped", reason=result.skip_reason)
            return _Done(next=step.next, outcome="failed", reason=result.error or "send_failed")

    async def _review(self, step: d.SendStep) -> _Done | None:
        """A manual flow's send waits in the review queue: None once released (or when the flow
        is no longer manual), else how the journey leaves (discarded, exit, flow deleted, step
        removed by a new version). A new version keeps the send as it was queued."""
        queued = await self._db(
            JourneyActivities.register_review,
            RegisterReviewInput(
                workspace_id=self._in.workspace_id,
                flow_id=self._in.flow_id,
                version=self._version,
                step_id=step.id,
                journey_id=self._in.journey_id,
                profile_id=self._in.profile_id,
                channel=step.channel.value,
                template_id=step.template_id,
            ),
        )
        if queued.review_id is None:  # "send": the flow went live meanwhile
            return None
        review = str(queued.review_id)
        if queued.status != "waiting":  # a retried step finds its decision
            self._reviews.setdefault(review, queued.status)
        else:  # WaymarkStatus="in_review" while it waits (the queue in the Temporal UI)
            self._status = "in_review"
            self._publish()
        done = await self._decision(step, review)
        if self._status == "in_review":
            self._status = "active"
            if done is None:
                self._publish()
        return done

    async def _decision(self, step: d.SendStep, review: str) -> _Done | None:
        while True:
            await workflow.wait_condition(
                lambda: (
                    review in self._reviews or bool(self._leaving()) or self._pending is not None
                )
            )
            if reason := self._leaving():
                return _Done(outcome="entered", leave=self._leave_status(reason))
            if (decision := self._reviews.get(review)) == "released":
                return None
            if decision == "discarded":
                return _Done(
                    outcome="skipped",
                    reason="review_discarded",
                    leave=("removed", "review_discarded"),
                )
            _, gone = await self._moved(step)
            if gone is not None:
                return gone

    async def _step_update_profile(self, step: d.UpdateProfile) -> _Done:
        await workflow.execute_activity_method(
            JourneyActivities.update_profile,
            UpdateProfileInput(
                workspace_id=self._in.workspace_id,
                profile_id=self._in.profile_id,
                key=f"journey:{self._in.journey_id}:{step.id}",
                properties=[p.model_dump(mode="json") for p in step.properties],
                consents=[c.model_dump(mode="json") for c in step.consents],
                now=workflow.now(),
            ),
            **DB,
        )
        return _Done(next=step.next)

    async def _step_list(self, step: d.ListStep) -> _Done:
        result = await workflow.execute_activity_method(
            JourneyActivities.list_action,
            ListActionInput(
                workspace_id=self._in.workspace_id,
                profile_id=self._in.profile_id,
                list_id=step.list_id,
                action=step.action,
                flow_id=self._in.flow_id,
            ),
            **DB,
        )
        return _Done(next=step.next, reason=result.reason)

    async def _step_tag(self, step: d.TagStep) -> _Done:
        result = await workflow.execute_activity_method(
            JourneyActivities.tag_action,
            TagActionInput(
                workspace_id=self._in.workspace_id,
                profile_id=self._in.profile_id,
                tag=step.tag,
                action=step.action,
            ),
            **DB,
        )
        return _Done(next=step.next, reason=result.reason)

    async def _step_webhook(self, step: d.WebhookStep) -> _Done:
        try:
            await workflow.execute_activity_method(
                JourneyActionActivities.send_webhook,
                SendWebhookInput(
                    workspace_id=self._in.workspace_id,
                    profile_id=self._in.profile_id,
                    url=step.url,
                    headers=step.headers,
                    body=step.body,
                    timeout_seconds=step.timeout_seconds,
                    journey_id=self._in.journey_id,
                    flow_id=self._in.flow_id,
                    step_id=step.id,
                    event=self._in.trigger_event,
                ),
                start_to_close_timeout=timedelta(seconds=step.timeout_seconds + 5),
                retry_policy=WEBHOOK_RETRY,
            )
        except ActivityError as exc:
            reason = _failure(exc, "webhook_failed")[:255]
            if step.on_failure == "stop":
                return _Done(outcome="failed", reason=reason, leave=("removed", "webhook_failed"))
            return _Done(next=step.next, outcome="failed", reason=reason)
        return _Done(next=step.next)

    async def _step_alert(self, step: d.AlertStep) -> _Done:
        try:
            await workflow.execute_activity_method(
                JourneyActionActivities.send_alert,
                SendAlertInput(
                    workspace_id=self._in.workspace_id,
                    profile_id=self._in.profile_id,
                    flow_id=self._in.flow_id,
                    journey_id=self._in.journey_id,
                    step_id=step.id,
                    channel=step.channel,
                    to=step.to,
                    message=step.message,
                    event=self._in.trigger_event,
                ),
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=WEBHOOK_RETRY,
            )
        except ActivityError as exc:
            reason = _failure(exc, "alert_failed")[:255]
            return _Done(next=step.next, outcome="failed", reason=reason)
        return _Done(next=step.next)


def _failure(exc: ActivityError, kind: str) -> str:
    """A failed step's reason: `render_failed: <where> line <n>: <what>` for a template that
    does not render, else `<kind>: <the last error>`."""
    cause = exc.cause or exc
    if isinstance(cause, ApplicationError) and cause.type == "TemplateError":
        return f"render_failed: {cause.message}"
    return f"{kind}: {cause}"
