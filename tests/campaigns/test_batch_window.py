"""A campaign message's batches go out `PARALLEL_BATCHES` in flight, the next starting as soon as
one ends (`sliding-batches`): a slow batch holds back no other, and a continue-as-new waits for
the batches in flight. The workflow runs on the real dev server with stand-in activities of the
same names (the send path itself is tested in `test_execution.py`); `test_replay.py` replays
histories recorded here before and after the patch."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from campaigns.activities import (
    FinishMessageInput,
    FinishMessageResult,
    PrepareMessageInput,
    PrepareMessageResult,
    SendBatchInput,
    SendBatchResult,
    SnapshotAudienceInput,
    SnapshotAudienceResult,
)
from campaigns.audience import Group
from tests.campaigns.test_replay import HISTORIES_DIR, _marked, _runs, _workflow_at, run_message
from workflows.campaign_message import (
    PARALLEL_BATCHES,
    SLIDING_BATCHES,
    CampaignMessageWorkflow,
    RunCampaignMessageInput,
)

PRE_SLIDING = "3b526a3"  # the last commit whose workflow sent a group's batches in waves
SLOW_WAIT = 5.0  # seconds the slow batch waits for the others before giving up


@dataclass
class StandIn:
    """`prepare_message`, `snapshot_audience`, `send_batch` and `finish_message` for a message
    of `batches` batches of one recipient, due now; `slow`: the batch that ends only once every
    other batch has ended (or after `SLOW_WAIT`)."""

    batches: int
    slow: int | None = None
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    most_in_flight: int = 0
    others_done: asyncio.Event = field(default_factory=asyncio.Event)

    def all(self) -> list:
        return [self.prepare_message, self.snapshot_audience, self.send_batch, self.finish_message]

    @activity.defn(name="prepare_message")
    async def prepare_message(self, input: PrepareMessageInput) -> PrepareMessageResult:
        return PrepareMessageResult(proceed=True, status="scheduled", start_at=datetime.now(UTC))

    @activity.defn(name="snapshot_audience")
    async def snapshot_audience(self, input: SnapshotAudienceInput) -> SnapshotAudienceResult:
        group = Group(at=input.now, first_batch=1, last_batch=self.batches, recipients=self.batches)
        return SnapshotAudienceResult(total=self.batches, recipients=self.batches, groups=[group])

    @activity.defn(name="send_batch")
    async def send_batch(self, input: SendBatchInput) -> SendBatchResult:
        assert input.batch_no is not None
        self.started.append(input.batch_no)
        self.most_in_flight = max(self.most_in_flight, len(self.started) - len(self.ended))
        if input.batch_no == self.slow:
            try:
                await asyncio.wait_for(self.others_done.wait(), SLOW_WAIT)
            except TimeoutError:
                pass  # the others never ended: they waited for this one
        else:
            await asyncio.sleep(0.05)
        self.ended.append(input.batch_no)
        if len(self.ended) == self.batches - 1 and self.slow not in self.ended:
            self.others_done.set()
        return SendBatchResult(recipients=1, sent=1)

    @activity.defn(name="finish_message")
    async def finish_message(self, input: FinishMessageInput) -> FinishMessageResult:
        return FinishMessageResult(status="sent", counts={"sent": self.batches})


async def _run(env: WorkflowEnvironment, workflow: type, stand_in: StandIn, task_queue: str):
    """Run `workflow` for a message of the stand-in's batches: its handle and result."""
    args = RunCampaignMessageInput(
        workspace_id=uuid.uuid4(), campaign_id=uuid.uuid4(), message_id=uuid.uuid4()
    )
    return await run_message(env, workflow, stand_in.all(), task_queue, args, timeout=60)


async def test_a_slow_batch_holds_back_no_other(temporal_env, task_queue: str):
    stand_in = StandIn(batches=9, slow=1)
    handle, result = await _run(temporal_env, CampaignMessageWorkflow, stand_in, task_queue)

    assert (result.status, result.sent, result.recipients) == ("sent", 9, 9)
    assert [w.sent for w in result.waves] == [9]
    # Batches 5 to 9 went out while batch 1 was still with the provider (in waves, batch 5
    # would have waited for it), never more than PARALLEL_BATCHES at once.
    assert stand_in.ended[-1] == 1, stand_in.ended
    assert sorted(stand_in.started) == list(range(1, 10))
    assert stand_in.most_in_flight == PARALLEL_BATCHES
    assert _marked(await handle.fetch_history(), SLIDING_BATCHES)


async def test_continue_as_new_waits_for_the_batches_in_flight(
    suggesting_env: WorkflowEnvironment, task_queue: str
):
    """Suggested continue-as-new (every 10 history events): no batch starts, the run
    continues once those in flight end, and the next run starts at the next batch."""
    stand_in = StandIn(batches=14)
    handle, result = await _run(suggesting_env, CampaignMessageWorkflow, stand_in, task_queue)
    runs = await _runs(suggesting_env, handle.id, handle.first_execution_run_id)

    assert (result.status, result.sent) == ("sent", 14)
    assert sorted(stand_in.started) == list(range(1, 15))  # each batch exactly once
    assert len(runs) > 2
    replayer = Replayer(workflows=[CampaignMessageWorkflow], data_converter=pydantic_data_converter)
    for history in runs:
        await replayer.replay_workflow(history)


@pytest.mark.parametrize("code", ["current", PRE_SLIDING])
async def test_batches_run(
    code: str,
    temporal_env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """A message of 6 batches on today's code (or, when recording, on the code before
    `sliding-batches`: waves of 4 and 2): each batch once, and its history replays today."""
    record = bool(os.environ.get("WM_RECORD_HISTORIES"))
    if code != "current" and not record:
        pytest.skip("the pre-patch run is recorded, not re-run: WM_RECORD_HISTORIES=1")
    workflow = (
        CampaignMessageWorkflow if code == "current" else _workflow_at(code, tmp_path, monkeypatch)
    )
    stand_in = StandIn(batches=6)
    handle, result = await _run(temporal_env, workflow, stand_in, task_queue)
    history = await handle.fetch_history()

    assert result.sent == 6 and sorted(stand_in.started) == list(range(1, 7))
    assert _marked(history, SLIDING_BATCHES) == (code == "current")
    name = "campaign_message_batches" + ("" if code == "current" else f"_{code}")
    if record:
        HISTORIES_DIR.joinpath(f"{name}.json").write_text(history.to_json())
    recorded = WorkflowHistory.from_json(name, (HISTORIES_DIR / f"{name}.json").read_text())
    replayer = Replayer(workflows=[CampaignMessageWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
    await replayer.replay_workflow(recorded)
