"""Live edits of a running flow, end to end: the flow is edited and published through the REST
API while customers are in it (journeys started by their events through the outbox and the
router), on the time-skipping server, so the test asserts when messages actually go out.

Publishing version N+1 moves running journeys to it: a journey goes on at the step with the
same id (the new template, the new next step); a journey whose step is gone leaves, removed
(`step_removed`); a journey in a delay whose duration changed is re-timed from when it entered
the delay. A journey started on the old version a moment before the publish (the router read
the flow just before) runs the new one from its first step.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from activities import build_activities
from activities.journeys import JourneyActivities, LoadFlowVersionInput, LoadFlowVersionResult
from tests.flows.conftest import Shop, until
from workflows.journey import JourneyWorkflow, StartJourneyInput
from workflows.registry import ALL as WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"
# What a user would call "on time": a timer fires at its time; the step after it is written
# once its activities ran (wall-clock seconds, while the server's clock may be skipping).
ON_TIME = timedelta(minutes=1)
HTML = '<p>Hi {{ profile.first_name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'


# --- building flows through the API (shared with test_statuses) -------------------------------


async def template(shop: Shop, name: str, subject: str) -> str:
    body = {"name": name, "channel": "email", "subject": subject, "html": HTML}
    return (await shop.api("POST", "/v1/templates", 201, json=body))["id"]


def delay(step_id: str, amount: int, unit: str, next: str | None) -> dict[str, Any]:
    return {"id": step_id, "type": "delay", "duration": {"amount": amount, "unit": unit},
            "next": next}  # fmt: skip


def email(step_id: str, template_id: str, next: str | None = None) -> dict[str, Any]:
    return {"id": step_id, "type": "send", "channel": "email", "template_id": template_id,
            "next": next}  # fmt: skip


def tag(step_id: str, name: str, next: str | None = None) -> dict[str, Any]:
    return {"id": step_id, "type": "tag", "tag": name, "next": next}


def flow(
    name: str, *steps: dict[str, Any], entry: str | None = None, metric: str = "Started Checkout"
) -> dict[str, Any]:
    return {
        "name": name,
        "trigger": {"type": "event", "metric": metric},
        "settings": {},
        "entry": entry or steps[0]["id"],
        "steps": list(steps),
    }


async def create(shop: Shop, definition: dict[str, Any]) -> uuid.UUID:
    """Create the flow and publish it (version 1, live)."""
    created = await shop.api("POST", "/v1/flows", 201, json={"definition": definition})
    published = await shop.api("POST", f"/v1/flows/{created['id']}/publish", json={})
    assert (published["version"]["version"], published["status"]) == (1, "live"), published
    return uuid.UUID(created["id"])


async def publish(shop: Shop, flow_id: uuid.UUID, definition: dict[str, Any]) -> int:
    """Edit the draft and publish it; the new version's number."""
    await shop.api("PUT", f"/v1/flows/{flow_id}/draft", json={"definition": definition})
    published = await shop.api("POST", f"/v1/flows/{flow_id}/publish", json={"message": "edit"})
    assert published["published"], published
    return published["version"]["version"]


async def set_status(shop: Shop, flow_id: uuid.UUID, status: str) -> dict[str, Any]:
    return await shop.api("POST", f"/v1/flows/{flow_id}/status", json={"status": status})


async def checkout(shop: Shop, flow_id: uuid.UUID, user: str, step: str) -> Any:
    """The customer starts a checkout (tracking API); their journey, once it is in `step`."""
    await shop.track(user, "Started Checkout", {"$value": 40.0})
    return await shop.at_step(flow_id, await profile(shop, user), step)


async def profile(shop: Shop, user: str) -> uuid.UUID:
    [row] = await shop.rows("SELECT id FROM profiles WHERE external_id = :u", u=user)
    return row["id"]


