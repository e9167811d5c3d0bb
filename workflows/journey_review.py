"""A manual flow's send waits in the review queue: `JourneyReview`, the mixin `JourneySteps`
uses for a send step while the journey's flow is in status `manual` (`flows.reviews`).

The send registers in `journey_reviews` (`register_review`, idempotent per journey and step)
and waits for `review_released` / `review_discarded`; exits, version moves and the flow's
deletion still reach it. The row is the truth, a signal only a wake-up: since REVIEW_CHECK the
wait reads the row and the flow again about every hour, and at once when the flow stops being
manual, so a lost signal strands no one. A registration that finds the flow not manual creates
no row and answers the flow's status: since REVIEW_FLOW_STATUS the journey follows it (leaves
when deleted or draft, holds while paused) and sends only when the flow is live.

A workflow module: only stdlib and `temporalio` at the top.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow

from workflows.journey_types import (
    REVIEW_CHECK,
    REVIEW_CHECK_EVERY,
    REVIEW_FLOW_STATUS,
    StartJourneyInput,
    _Done,
)

with workflow.unsafe.imports_passed_through():
    from activities.journeys import (
        JourneyActivities,
        LoadFlowVersionInput,
        RegisterReviewInput,
        RegisterReviewResult,
    )
    from flows import definition as d


class JourneyReview:
    """The review queue's side of a send step (state set by `JourneyWorkflow`)."""

    _in: StartJourneyInput
    _version: int
    _pending: int | None
    _status: str
    _manual: bool
    _paused: bool
    _status_signals: int
    _reviews: dict[str, str]

    if TYPE_CHECKING:  # provided by JourneyWorkflow / JourneySteps

        async def _db(self, activity: Any, arg: Any) -> Any: ...
        def _leaving(self) -> str | None: ...
        def _leave_status(self, reason: str) -> tuple[str, str]: ...
        def _follow(self, live_version: int | None, status: str | None, seen: int) -> None: ...
        def _set_status(self, status: str) -> None: ...
        async def _hold(self) -> None: ...
        async def _moved(self, step: Any) -> tuple[Any, _Done | None]: ...
        def _publish(self) -> None: ...

    async def _review(self, step: d.SendStep) -> _Done | None:
        """None once released (or when the flow is live, not manual any more), else how the
        journey leaves (discarded, exit, flow deleted or draft, step removed by a new
        version). A new version keeps the send as it was queued."""
        while True:
            seen = self._status_signals
            queued = await self._register_review(step)
            if queued.review_id is not None:
                break
            if not workflow.patched(REVIEW_FLOW_STATUS):
                return None  # before: "send", whatever the flow's status
            # No row: the flow is not manual now. Its status as read (`FOR SHARE`: after any
            # status change in flight) applies, unless a status signal since is newer (already
            # applied); a flow row gone is a deleted flow.
            if seen == self._status_signals:
                self._set_status(queued.flow_status or "deleted")
            if reason := self._leaving():
                return _Done(outcome="entered", leave=self._leave_status(reason))
            if self._paused:  # hold here, then register again (manual, live or gone by then)
                await self._hold()
                if reason := self._leaving():
                    return _Done(outcome="entered", leave=self._leave_status(reason))
                continue
            if not self._manual:  # live: send
                return None
            # A status signal newer than the read says manual: register again.
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

    async def _register_review(self, step: d.SendStep) -> RegisterReviewResult:
        return await self._db(
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

    async def _decision(self, step: d.SendStep, review: str) -> _Done | None:
        checked_not_manual = False  # read again since the flow stopped being manual

        def woken() -> bool:
            return review in self._reviews or bool(self._leaving()) or self._pending is not None

        def woken_or_not_manual() -> bool:
            return woken() or (not self._manual and not checked_not_manual)

        while True:
            if workflow.patched(REVIEW_CHECK):
                jitter = timedelta(minutes=workflow.random().randint(0, 15))
                try:
                    await workflow.wait_condition(
                        woken_or_not_manual, timeout=REVIEW_CHECK_EVERY + jitter
                    )
                except TimeoutError:
                    pass
                if not woken():  # the check is due, or the flow is not manual any more
                    await self._check_review(step, review)
                    checked_not_manual = not self._manual
                    if not woken():
                        continue
            else:
                await workflow.wait_condition(woken)
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

    async def _check_review(self, step: d.SendStep, review: str) -> None:
        """Read the review's row and the flow again (REVIEW_CHECK): a decision, a status or a
        version whose signal was lost. `register_review` finds the row (it inserts nothing
        twice) and answers its status; `load_flow_version` the flow's live version and status."""
        seen = self._status_signals
        queued = await self._register_review(step)
        loaded = await self._db(
            JourneyActivities.load_flow_version,
            LoadFlowVersionInput(flow_id=self._in.flow_id, version=self._version),
        )
        if str(queued.review_id) == review and queued.status in ("released", "discarded"):
            self._reviews.setdefault(review, queued.status)
        self._follow(loaded.live_version, loaded.status, seen)
