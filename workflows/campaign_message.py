"""One campaign message, from its send time to its last recipient.

Started by `campaigns.scheduling.schedule_message` as a delayed workflow (id
`campaign-message-{message_id}`), it:

1. checks the message is still scheduled and when its first recipient can be due (`send_at`;
   with recipient local time, that wall-clock time in the earliest zone) and sleeps until then;
2. snapshots the audience into `campaign_recipients` with one SQL statement (first path wins,
   local due times, throttled waves, batch numbers) — an empty audience cancels the message
   with "no recipients";
3. sends group by group (one durable timer per distinct due time: a local-time zone group or an
   hourly throttled wave), `PARALLEL_BATCHES` batches in flight (the next starts as soon as one
   ends), each batch one activity that reads its rows by `batch_no` and calls the send path's
   batch function;
4. sends recipients held by quiet hours when their hold ends — between groups when it ends
   before the next group is due, else after the last one — then records the final status.

Every loop continues-as-new when Temporal suggests it (a long history), with its place in
`RunCampaignMessageInput`. Changes to the commands go through `workflow.patched`
(docs/VERSIONING.md); `tests/campaigns/test_replay.py` replays recorded histories.

The history holds counts and batch numbers, never the recipient list. Exactly once per
recipient comes from the ledger key `campaign:{message_id}:{profile_id}`: a batch re-run after a
worker crash replays settled keys without calling the provider.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import uuid

    from pydantic import BaseModel, Field

    from campaigns.activities import (
        NO_RECIPIENTS,
        CampaignActivities,
        FinishMessageInput,
        PrepareMessageInput,
        SendBatchInput,
        SendBatchResult,
        SnapshotAudienceInput,
    )
    from campaigns.audience import Group

PARALLEL_BATCHES = 4
HELD_LIMIT = 1000
HOLD_RECHECK = timedelta(minutes=1)  # at least this between two sends of held recipients
# Patch: held recipients whose hold ends before the next group go out in between.
HELD_BEFORE_NEXT_GROUP = "held-before-next-group"
# Patch: the loops that send held recipients continue-as-new when Temporal suggests it.
HELD_CONTINUE_AS_NEW = "held-continue-as-new"
# Patch: a group's batches go out `PARALLEL_BATCHES` in flight, the next as soon as one ends
# (before: in waves of `PARALLEL_BATCHES`, each waiting for its slowest batch).
SLIDING_BATCHES = "sliding-batches"


def workflow_id(message_id: uuid.UUID) -> str:
    return f"campaign-message-{message_id}"


class Wave(BaseModel):
    """One group as it went out: when it was due and when the workflow sent it."""

    due: datetime
    started_at: datetime
    recipients: int
    sent: int = 0


class RunCampaignMessageInput(BaseModel):
    workspace_id: uuid.UUID
    campaign_id: uuid.UUID
    message_id: uuid.UUID
    batch_size: int | None = None  # default `campaigns.activities.BATCH_SIZE` (1,000)
    # Continue-as-new state (the audience is already snapshotted when `groups` is set).
    groups: list[Group] | None = None
    next_group: int = 0
    next_batch: int | None = None
    totals: SendBatchResult = Field(default_factory=SendBatchResult)
    waves: list[Wave] = Field(default_factory=list)
    next_hold: datetime | None = None  # earliest end of a quiet-hours hold, as last seen


class RunCampaignMessageResult(BaseModel):
    status: str
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)
    waves: list[Wave] = Field(default_factory=list)


def _add(total: SendBatchResult, one: SendBatchResult) -> None:
    total.recipients += one.recipients
    total.sent += one.sent
    total.failed += one.failed
    total.replayed += one.replayed
    for reason, n in one.skipped.items():
        total.skipped[reason] = total.skipped.get(reason, 0) + n
    total.held += one.held  # ever held: the workflow then sends held recipients when due


@workflow.defn
class CampaignMessageWorkflow:
    def __init__(self) -> None:
        self._sent = 0

    @workflow.query
    def get_sent(self) -> int:
        return self._sent

    @workflow.run
    async def run(self, input: RunCampaignMessageInput) -> RunCampaignMessageResult:
        state = input.model_copy(deep=True)
        ids = {"workspace_id": input.workspace_id, "message_id": input.message_id}
        if state.groups is None:
            plan = await workflow.execute_activity_method(
                CampaignActivities.prepare_message,
                PrepareMessageInput(**ids),
                start_to_close_timeout=timedelta(minutes=1),
            )
            if not plan.proceed or plan.start_at is None:
                return RunCampaignMessageResult(status=plan.status or "deleted")
            await self._sleep_until(plan.start_at)
            snap = await workflow.execute_activity_method(
                CampaignActivities.snapshot_audience,
                SnapshotAudienceInput(**ids, now=workflow.now(), batch_size=input.batch_size),
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=RetryPolicy(maximum_attempts=10),
            )
            if snap.total == 0:
                done = await self._finish(input, NO_RECIPIENTS)
                return RunCampaignMessageResult(status=done)
            state.groups = snap.groups
        self._sent = state.totals.sent

        while state.next_group < len(state.groups):
            group = state.groups[state.next_group]
            if workflow.patched(HELD_BEFORE_NEXT_GROUP):
                await self._send_held_before(input, state, group.at)
            await self._sleep_until(group.at)
            if state.next_batch is None:
                state.next_batch = group.first_batch
                state.waves.append(
                    Wave(due=group.at, started_at=workflow.now(), recipients=group.recipients)
                )
            if workflow.patched(SLIDING_BATCHES):
                await self._send_group(input, state, group)
            while state.next_batch <= group.last_batch:  # before the patch: in waves
                last = min(state.next_batch + PARALLEL_BATCHES - 1, group.last_batch)
                results = await asyncio.gather(
                    *(self._send(input, n) for n in range(state.next_batch, last + 1))
                )
                for one in results:
                    _add(state.totals, one)
                    state.waves[-1].sent += one.sent
                holds = [one.next_hold for one in results if one.next_hold is not None]
                state.next_hold = min(holds, default=None)
                self._sent = state.totals.sent
                state.next_batch = last + 1
                if workflow.info().is_continue_as_new_suggested():
                    await self._continue_as_new(state)
            state.next_group += 1
            state.next_batch = None

        # Recipients held by quiet hours go out when their window opens (same ledger keys).
        while state.totals.held:
            one = await self._send(input, None, held_due=workflow.now())
            _add(state.totals, one)
            self._sent = state.totals.sent
            if one.next_hold is None:
                break
            if one.recipients < HELD_LIMIT:
                await self._sleep_until(max(one.next_hold, workflow.now() + HOLD_RECHECK))
            await self._continue_as_new_held(state)

        status = await self._finish(input, None)
        await workflow.wait_condition(workflow.all_handlers_finished)
        totals = state.totals
        return RunCampaignMessageResult(
            status=status,
            recipients=sum(g.recipients for g in state.groups),
            sent=totals.sent,
            failed=totals.failed,
            skipped=totals.skipped,
            waves=state.waves,
        )

    async def _send_group(
        self, input: RunCampaignMessageInput, state: RunCampaignMessageInput, group: Group
    ) -> None:
        """The group's batches from `state.next_batch` on, `PARALLEL_BATCHES` in flight: the
        next starts as soon as one ends, so a slow batch holds back no other. When Temporal
        suggests continue-as-new, no batch starts; the run continues once those in flight
        are done."""
        running: list[asyncio.Task[SendBatchResult]] = []
        draining = False
        while running or (state.next_batch <= group.last_batch and not draining):
            while (
                not draining
                and state.next_batch <= group.last_batch
                and len(running) < PARALLEL_BATCHES
            ):
                running.append(self._start_send(input, state.next_batch))
                state.next_batch += 1
            done, running = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
            # `workflow.wait`: lists in a deterministic order. The totals are sums, the next
            # hold a minimum (holds only accumulate while a group goes out; a batch's
            # `next_hold` is the message's earliest, as it last read it).
            results = [task.result() for task in done]
            for one in results:
                _add(state.totals, one)
                state.waves[-1].sent += one.sent
            holds = [h for h in (state.next_hold, *(r.next_hold for r in results)) if h]
            state.next_hold = min(holds, default=None)
            self._sent = state.totals.sent
            draining = draining or workflow.info().is_continue_as_new_suggested()
        if draining:
            await self._continue_as_new(state)

    async def _send_held_before(
        self, input: RunCampaignMessageInput, state: RunCampaignMessageInput, until: datetime
    ) -> None:
        """Recipients held by quiet hours whose window opens before the next group is due go
        out when it opens, not after the last group."""
        while state.next_hold is not None and state.next_hold < until:
            await self._sleep_until(state.next_hold)
            one = await self._send(input, None, held_due=workflow.now())
            _add(state.totals, one)
            self._sent = state.totals.sent
            state.next_hold = one.next_hold
            if state.next_hold is not None and one.recipients < HELD_LIMIT:
                state.next_hold = max(state.next_hold, workflow.now() + HOLD_RECHECK)
            await self._continue_as_new_held(state)

    async def _continue_as_new_held(self, state: RunCampaignMessageInput) -> None:
        """Continue-as-new from a loop sending held recipients, when suggested. Runs recorded
        before the patch may have ignored a suggestion there: the patch is only asked once one
        is made, so their replay (no marker) goes on as they did, and runs without a
        suggestion record no marker at all."""
        if workflow.info().is_continue_as_new_suggested() and workflow.patched(
            HELD_CONTINUE_AS_NEW
        ):
            await self._continue_as_new(state)

    async def _continue_as_new(self, state: RunCampaignMessageInput) -> None:
        """The state carries where the run is: the next group and batch, the totals, the
        waves and the next hold (`groups` set: the next run does not snapshot again)."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(state)

    async def _sleep_until(self, at: datetime) -> None:
        wait = at - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait)

    async def _send(
        self, input: RunCampaignMessageInput, batch_no: int | None, held_due: datetime | None = None
    ) -> SendBatchResult:
        return await self._start_send(input, batch_no, held_due)

    def _start_send(
        self, input: RunCampaignMessageInput, batch_no: int | None, held_due: datetime | None = None
    ) -> workflow.ActivityHandle[SendBatchResult]:
        return workflow.start_activity_method(
            CampaignActivities.send_batch,
            SendBatchInput(
                workspace_id=input.workspace_id,
                message_id=input.message_id,
                batch_no=batch_no,
                held_due=held_due,
                limit=HELD_LIMIT,
            ),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=1),
        )

    async def _finish(self, input: RunCampaignMessageInput, reason: str | None) -> str:
        done = await workflow.execute_activity_method(
            CampaignActivities.finish_message,
            FinishMessageInput(
                workspace_id=input.workspace_id,
                message_id=input.message_id,
                cancelled_reason=reason,
            ),
            start_to_close_timeout=timedelta(minutes=1),
        )
        return done.status