async def steps(shop: Shop, journey_id: uuid.UUID) -> list[tuple[str, str, str | None, int]]:
    """(step, outcome, reason, flow version) of every step record, in order."""
    rows = await shop.rows(
        "SELECT step_id, outcome, reason, flow_version FROM journey_steps "
        "WHERE journey_id = :j ORDER BY id",
        j=journey_id,
    )
    return [(r["step_id"], r["outcome"], r["reason"], r["flow_version"]) for r in rows]


async def step_time(shop: Shop, journey_id: uuid.UUID, step: str, outcome: str) -> datetime:
    return (await shop.step_times(journey_id, outcome))[step]


async def subjects(shop: Shop, user: str) -> list[str]:
    """The subjects of the emails the customer got (local outbox), oldest first."""
    return [m["subject"] for m in await shop.outbox(await profile(shop, user))]


async def got_email(shop: Shop, user: str, count: int = 1) -> list[str]:
    async def arrived() -> list[str] | None:
        have = await subjects(shop, user)
        return have if len(have) >= count else None

    arrived.__name__ = f"{count} email(s) to {user}"
    return await until(arrived)


async def wakes_at(shop: Shop, journey: Any, expected: datetime) -> None:
    """Wait until the journey (a `journeys` row) sleeps until `expected` (the edit arrived).
    The delay starts once its `entered` row is written: a moment after that row's time."""
    handle = shop.client.get_workflow_handle(journey["workflow_id"])

    async def retimed() -> bool:
        wake_at = (await handle.query(JourneyWorkflow.get_state)).wake_at
        return wake_at is not None and expected <= wake_at < expected + ON_TIME

    retimed.__name__ = f"journey sleeping until {expected}"
    await until(retimed)


async def ended(shop: Shop, flow_id: uuid.UUID, user: str) -> Any:
    return await shop.ended(flow_id, await profile(shop, user))


async def start_pinned(shop: Shop, flow_id: uuid.UUID, user: str, version: int) -> Any:
    """Start a journey as the router does, on `version` (the router read the flow a moment
    before it changed)."""
    journey_id = uuid.uuid4()
    return await shop.client.start_workflow(
        JourneyWorkflow.run,
        StartJourneyInput(workspace_id=shop.ws.id, flow_id=flow_id, version=version,
                          profile_id=await profile(shop, user), journey_id=journey_id),
        id=f"journey-{flow_id}-{journey_id}",
        task_queue=shop.settings.task_queue,
    )  # fmt: skip


