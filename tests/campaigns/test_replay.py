"""Recorded campaign message histories must replay on today's code: a non-deterministic change to
`workflows.campaign_message` fails here (see docs/VERSIONING.md for the patching procedure).

`histories/` holds real runs of `CampaignMessageWorkflow` on the time-skipping server: an SMS
sent at 23:00 in recipients' local time to UTC, New York and Honolulu, so every recipient is
held by quiet hours (until 08:00 local) and the UTC recipient's hold ends between two later
local-time groups. `campaign_message_held_sms_4f03315.json` is the code before the
`held-before-next-group` patch (held recipients went out after the last group),
`campaign_message_held_sms.json` today's; `campaign_message_held_continue_as_new.json` a run
that continued-as-new from the loop sending held recipients (`held-continue-as-new`);
`campaign_message_batches*.json` six batches after and before `sliding-batches`
(`test_batch_window.py` records them).
`WM_RECORD_HISTORIES=1` re-records them (`test_held_sms_run`, `test_a_held_loop_...`).
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from campaigns.activities import CampaignActivities
from channels.settings import QuietHours, load_channel_settings, save_channel_settings
from core.db import session_scope
from core.settings import Settings
from ingest.consents import ConsentUpdate, apply_consents
from models import Channel, ConsentSource, ConsentState, Profile
from models.campaigns import Campaign, CampaignMessage, CampaignPath
from models.lists import ListMember, ProfileList
from models.templates import Template
from workflows.campaign_message import (
    HELD_BEFORE_NEXT_GROUP,
    HELD_CONTINUE_AS_NEW,
    CampaignMessageWorkflow,
    RunCampaignMessageInput,
    RunCampaignMessageResult,
)

HISTORIES_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORIES_DIR.glob("*.json"))
HELD_HISTORIES = [p for p in HISTORIES if "_held_" in p.stem]  # runs that send held recipients
REPO = Path(__file__).resolve().parents[2]
PRE_PATCH = "4f03315"  # the last commit whose workflow sent held recipients after the last group
SLACK = timedelta(minutes=5)  # activities run in real time between skipped timers
ZONES = {"utc": "UTC", "ny": "America/New_York", "honolulu": "Pacific/Honolulu"}


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_campaign_messages_replay(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())  # noqa: ASYNC240
    replayer = Replayer(workflows=[CampaignMessageWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def _suggested_while_sending_held(history: WorkflowHistory) -> WorkflowHistory:
    """The same run as if Temporal had suggested continue-as-new in every workflow task of the
    loops that send held recipients (after a `send_batch` for held recipients was scheduled and
    before the next batch of a group), and the code ignored it — as code before
    `held-continue-as-new` did."""
    events = []
    held = False
    for event in history.events:
        event = copy.deepcopy(event)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == "send_batch":
                held = json.loads(attributes.input.payloads[0].data)["held_due"] is not None
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and held:
            event.workflow_task_started_event_attributes.suggest_continue_as_new = True
        events.append(event)
    return WorkflowHistory(history.workflow_id, events)


@pytest.mark.parametrize("path", HELD_HISTORIES, ids=[p.stem for p in HELD_HISTORIES])
async def test_a_suggestion_ignored_while_sending_held_recipients_replays(path: Path):
    """Runs that got a continue-as-new suggestion in a held loop before the check existed
    replay: the check continues-as-new only under its patch, asked only when suggested."""
    recorded = WorkflowHistory.from_json(path.stem, path.read_text())  # noqa: ASYNC240
    history = _suggested_while_sending_held(recorded)
    started = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    suggested = [
        e
        for e in history.events
        if e.workflow_task_started_event_attributes.suggest_continue_as_new
    ]
    assert 0 < len(suggested) < sum(e.event_type == started for e in history.events)
    replayer = Replayer(workflows=[CampaignMessageWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def test_histories_cover_the_code_before_and_after_the_patch():
    assert {p.stem for p in HISTORIES} >= {
        "campaign_message_held_sms",
        f"campaign_message_held_sms_{PRE_PATCH}",
        "campaign_message_held_continue_as_new",
        "campaign_message_batches",  # test_batch_window.py
        "campaign_message_batches_3b526a3",
    }


def _workflow_at(revision: str, into: Path, monkeypatch: pytest.MonkeyPatch) -> type:
    """`CampaignMessageWorkflow` as `workflows/campaign_message.py` was at `revision`, imported
    from a copy (a module of its own name, so the sandbox can import it again)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:workflows/campaign_message.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    name = f"campaign_message_{revision}"
    into.mkdir(parents=True, exist_ok=True)
    (into / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(into))
    return importlib.import_module(name).CampaignMessageWorkflow


