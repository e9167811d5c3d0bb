"""Flows as code: `waymark flows validate|diff|apply` and `waymark examples install`, run as a
deploy pipeline would run them, against the test database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"


def waymark(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def versions(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT f.name, count(v.version) FROM flows f "
                "LEFT JOIN flow_versions v ON v.flow_id = f.id GROUP BY f.name"
            )
        )
        return {name: count for name, count in rows}


async def test_install_apply_change_and_refuse(engine, workspaces, database_url, tmp_path):
    ws = await workspaces.create()
    installed = waymark(database_url, "examples", "install", "--workspace", str(ws.id))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    first = await versions(engine)
    assert set(first) == {"Welcome series", "Abandoned cart", "Abandoned browse", "Post-purchase"}
    assert set(first.values()) == {1}

    # Applying the same files again changes nothing.
    again = waymark(database_url, "flows", "apply", str(EXAMPLES), "--workspace", str(ws.id))
    assert again.returncode == 0, again.stdout + again.stderr
    assert await versions(engine) == first

    # One changed file: its diff is shown, and exactly one new version is created.
    flows = tmp_path / "flows"
    shutil.copytree(EXAMPLES, flows)
    cart = flows / "abandoned-cart.yaml"
    cart.write_text(
        cart.read_text().replace("{amount: 4, unit: hours}", "{amount: 3, unit: hours}")
    )
    diff = waymark(database_url, "flows", "diff", str(flows), "--workspace", str(ws.id))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert "wait-4-hours" in diff.stdout
    applied = waymark(database_url, "flows", "apply", str(flows), "--workspace", str(ws.id))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert await versions(engine) == {**first, "Abandoned cart": 2}

    # A broken file fails validation (exit 1) and apply writes nothing.
    cart.write_text(cart.read_text().replace("next: reminder-sms", "next: no-such-step"))
    checked = waymark(database_url, "flows", "validate", str(flows), "--workspace", str(ws.id))
    assert checked.returncode == 1
    assert "no-such-step" in checked.stdout + checked.stderr
    refused = waymark(database_url, "flows", "apply", str(flows), "--workspace", str(ws.id))
    assert refused.returncode == 1
    assert await versions(engine) == {**first, "Abandoned cart": 2}


CART_FILE = """\
name: Cart reminder
trigger: {type: event, metric: Started Checkout}
entry: wait
steps:
  - {id: wait, type: delay, duration: {amount: 3, unit: days}, next: mail}
  - {id: mail, type: send, channel: email, template: cart}
"""


async def test_apply_moves_running_journeys_like_the_api(
    engine, workspaces, database_url, temporal_env, settings, tmp_path
):
    """`waymark flows apply` tells running journeys of a new version (through TEMPORAL_ADDRESS),
    as publishing through the API does: here the step a customer waits in is deleted, so the
    journey leaves at once, counted as removed."""
    import asyncio
    import uuid

    from sqlalchemy import select

    from models.journeys import Journey
    from tests.flows.test_journey import customer, shop, until
    from worker import build_worker
    from workflows.journey import JourneyWorkflow, StartJourneyInput

    ws, _ = await shop(engine, workspaces)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "cart.yaml").write_text(CART_FILE)
    env = {"TEMPORAL_ADDRESS": settings.temporal_address}

    def run(*args: str) -> subprocess.CompletedProcess:
        return waymark(database_url, *args, "--workspace", str(ws.id), env=env)

    first = await asyncio.to_thread(run, "flows", "apply", str(flows))
    assert first.returncode == 0, first.stdout + first.stderr
    async with engine.connect() as conn:
        flow_id = (await conn.execute(text("SELECT id FROM flows"))).scalar_one()
    pid = await customer(engine, ws)
    client = temporal_env.client
    journey_id = uuid.uuid4()
    async with build_worker(client, settings, engine):
        handle = await client.start_workflow(
            JourneyWorkflow.run,
            StartJourneyInput(workspace_id=ws.id, flow_id=flow_id, version=1, profile_id=pid,
                              journey_id=journey_id),
            id=f"journey-{flow_id}-{journey_id}",
            task_queue=settings.task_queue,
        )  # fmt: skip

        async def waiting() -> bool:
            return (await handle.query(JourneyWorkflow.get_state)).current_step == "wait"

        await until(waiting)
        # The delay is gone in the new file: the flow starts with the email.
        (flows / "cart.yaml").write_text(
            CART_FILE.replace("entry: wait", "entry: mail").replace(
                "  - {id: wait, type: delay, duration: {amount: 3, unit: days}, next: mail}\n", ""
            )
        )
        applied = await asyncio.to_thread(run, "flows", "apply", str(flows))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "(version 2)  1 running journeys moved to it" in applied.stdout
        result = await asyncio.wait_for(handle.result(), timeout=30)
    assert (result.status, result.reason) == ("removed", "step_removed")
    async with engine.connect() as conn:
        row = (await conn.execute(select(Journey).where(Journey.id == journey_id))).one()
    assert (row.status, row.end_reason) == ("removed", "step_removed")

    # Without Temporal the versions are still applied; the output says journeys were not told.
    (flows / "cart.yaml").write_text(CART_FILE)
    offline = await asyncio.to_thread(
        waymark, database_url, "flows", "apply", str(flows), "--workspace", str(ws.id),
        env={"TEMPORAL_ADDRESS": ""},
    )  # fmt: skip
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "(version 3)" in offline.stdout
    assert "running journeys not told of the new versions" in offline.stdout
