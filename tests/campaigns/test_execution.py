"""Campaign message execution: audience snapshot (first path wins), local-time groups, throttled
waves, empty audiences, exactly-once batches, and the delayed-workflow registration.

The workflow runs on the time-skipping test server with the real activities, the real send
path and the local outbox (no provider account): what a recipient would get is a row in
`local_outbox`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from campaigns.activities import CampaignActivities, SendBatchInput
from campaigns.scheduling import LOCAL_TIME_LEAD, schedule_message, unschedule_message
from channels.settings import ChannelSettings, save_channel_settings
from core.db import session_scope
from core.settings import Settings
from ingest.consents import ConsentUpdate, apply_consents
from models import Channel, ConsentSource, ConsentState, Profile
from models.campaigns import Campaign, CampaignMessage, CampaignPath
from models.lists import ListMember, ProfileList
from models.segments import Segment, SegmentMember
from models.templates import Template
from workflows.campaign_message import (
    CampaignMessageWorkflow,
    RunCampaignMessageInput,
    RunCampaignMessageResult,
    workflow_id,
)

HTML = "<html><body><p>Hi {{ profile.first_name }}!</p></body></html>"
SLACK = timedelta(minutes=5)  # activities run in real time between skipped timers


@pytest.fixture
def send_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        public_url="https://wm.example.com",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )


class Shop:
    """Test data for one workspace: profiles, lists, segments, a campaign and its messages."""

    def __init__(self, engine, workspace_id: uuid.UUID, template_id: uuid.UUID) -> None:
        self.engine = engine
        self.ws = workspace_id
        self.template_id = template_id

    @classmethod
    async def create(cls, engine, workspaces) -> Shop:
        ws = await workspaces.create()
        template = Template(
            workspace_id=ws.id,
            name=f"t-{uuid.uuid4()}",
            channel=Channel.email,
            subject="Hello {{ profile.first_name }}",
            html=HTML,
        )
        async with session_scope(engine) as session:
            cs = ChannelSettings(from_email="shop@example.com", from_name="Shop")
            await save_channel_settings(session, ws.id, cs)
            session.add(template)
        return cls(engine, ws.id, template.id)

    async def profile(self, *, tz: str | None = "UTC", consent: bool = True) -> uuid.UUID:
        n = uuid.uuid4().hex[:10]
        profile = Profile(
            workspace_id=self.ws, email=f"p-{n}@example.com", first_name="Ada", timezone=tz
        )
        async with session_scope(self.engine) as session:
            session.add(profile)
            await session.flush()
            if consent:
                update = ConsentUpdate(
                    profile.id, Channel.email, ConsentState.subscribed, ConsentSource.api
                )
                await apply_consents(session, self.ws, [update])
        return profile.id

    async def list(self, *members: uuid.UUID) -> uuid.UUID:
        lst = ProfileList(workspace_id=self.ws, name=f"l-{uuid.uuid4()}")
        async with session_scope(self.engine) as session:
            session.add(lst)
            await session.flush()
            for pid in members:
                session.add(
                    ListMember(list_id=lst.id, profile_id=pid, workspace_id=self.ws, source="api")
                )
        return lst.id

    async def segment(self, *members: uuid.UUID) -> uuid.UUID:
        seg = Segment(workspace_id=self.ws, name=f"s-{uuid.uuid4()}", definition={})
        async with session_scope(self.engine) as session:
            session.add(seg)
            await session.flush()
            for pid in members:
                session.add(SegmentMember(segment_id=seg.id, profile_id=pid, workspace_id=self.ws))
        return seg.id

    async def campaign(self, **kw) -> uuid.UUID:
        campaign = Campaign(workspace_id=self.ws, name=f"c-{uuid.uuid4()}", **kw)
        async with session_scope(self.engine) as session:
            session.add(campaign)
        return campaign.id

    async def path(self, campaign_id: uuid.UUID, position: int, **audience) -> uuid.UUID:
        path = CampaignPath(
            campaign_id=campaign_id, workspace_id=self.ws, position=position, **audience
        )
        async with session_scope(self.engine) as session:
            session.add(path)
        return path.id

    async def message(
        self, campaign_id: uuid.UUID, path_id: uuid.UUID, send_at: datetime, **kw
    ) -> uuid.UUID:
        message = CampaignMessage(
            campaign_id=campaign_id,
            path_id=path_id,
            workspace_id=self.ws,
            name="Sale",
            channel=Channel.email,
            template_id=self.template_id,
            send_at=send_at,
            smart_sending=False,
            status="scheduled",
            **kw,
        )
        async with session_scope(self.engine) as session:
            session.add(message)
        return message.id

    async def rows(self, sql: str, **params) -> list:
        async with session_scope(self.engine) as session:
            return list(await session.execute(text(sql), {"ws": self.ws} | params))

    async def outbox(self, message_id: uuid.UUID) -> list[uuid.UUID]:
        """Profiles that got the campaign message, one entry per local outbox row."""
        rows = await self.rows(
            "SELECT m.profile_id FROM local_outbox o JOIN messages m ON m.id = o.message_id "
            "WHERE o.workspace_id = :ws AND m.campaign_message_id = :mid",
            mid=message_id,
        )
        return sorted(r.profile_id for r in rows)


@pytest.fixture
async def shop(engine, workspaces) -> Shop:
    return await Shop.create(engine, workspaces)


@pytest.fixture
async def run(time_skipping_env: WorkflowEnvironment, engine, send_settings, task_queue):
    """Run a campaign message workflow to its end on the time-skipping server."""
    env = time_skipping_env
    activities = CampaignActivities(engine, send_settings).all()
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[CampaignMessageWorkflow],
        activities=activities,
    ):

        async def _run(shop: Shop, campaign_id, message_id, **kw) -> RunCampaignMessageResult:
            return await env.client.execute_workflow(
                CampaignMessageWorkflow.run,
                RunCampaignMessageInput(
                    workspace_id=shop.ws, campaign_id=campaign_id, message_id=message_id, **kw
                ),
                id=f"{workflow_id(message_id)}-{uuid.uuid4()}",
                task_queue=task_queue,
            )

        yield _run


async def test_overlapping_paths_each_recipient_gets_its_first_paths_message(
    shop, run, time_skipping_env
):
    p = {name: await shop.profile() for name in ("ab", "bc", "c", "cx", "a", "seg", "b")}
    no_consent = await shop.profile(consent=False)
    list_a = await shop.list(p["ab"], p["a"], no_consent)
    list_b = await shop.list(p["ab"], p["bc"], p["b"])
    list_c = await shop.list(p["bc"], p["c"], p["cx"])
    list_x = await shop.list(p["cx"], p["b"])  # excluded from path 2 and 3
    segment = await shop.segment(p["seg"], p["a"])
    now = await time_skipping_env.get_current_time()
    cid = await shop.campaign()
    path1 = await shop.path(cid, 0, include_lists=[list_a])
    path2 = await shop.path(cid, 1, include_lists=[list_b], include_segments=[segment],
                            exclude_lists=[list_x])  # fmt: skip
    path3 = await shop.path(cid, 2, include_lists=[list_c], exclude_lists=[list_x])
    at = now + timedelta(hours=1)
    m1, m2, m3 = [await shop.message(cid, path, at) for path in (path1, path2, path3)]

    r1, r2, r3 = [await run(shop, cid, m) for m in (m1, m2, m3)]

    # path 1 wins "ab" and "a"; "b" is excluded from path 2 and reaches no other path.
    assert await shop.outbox(m1) == sorted([p["ab"], p["a"]])
    assert await shop.outbox(m2) == sorted([p["bc"], p["seg"]])
    assert await shop.outbox(m3) == [p["c"]]
    assert (r1.status, r1.recipients, r1.sent, r1.skipped) == ("sent", 3, 2, {"no_consent": 1})
    assert (r2.sent, r3.sent) == (2, 1)
    assert r1.waves[0].started_at >= at
    recorded = await shop.rows(
        "SELECT status, reason FROM campaign_recipients WHERE message_id = :m AND profile_id = :p",
        m=m1,
        p=no_consent,
    )
    assert [tuple(r) for r in recorded] == [("skipped", "no_consent")]
    statuses = await shop.rows("SELECT status FROM campaign_messages WHERE campaign_id = :c", c=cid)
    assert {r.status for r in statuses} == {"sent"}
    locked = await shop.rows("SELECT settings_locked_forever FROM campaigns WHERE id = :c", c=cid)
    assert [r[0] for r in locked] == [True]


async def test_local_time_groups_go_out_at_local_time_and_passed_zones_next_day(
    shop, run, time_skipping_env
):
    zones = ["Asia/Tokyo", "UTC", "America/New_York"]
    by_zone = {z: await shop.profile(tz=z) for z in zones}
    unknown_zone = await shop.profile(tz="Mars/Olympus_Mons")  # falls back to the campaign's
    everyone = await shop.list(*by_zone.values(), unknown_zone)
    now = await time_skipping_env.get_current_time()
    send_at = (now + timedelta(hours=2)).replace(microsecond=0)
    cid = await shop.campaign(
        timezone="UTC", use_recipient_local_time=True, passed_local_time="next_day"
    )
    path = await shop.path(cid, 0, include_lists=[everyone])
    mid = await shop.message(cid, path, send_at)

    result = await run(shop, cid, mid)

    wall = send_at.replace(tzinfo=None)
    expected = {}
    for zone in zones:
        due = wall.replace(tzinfo=ZoneInfo(zone))
        if due < now:  # Tokyo: 2 hours from now in UTC has passed there → next day
            due = (wall + timedelta(days=1)).replace(tzinfo=ZoneInfo(zone))
        expected[zone] = due
    assert expected["Asia/Tokyo"] > expected["America/New_York"] > expected["UTC"]
    assert [w.due for w in result.waves] == sorted(expected.values())
    assert [w.recipients for w in result.waves] == [2, 1, 1]  # UTC + unknown zone, NY, Tokyo
    for wave in result.waves:
        assert wave.due <= wave.started_at < wave.due + SLACK
    rows = await shop.rows(
        "SELECT profile_id, local_send_at FROM campaign_recipients WHERE message_id = :m", m=mid
    )
    due_of = {r.profile_id: r.local_send_at for r in rows}
    assert {z: due_of[pid] for z, pid in by_zone.items()} == expected
    assert due_of[unknown_zone] == expected["UTC"]
    assert len(await shop.outbox(mid)) == 4


async def test_throttled_sends_a_quarter_per_hour_in_four_waves(shop, run, time_skipping_env):
    profiles = [await shop.profile() for _ in range(8)]
    everyone = await shop.list(*profiles)
    now = await time_skipping_env.get_current_time()
    send_at = now + timedelta(minutes=30)
    cid = await shop.campaign()
    path = await shop.path(cid, 0, include_lists=[everyone])
    mid = await shop.message(cid, path, send_at, strategy="throttled", throttle_percent=25)

    result = await run(shop, cid, mid, batch_size=1)  # two batches per wave

    assert [w.due for w in result.waves] == [send_at + timedelta(hours=k) for k in range(4)]
    assert [(w.recipients, w.sent) for w in result.waves] == [(2, 2)] * 4
    for wave in result.waves:
        assert wave.due <= wave.started_at < wave.due + SLACK
    batches = await shop.rows(
        "SELECT DISTINCT batch_no FROM campaign_recipients WHERE message_id = :m", m=mid
    )
    assert sorted(r.batch_no for r in batches) == list(range(8))
    assert await shop.outbox(mid) == sorted(profiles)


async def test_empty_audience_cancels_the_message(shop, run, time_skipping_env):
    nobody = await shop.list()
    now = await time_skipping_env.get_current_time()
    cid = await shop.campaign()
    path = await shop.path(cid, 0, include_lists=[nobody])
    mid = await shop.message(cid, path, now + timedelta(hours=3))

    result = await run(shop, cid, mid)

    assert result.status == "cancelled"
    rows = await shop.rows(
        "SELECT status, status_reason FROM campaign_messages WHERE id = :m", m=mid
    )
    assert [tuple(r) for r in rows] == [("cancelled", "no recipients")]
    assert await shop.outbox(mid) == []


async def test_rerunning_a_batch_sends_nothing_twice(
    shop, run, time_skipping_env, engine, send_settings
):
    profiles = [await shop.profile() for _ in range(3)]
    everyone = await shop.list(*profiles)
    now = await time_skipping_env.get_current_time()
    cid = await shop.campaign()
    path = await shop.path(cid, 0, include_lists=[everyone])
    mid = await shop.message(cid, path, now + timedelta(minutes=10))
    first = await run(shop, cid, mid)
    assert first.sent == 3 and len(await shop.outbox(mid)) == 3

    # A worker killed after the provider call and before recording the batch: its rows are
    # still pending, and the batch runs again.
    await shop.rows(
        "UPDATE campaign_recipients SET status = 'pending' WHERE message_id = :m RETURNING 1",
        m=mid,
    )
    again = await ActivityEnvironment().run(
        CampaignActivities(engine, send_settings).send_batch,
        SendBatchInput(workspace_id=shop.ws, message_id=mid, batch_no=0),
    )

    assert (again.recipients, again.sent, again.replayed) == (3, 3, 3)
    assert len(await shop.outbox(mid)) == 3  # no one got it twice
    rows = await shop.rows(
        "SELECT DISTINCT status FROM campaign_recipients WHERE message_id = :m", m=mid
    )
    assert [r.status for r in rows] == ["sent"]


async def test_schedule_registers_a_delayed_workflow_and_unschedule_removes_it(
    shop, settings, temporal_env
):
    client = temporal_env.client
    cid = await shop.campaign()
    path = await shop.path(cid, 0)
    send_at = datetime.now(ZoneInfo("UTC")) + timedelta(days=7)
    mid = await shop.message(cid, path, send_at)

    wid = await schedule_message(client, settings, shop.ws, cid, mid, send_at)
    again = await schedule_message(
        client, settings, shop.ws, cid, mid, send_at + timedelta(hours=1)
    )

    assert wid == again == f"campaign-message-{mid}"
    description = await client.get_workflow_handle(wid).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    # Started a day and some ahead of the (new) send time, for recipients' local time zones.
    expected_start = send_at + timedelta(hours=1) - LOCAL_TIME_LEAD
    assert abs(description.execution_time - expected_start) < timedelta(minutes=1)
    assert await unschedule_message(client, settings, shop.ws, mid) is True
    description = await client.get_workflow_handle(wid).describe()
    assert description.status == WorkflowExecutionStatus.TERMINATED
    assert await unschedule_message(client, settings, shop.ws, mid) is False


async def test_a_worker_restart_between_waves_finishes_without_duplicates(
    shop, time_skipping_env, engine, send_settings, task_queue
):
    env = time_skipping_env
    profiles = [await shop.profile() for _ in range(8)]
    everyone = await shop.list(*profiles)
    now = await env.get_current_time()
    cid = await shop.campaign()
    path = await shop.path(cid, 0, include_lists=[everyone])
    mid = await shop.message(cid, path, now, strategy="throttled", throttle_percent=50)
    args = RunCampaignMessageInput(workspace_id=shop.ws, campaign_id=cid, message_id=mid)

    def worker() -> Worker:
        return Worker(
            env.client,
            task_queue=task_queue,
            workflows=[CampaignMessageWorkflow],
            activities=CampaignActivities(engine, send_settings).all(),
            max_cached_workflows=0,  # no sticky queue of a stopped worker to wait out
        )

    async with worker():
        handle = await env.client.start_workflow(
            CampaignMessageWorkflow.run, args, id=workflow_id(mid), task_queue=task_queue
        )
        deadline = asyncio.get_running_loop().time() + 30
        while await handle.query(CampaignMessageWorkflow.get_sent) < 4:
            assert asyncio.get_running_loop().time() < deadline, "first wave never went out"
            await asyncio.sleep(0.1)
    assert len(await shop.outbox(mid)) == 4  # the first wave; the second waits an hour

    async with worker():  # a new worker process picks the workflow up
        result = await handle.result()

    assert [(w.recipients, w.sent) for w in result.waves] == [(4, 4), (4, 4)]
    assert await shop.outbox(mid) == sorted(profiles)