async def _held_sms_campaign(
    engine,
    workspace_id: uuid.UUID,
    send_at: datetime,
    zones: dict[str, str] = ZONES,
    local_time: bool = True,
):
    """An SMS at `send_at` (the campaign's UTC wall clock) in recipients' local time, to one
    consenting recipient per zone: (campaign id, message id, profile id by zone name)."""
    async with session_scope(engine) as session:
        profiles = {}
        for i, (name, zone) in enumerate(zones.items()):
            profile = Profile(workspace_id=workspace_id, phone=f"+1415555{300 + i:04d}",
                              timezone=zone)  # fmt: skip
            session.add(profile)
            await session.flush()
            profiles[name] = profile.id
        consents = [
            ConsentUpdate(pid, Channel.sms, ConsentState.subscribed, ConsentSource.api)
            for pid in profiles.values()
        ]
        await apply_consents(session, workspace_id, consents)
        everyone = ProfileList(workspace_id=workspace_id, name="Everyone")
        template = Template(workspace_id=workspace_id, name="S", channel=Channel.sms, body="Sale")
        campaign = Campaign(workspace_id=workspace_id, name="Night SMS",
                            use_recipient_local_time=local_time)  # fmt: skip
        session.add_all([everyone, template, campaign])
        await session.flush()
        session.add_all(
            ListMember(list_id=everyone.id, profile_id=pid, workspace_id=workspace_id, source="api")
            for pid in profiles.values()
        )
        path = CampaignPath(campaign_id=campaign.id, workspace_id=workspace_id, position=0,
                            include_lists=[everyone.id])  # fmt: skip
        session.add(path)
        await session.flush()
        message = CampaignMessage(campaign_id=campaign.id, path_id=path.id,
                                  workspace_id=workspace_id, name="SMS", channel=Channel.sms,
                                  template_id=template.id, send_at=send_at, smart_sending=False,
                                  status="scheduled")  # fmt: skip
        session.add(message)
    return campaign.id, message.id, profiles


def _settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        public_url="https://wm.example.com",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )


def _marked(history: WorkflowHistory, patch_id: str) -> bool:
    """The run recorded the patch's marker."""
    return any(
        patch_id.encode() in e.marker_recorded_event_attributes.SerializeToString()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    )


def _sends_held(history: WorkflowHistory) -> bool:
    """The run scheduled a `send_batch` of held recipients."""
    return any(
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data).get(
            "held_due"
        )
        is not None
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "send_batch"
    )


async def _run(
    env: WorkflowEnvironment,
    workflow: type,
    settings: Settings,
    engine,
    task_queue: str,
    workspace_id: uuid.UUID,
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
) -> tuple[WorkflowHandle, RunCampaignMessageResult]:
    """Run `workflow` (a `CampaignMessageWorkflow` class) for the message to its end, with the
    real activities: its handle and result."""
    args = RunCampaignMessageInput(
        workspace_id=workspace_id, campaign_id=campaign_id, message_id=message_id
    )
    activities = CampaignActivities(engine, settings).all()
    return await run_message(env, workflow, activities, task_queue, args)


async def run_message(
    env: WorkflowEnvironment,
    workflow: type,
    activities: list,
    task_queue: str,
    args: RunCampaignMessageInput,
    timeout: float = 300,
) -> tuple[WorkflowHandle, RunCampaignMessageResult]:
    """Run `workflow` for `args` to its end with `activities`: its handle and result."""
    async with Worker(
        env.client, task_queue=task_queue, workflows=[workflow], activities=activities
    ):
        handle = await env.client.start_workflow(
            "CampaignMessageWorkflow",
            args,
            id=f"campaign-message-{args.message_id}",
            task_queue=task_queue,
            result_type=RunCampaignMessageResult,
        )
        return handle, await asyncio.wait_for(handle.result(), timeout=timeout)


