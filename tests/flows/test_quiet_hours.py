"""A journey's SMS held by quiet hours, end to end on the time-skipping server.

The gate reads the later of the wall clock and the journey's clock (`SendMessageInput.now`):
on the time-skipping server the journey's clock jumps to the end of the hold while the wall
clock stays in the evening, and a gate on the wall clock alone held the message again with a
`hold_until` already past — the journey re-sent at once, again and again, its history growing by
hundreds of events a second until Temporal's limit. Here the SMS goes out at 08:00 local and the
journey's history stays small.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from activities import build_activities
from activities.channels import SendMessageInput, SendMessageResult, SendOutcome
from tests.flows.conftest import Shop, until
from tests.flows.test_live_edits import HISTORIES, ON_TIME, create, flow, step_time
from workflows.journey import JourneyWorkflow
from workflows.registry import ALL as WORKFLOWS

# A one-step journey's history: start, a few workflow tasks, the send activity twice, the
# hold's timer, search attribute upserts and markers (local activities, patches): 35 today. The
# spinning journey of the bug had thousands within seconds.
MAX_EVENTS = 60


def late_evening_zone(now: datetime) -> ZoneInfo:
    """A fixed-offset zone where it is 23:xx now (inside quiet hours 21:00–08:00, hours away
    from their end whenever the test runs). `Etc/GMT-5` is UTC+5."""
    offset = (23 - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return ZoneInfo(f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT")


async def test_a_held_sms_goes_out_at_eight_local_and_the_history_stays_small(shop: Shop):
    await shop.api("PATCH", "/v1/workspace/channel-settings", json={
        "quiet_hours": {"enabled": True, "start": "21:00", "end": "08:00"},
    })  # fmt: skip
    body = {"name": "Cart SMS", "channel": "sms", "body": "Your cart is waiting"}
    template_id = (await shop.api("POST", "/v1/templates", 201, json=body))["id"]
    remind = {"id": "remind", "type": "send", "channel": "sms", "template_id": template_id,
              "next": None}  # fmt: skip
    flow_id = await create(shop, flow("Night SMS", remind))
    zone = late_evening_zone(datetime.now(UTC))
    profile_id = await shop.customer("night-owl", timezone=zone.key)

    async with shop.worker():
        await shop.track("night-owl", "Started Checkout", {"$value": 40.0})
        journey = await shop.at_step(flow_id, profile_id, "remind")

        async def held() -> list:
            rows = await shop.messages(flow_id, profile_id)
            return rows if rows and rows[0]["hold_until"] is not None else []

        [message] = await until(held)
        hold_until = message["hold_until"]
        assert hold_until.astimezone(zone).time() == time(8, 0)
        assert timedelta(0) < hold_until - message["created_at"] <= timedelta(hours=9)
        assert message["status"] == "queued"
        assert await shop.outbox(profile_id) == []

        await shop.skip(timedelta(hours=10))  # the night passes on the journey's clock
        ended = await shop.ended(flow_id, profile_id)

    assert ended["status"] == "completed"
    [sms] = await shop.outbox(profile_id)
    assert sms["text"] == "Your cart is waiting"
    [message] = await shop.messages(flow_id, profile_id)
    assert message["status"] == "sent"
    sent_at = await step_time(shop, journey["id"], "remind", "completed")
    assert hold_until <= sent_at < hold_until + ON_TIME

    await small_history_that_replays(shop, journey, MAX_EVENTS, "journey_held_sms")


async def test_a_gate_behind_the_journeys_clock_is_asked_again_a_minute_later(shop: Shop):
    """A gate whose clock lags the journey's (clock drift between worker and server) answers a
    hold that already ended: the journey asks again a minute later on its clock, not at once
    in a loop without a timer."""
    asked: list[datetime] = []

    @activity.defn(name="send_message")
    async def lagging_gate(input: SendMessageInput) -> SendMessageResult:
        assert input.now is not None
        asked.append(input.now)
        if len(asked) <= 3:
            late = input.now - timedelta(seconds=5)
            return SendMessageResult(outcome=SendOutcome.held, hold_until=late)
        return SendMessageResult(outcome=SendOutcome.sent, message_id=uuid.uuid4())

    real = [a for a in build_activities(shop.engine, shop.settings)
            if getattr(a, "__name__", "") != "send_message"]  # fmt: skip
    body = {"name": "Cart SMS", "channel": "sms", "body": "Your cart is waiting"}
    template_id = (await shop.api("POST", "/v1/templates", 201, json=body))["id"]
    remind = {"id": "remind", "type": "send", "channel": "sms", "template_id": template_id,
              "next": None}  # fmt: skip
    flow_id = await create(shop, flow("Drifting SMS", remind))
    profile_id = await shop.customer("drifter")
    async with Worker(
        shop.client,
        task_queue=shop.settings.task_queue,
        workflows=WORKFLOWS,
        activities=[*real, lagging_gate],
    ):
        await shop.track("drifter", "Started Checkout", {"$value": 40.0})
        journey = await shop.at_step(flow_id, profile_id, "remind")
        await shop.skip(timedelta(minutes=10))
        ended = await shop.ended(flow_id, profile_id)

    assert ended["status"] == "completed"
    assert len(asked) == 4
    gaps = [later - earlier for earlier, later in zip(asked, asked[1:], strict=False)]
    assert all(timedelta(minutes=1) <= gap < timedelta(minutes=1) + ON_TIME for gap in gaps), gaps
    await small_history_that_replays(shop, journey, MAX_EVENTS + 20, "journey_held_send_wait")


async def small_history_that_replays(shop: Shop, journey: Any, limit: int, name: str) -> None:
    """The journey's history is at most `limit` events and replays on today's code;
    `WM_RECORD_HISTORIES=1` keeps it in tests/flows/histories (docs/VERSIONING.md)."""
    history = await shop.client.get_workflow_handle(journey["workflow_id"]).fetch_history()
    assert len(history.events) <= limit, f"{len(history.events)} events"
    if os.environ.get("WM_RECORD_HISTORIES"):
        HISTORIES.joinpath(f"{name}.json").write_text(history.to_json())
    replayer = Replayer(workflows=[JourneyWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
