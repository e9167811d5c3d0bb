"""The example segments (examples/segments) applied with the CLI's `apply` on seeded data hold
exactly the profiles that a hand-written SQL query of the same meaning returns."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import UTC, datetime

import pytest
import yaml
from sqlalchemy import text
from typer.testing import CliRunner

from bench.segments import EXAMPLES, examples, generate, hand_query
from cli.main import app
from cli.segments import SegmentFileError, apply_segments
from core.db import session_scope


async def _seed(engine, database_url, ws):
    now = datetime.now(UTC)
    ids = generate(database_url, ws.id, 3_000, 60_000, now, seed=3)
    async with session_scope(engine) as session:  # a few suppressed SMS numbers
        await session.execute(
            text(
                "INSERT INTO suppressions (workspace_id, channel, address, reason) "
                "SELECT :ws, 'sms', phone, 'invalid' FROM profiles "
                "WHERE id = ANY(CAST(:p AS uuid[]))"
            ),
            {"ws": ws.id, "p": ids[:300:7]},
        )
    return now


async def test_examples_match_hand_written_sql(engine, workspaces, database_url):
    ws = await workspaces.create()
    await _seed(engine, database_url, ws)
    applied = await apply_segments(engine, ws.id, EXAMPLES)
    assert {a.action for a in applied} == {"created"}
    assert len(applied) == len(examples()) == 9

    async with engine.connect() as conn:
        total = (await conn.execute(text("SELECT count(*) FROM profiles"))).scalar_one()
        for example in examples():
            name = example["name"]
            stored = set(
                (
                    await conn.execute(
                        text(
                            "SELECT m.profile_id FROM segment_members m JOIN segments s "
                            "ON s.id = m.segment_id WHERE s.name = :n AND s.workspace_id = :ws"
                        ),
                        {"n": name, "ws": ws.id},
                    )
                ).scalars()
            )
            # The hand-written query runs at its own `now`: a few seconds later than the apply,
            # which no seeded time falls between (they are whole seconds in the past).
            hand = set(
                (
                    await conn.execute(
                        text(hand_query(name)), {"ws": ws.id, "now": datetime.now(UTC)}
                    )
                ).scalars()
            )
            assert stored == hand, name
            assert 0 < len(stored) < total, f"{name}: the seed must have members and non-members"


async def test_apply_is_idempotent_and_updates_by_name(engine, workspaces, tmp_path):
    ws = await workspaces.create()
    folder = tmp_path / "segments"
    shutil.copytree(EXAMPLES, folder)
    first = await apply_segments(engine, ws.id, folder)
    again = await apply_segments(engine, ws.id, folder)
    assert {a.action for a in first} == {"created"}
    assert {a.action for a in again} == {"unchanged"}

    path = folder / "04-sms-vip.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["definition"]["all"][1]["sum"]["value"] = 1000
    path.write_text(yaml.safe_dump(doc))
    third = {a.name: a.action for a in await apply_segments(engine, ws.id, folder)}
    assert third["SMS VIP"] == "updated"
    assert list(third.values()).count("unchanged") == 8

    # A bad file applies nothing and says which file and where.
    doc["definition"]["all"][1]["sum"]["op"] = "about"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SegmentFileError, match="04-sms-vip.yaml.*all\\[1\\].sum.op"):
        await apply_segments(engine, ws.id, folder)


async def test_cli_apply(engine, workspaces, database_url, monkeypatch):
    from core.settings import get_settings

    ws = await workspaces.create()
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        args = ["segments", "apply", str(EXAMPLES), "--workspace", str(ws.id)]
        result = await asyncio.to_thread(runner.invoke, app, args)
        assert result.exit_code == 0, result.output
        assert "created    All SMS subscribers" in result.output
        missing = ["segments", "apply", str(EXAMPLES), "--workspace", str(uuid.uuid4())]
        result = await asyncio.to_thread(runner.invoke, app, missing)
        assert result.exit_code == 1 and "no workspace" in result.output
    finally:
        get_settings.cache_clear()