@pytest.mark.parametrize("code", ["current", PRE_PATCH])
async def test_held_sms_run(
    code: str,
    time_skipping_env: WorkflowEnvironment,
    engine,
    workspaces,
    database_url: str,
    task_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """The held-SMS run on today's code (or, when recording, on the pre-patch code): who got
    the SMS when, and its history replays on today's code."""
    record = bool(os.environ.get("WM_RECORD_HISTORIES"))
    if code != "current" and not record:
        pytest.skip("the pre-patch run is recorded, not re-run: WM_RECORD_HISTORIES=1")
    workflow = (
        CampaignMessageWorkflow if code == "current" else _workflow_at(code, tmp_path, monkeypatch)
    )
    env = time_skipping_env
    ws = await workspaces.create()
    t0 = await env.get_current_time()
    base = t0.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    send_at = base + timedelta(hours=(23 - base.hour) % 24)  # 23:00 UTC, 2 to 26 hours ahead
    cid, mid, profiles = await _held_sms_campaign(engine, ws.id, send_at)
    handle, _ = await _run(
        env, workflow, _settings(database_url), engine, task_queue, ws.id, cid, mid
    )
    history = await handle.fetch_history()

    async with session_scope(engine) as session:
        rows = await session.execute(
            text("SELECT profile_id, sent_at FROM messages WHERE campaign_message_id = :m"),
            {"m": mid},
        )
        sent = {r.profile_id: r.sent_at for r in rows}
    wall = send_at.replace(tzinfo=None)
    due = {n: wall.replace(tzinfo=ZoneInfo(z)) for n, z in ZONES.items()}
    release = {n: (due[n] + timedelta(days=1)).replace(hour=8) for n in ZONES}
    # The UTC recipient's hold ends between the New York and the Honolulu group.
    assert due["ny"] < release["utc"] < due["honolulu"] < release["ny"] < release["honolulu"]
    went_out = dict(release)
    if code != "current":  # held recipients whose hold had ended went out after the last group
        went_out["utc"] = due["honolulu"]
    for name, at in went_out.items():
        assert at <= sent[profiles[name]] < at + SLACK, (name, at.astimezone(UTC))
    assert _marked(history, HELD_BEFORE_NEXT_GROUP) == (code == "current")

    name = "campaign_message_held_sms" + ("" if code == "current" else f"_{code}")
    if record:
        HISTORIES_DIR.mkdir(exist_ok=True)
        HISTORIES_DIR.joinpath(f"{name}.json").write_text(history.to_json())
    replayer = Replayer(workflows=[CampaignMessageWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


async def _runs(env: WorkflowEnvironment, workflow_id: str, run_id: str) -> list[WorkflowHistory]:
    """The histories of a workflow's runs, from `run_id` along its continue-as-new chain."""
    histories = []
    while run_id:
        history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return histories


async def test_a_held_loop_continues_as_new_when_suggested_and_the_sms_still_goes_out_once(
    suggesting_env: WorkflowEnvironment,
    engine,
    workspaces,
    database_url: str,
    task_queue: str,
):
    env = suggesting_env
    ws = await workspaces.create()
    now = datetime.now(UTC)
    # Quiet hours (UTC, the recipient's zone) end one to two minutes from now: the SMS is held.
    end = (now + timedelta(minutes=2)).replace(second=0, microsecond=0)
    async with session_scope(engine) as session:
        channel_settings = await load_channel_settings(session, ws.id)
        channel_settings.quiet_hours = QuietHours(
            start=(end - timedelta(hours=12)).time(), end=end.time()
        )
        await save_channel_settings(session, ws.id, channel_settings)
    cid, mid, profiles = await _held_sms_campaign(
        engine, ws.id, now, zones={"utc": "UTC"}, local_time=False
    )
    settings = _settings(database_url)
    handle, result = await _run(
        env, CampaignMessageWorkflow, settings, engine, task_queue, ws.id, cid, mid
    )
    runs = await _runs(env, handle.id, handle.first_execution_run_id)

    assert (result.status, result.recipients, result.sent) == ("sent", 1, 1)
    async with session_scope(engine) as session:
        sent = (
            await session.execute(
                text("SELECT sent_at FROM messages WHERE campaign_message_id = :m"), {"m": mid}
            )
        ).all()
    assert len(sent) == 1 and end <= sent[0].sent_at < end + SLACK
    # The group loop continued-as-new after the batch, the held loop after waiting for the hold.
    # Run by run: (scheduled a send of held recipients, marked the held loop's patch).
    shapes = [(_sends_held(h), _marked(h, HELD_CONTINUE_AS_NEW)) for h in runs]
    assert shapes[0] == (False, False) and shapes[-1] == (True, False), shapes
    continued = [h for h, shape in zip(runs[1:-1], shapes[1:-1], strict=True) if shape[0]]
    assert continued and all(shape == (True, True) for shape in shapes[1:-1]), shapes
    replayer = Replayer(workflows=[CampaignMessageWorkflow], data_converter=pydantic_data_converter)
    for history in runs:
        await replayer.replay_workflow(history)
    if os.environ.get("WM_RECORD_HISTORIES"):
        path = HISTORIES_DIR / "campaign_message_held_continue_as_new.json"
        path.write_text(continued[0].to_json())
