"""The steps of a journey: `JourneySteps`, the mixin `JourneyWorkflow` runs them from.

One coroutine per step type (`_step_<type>`) answers a `_Done` (the next step, the outcome, or
that the journey leaves); `_wait` is every timed wait (a delay, a wait-for-event's timeout, a
held send), woken early by an exit, a new flow version or the step's own condition; `_moved`
applies a version that arrived mid-step. A send held by quiet hours passes the journey's clock to
the gate (`SendMessageInput.now`) and sleeps until the hold ends, at least a minute. A journey
told to leave during the step leaves right before a send (`_left_before_send`); a manual flow's
send waits in the review queue first (`workflows.journey_review`).

The journey's state and its other primitives (`_db`, `_evaluate`, `_apply_version`,
`_publish`, ...) live on `JourneyWorkflow` (`workflows.journey`). A workflow module: only stdlib
and `temporalio` at the top.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.journey_review import JourneyReview
from workflows.journey_types import (
    DB,
    HELD_SEND_AT_LEAST,
    HELD_SEND_WAIT,
    LEAVE_BEFORE_SEND,
    REVIEW_QUEUE,
    SEND_RETRY,
    STEP_REMOVED_OUTCOME,
    WEBHOOK_RETRY,
    EventReceivedInput,
    StartJourneyInput,
    _Done,
)

with workflow.unsafe.imports_passed_through():
    from activities.channels import SendActivities, SendMessageInput, SendOutcome
    from activities.journey_actions import (
        JourneyActionActivities,
        SendAlertInput,
        SendWebhookInput,
    )
    from activities.journeys import (
        JourneyActivities,
        ListActionInput,
        ResolveDelayInput,
        TagActionInput,
        UpdateProfileInput,
    )
    from flows import definition as d
    from flows.runtime import event_passes


class JourneySteps(JourneyReview):
    """Step implementations over the journey's state (set by `JourneyWorkflow`); a manual
    flow's send waits in the review queue (`JourneyReview`)."""

    _in: StartJourneyInput
    _version: int
    _steps: dict[str, Any]
    _pending: int | None
    _events: list[EventReceivedInput]
    _wake_at: datetime | None
    _status: str
    _manual: bool
    _reviews: dict[str, str]

    if TYPE_CHECKING:  # provided by JourneyWorkflow

        async def _db(self, activity: Any, arg: Any) -> Any: ...
        def _leaving(self) -> str | None: ...
        def _leave_status(self, reason: str) -> tuple[str, str]: ...
        async def _evaluate(self, condition: Any) -> bool: ...
        async def _apply_version(self) -> bool: ...
        def _publish(self) -> None: ...

    # --- waiting --------------------------------------------------------------------------

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
        if (left := self._left_before_send()) is not None:
            return left
        if self._manual and workflow.patched(REVIEW_QUEUE):
            reviewed = await self._review(step)
            if reviewed is not None:
                return reviewed
        while True:
            if (left := self._left_before_send()) is not None:
                return left
            # The journey's clock: the gate (quiet hours) decides at the later of it and the
            # wall clock, so a hold that ended on the journey's clock ends for the gate too (an
            # activity input, not a command: no patch, and a journey already spinning recovers).
            send.now = workflow.now()
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
                woke = await self._wait(_held_until(result.hold_until))
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

    def _left_before_send(self) -> _Done | None:
        """A journey told to leave during the step (an exit, or the flow deleted or set to
        draft: a signal, or a read of the flow by `record_step` / `register_review` /
        `load_flow_version`) leaves instead of sending (LEAVE_BEFORE_SEND)."""
        reason = self._leaving()
        if reason and workflow.patched(LEAVE_BEFORE_SEND):
            return _Done(outcome="entered", leave=self._leave_status(reason))
        return None

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


def _held_until(hold_until: datetime) -> datetime:
    """When a held send is tried again: at `hold_until`, but never sooner than
    HELD_SEND_AT_LEAST from now. A gate whose clock is behind the journey's (clock drift, the
    time-skipping server) can answer a time already past; without the floor the loop called it
    again at once, with no timer, until the history's size limit."""
    floor = workflow.now() + HELD_SEND_AT_LEAST
    if hold_until < floor and workflow.patched(HELD_SEND_WAIT):
        return floor
    return hold_until


def _failure(exc: ActivityError, kind: str) -> str:
    """A failed step's reason: `render_failed: <where> line <n>: <what>` for a template that
    does not render, else `<kind>: <the last error>`."""
    cause = exc.cause or exc
    if isinstance(cause, ApplicationError) and cause.type == "TemplateError":
        return f"render_failed: {cause.message}"
    return f"{kind}: {cause}"
