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


def waymark(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"}
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