async def replays(shop: Shop, journey: Any, name: str) -> None:
    """The journey's history replays on today's code; `WM_RECORD_HISTORIES=1` keeps it in
    tests/flows/histories for `test_replay.py` (docs/VERSIONING.md)."""
    history = await shop.client.get_workflow_handle(journey["workflow_id"]).fetch_history()
    if os.environ.get("WM_RECORD_HISTORIES"):
        HISTORIES.joinpath(f"{name}.json").write_text(history.to_json())
    replayer = Replayer(workflows=[JourneyWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


# --- tests -------------------------------------------------------------------------------------


async def test_a_journey_goes_on_at_the_same_step_with_the_new_version(shop: Shop):
    old = await template(shop, "Cart v1", "Your cart is waiting")
    new = await template(shop, "Cart v2", "Still thinking it over?")
    flow_id = await create(shop, flow("Cart", delay("wait", 1, "days", "mail"), email("mail", old)))
    await shop.customer("waiting")
    await shop.customer("late")
    async with shop.worker():
        journey = await checkout(shop, flow_id, "waiting", "wait")
        # v2: the email's template changes and a step follows it.
        v2 = flow(
            "Cart",
            delay("wait", 1, "days", "mail"),
            email("mail", new, next="thanks"),
            tag("thanks", "edited-flow"),
        )
        assert await publish(shop, flow_id, v2) == 2
        # The router read version 1 just before the publish; its journey starts after it.
        late = await start_pinned(shop, flow_id, "late", version=1)
        await shop.skip(timedelta(days=1, minutes=5))
        assert (await ended(shop, flow_id, "waiting"))["status"] == "completed"
        assert (await late.result()).status == "completed"

    assert await subjects(shop, "waiting") == ["Still thinking it over?"]
    assert await subjects(shop, "late") == ["Still thinking it over?"]
    assert await steps(shop, journey["id"]) == [
        ("wait", "entered", None, 1),
        ("wait", "completed", None, 2),
        ("mail", "entered", None, 2),
        ("mail", "completed", None, 2),
        ("thanks", "entered", None, 2),
        ("thanks", "completed", None, 2),
    ]
    tags = await shop.rows(
        "SELECT properties->'tags' AS tags FROM profiles WHERE external_id IN ('waiting', 'late')"
    )
    assert [r["tags"] for r in tags] == [["edited-flow"], ["edited-flow"]]
    # Still on time: the delay that did not change fired one day after the journey entered it.
    waited = await step_time(shop, journey["id"], "wait", "completed") - await step_time(
        shop, journey["id"], "wait", "entered"
    )
    assert timedelta(days=1) <= waited < timedelta(days=1) + ON_TIME


async def test_a_journey_whose_step_was_deleted_leaves_counted_as_removed(shop: Shop):
    first = await template(shop, "First", "First reminder")
    second = await template(shop, "Second", "Second reminder")
    v1 = flow(
        "Reminders",
        delay("wait-1", 1, "days", "mail-1"),
        email("mail-1", first, next="wait-2"),
        delay("wait-2", 3, "days", "mail-2"),
        email("mail-2", second),
    )
    flow_id = await create(shop, v1)
    await shop.customer("ahead")
    await shop.customer("behind")
    async with shop.worker():
        ahead = await checkout(shop, flow_id, "ahead", "wait-1")
        await shop.skip(timedelta(days=1, minutes=5))
        await shop.at_step(flow_id, ahead["profile_id"], "wait-2")
        behind = await checkout(shop, flow_id, "behind", "wait-1")
        # v2: no first delay any more (the flow starts with the first email).
        v2 = {**v1, "entry": "mail-1", "steps": v1["steps"][1:]}
        assert await publish(shop, flow_id, v2) == 2
        gone = await ended(shop, flow_id, "behind")
        await shop.skip(timedelta(days=3, minutes=5))
        done = await ended(shop, flow_id, "ahead")

    assert (gone["status"], gone["end_reason"], gone["current_step"]) == (
        "removed",
        "step_removed",
        "wait-1",
    )
    assert await steps(shop, behind["id"]) == [
        ("wait-1", "entered", None, 1),
        ("wait-1", "skipped", "step_removed", 2),
    ]
    assert await subjects(shop, "behind") == []
    await replays(shop, behind, "journey_step_removed")
    # The customer whose step still exists goes on to the end.
    assert done["status"] == "completed"
    assert await subjects(shop, "ahead") == ["First reminder", "Second reminder"]
    removed = await shop.rows(
        "SELECT count(*) AS n FROM journeys WHERE flow_id = :f AND status = 'removed' "
        "AND end_reason = 'step_removed'",
        f=flow_id,
    )
    assert removed[0]["n"] == 1


async def test_a_changed_delay_is_retimed_from_when_the_journey_entered_it(shop: Shop):
    shorter_mail = await template(shop, "Shorter", "Sooner")
    longer_mail = await template(shop, "Longer", "Later")
    v1_short = flow("Shorter", delay("wait", 3, "days", "mail"), email("mail", shorter_mail))
    v1_long = flow(
        "Longer", delay("wait", 1, "hours", "mail"), email("mail", longer_mail),
        metric="Viewed Product",
    )  # fmt: skip
    shorter, longer = await create(shop, v1_short), await create(shop, v1_long)
    for user in ("early", "late", "patient"):
        await shop.customer(user)
    async with shop.worker():
        early = await checkout(shop, shorter, "early", "wait")
        await shop.track("patient", "Viewed Product", {})
        patient = await shop.at_step(longer, await profile(shop, "patient"), "wait")

        # 1 hour -> 2 days, ten minutes in: it keeps sleeping past the hour.
        await shop.skip(timedelta(minutes=10))
        assert await publish(shop, longer, {**v1_long, "steps": [
            delay("wait", 2, "days", "mail"), email("mail", longer_mail)]}) == 2  # fmt: skip
        patient_entered = await step_time(shop, patient["id"], "wait", "entered")
        await wakes_at(shop, patient, patient_entered + timedelta(days=2))

        await shop.skip(timedelta(minutes=40))
        late = await checkout(shop, shorter, "late", "wait")
        await shop.skip(timedelta(minutes=20))  # 70 minutes after "early" entered
        assert await subjects(shop, "patient") == []  # its old 1 hour is over: still sleeping

        # 3 days -> 1 hour: "early" entered 70 minutes ago (wakes at once), "late" 20 minutes
        # ago (sleeps 40 more).
        assert await subjects(shop, "early") == []
        published_at = await shop.env.get_current_time()
        assert await publish(shop, shorter, {**v1_short, "steps": [
            delay("wait", 1, "hours", "mail"), email("mail", shorter_mail)]}) == 2  # fmt: skip
        assert await got_email(shop, "early") == ["Sooner"]
        late_entered = await step_time(shop, late["id"], "wait", "entered")
        await wakes_at(shop, late, late_entered + timedelta(hours=1))
        assert await subjects(shop, "late") == []
        await shop.skip(timedelta(minutes=30))
        assert await subjects(shop, "late") == []
        await shop.skip(timedelta(minutes=15))
        assert await got_email(shop, "late") == ["Sooner"]

        assert await subjects(shop, "patient") == []
        await shop.skip(timedelta(days=2))
        assert await got_email(shop, "patient") == ["Later"]

    woke = await step_time(shop, early["id"], "wait", "completed")
    assert published_at <= woke < published_at + ON_TIME
    for journey, duration in ((late, timedelta(hours=1)), (patient, timedelta(days=2))):
        entered = await step_time(shop, journey["id"], "wait", "entered")
        woke = await step_time(shop, journey["id"], "wait", "completed")
        assert entered + duration <= woke < entered + duration + ON_TIME
        assert await step_time(shop, journey["id"], "mail", "completed") < woke + ON_TIME


async def test_a_journey_registering_during_a_publish_is_not_left_on_the_old_version(shop: Shop):
    """The publish's hook lists journeys before this one's row exists, and this one read the
    flow (`load_flow_version`, here a stand-in answering as of before the publish) before the
    publish committed: it learns of version 2 when it registers, before its first step."""
    real = JourneyActivities(shop.engine, shop.settings)

    @activity.defn(name="load_flow_version")
    async def read_before_the_publish(input: LoadFlowVersionInput) -> LoadFlowVersionResult:
        loaded = await real.load_flow_version(input)
        return loaded.model_copy(update={"live_version": input.version, "status": "live"})

    activities = [
        a
        for a in build_activities(shop.engine, shop.settings)
        if getattr(a, "__name__", "") != "load_flow_version"
    ]
    old = await template(shop, "Old", "Old subject")
    new = await template(shop, "New", "New subject")
    flow_id = await create(
        shop, flow("Racing", delay("wait", 1, "hours", "mail"), email("mail", old))
    )
    await shop.customer("racer")
    await publish(
        shop, flow_id, flow("Racing", delay("wait", 1, "hours", "mail"), email("mail", new))
    )
    async with Worker(
        shop.client,
        task_queue=shop.settings.task_queue,
        workflows=WORKFLOWS,
        activities=[*activities, read_before_the_publish],
    ):
        journey = await start_pinned(shop, flow_id, "racer", version=1)
        assert (await journey.result()).status == "completed"
    assert await subjects(shop, "racer") == ["New subject"]
    [row] = await shop.journeys(flow_id, await profile(shop, "racer"))
    assert [s[3] for s in await steps(shop, row["id"])] == [2, 2, 2, 2]
