"""The send path's batch statements find their rows by primary key, whatever the statistics say.

A workspace that grew since the last ANALYZE (a new shop's first campaign) is estimated at a
handful of rows. Offered an index on `workspace_id`, the planner then scanned all of the
workspace's messages as the outer side of a nested loop and re-read the batch's input for each:
4 s per 1,000 messages at 20,000 rows, longer with every batch. These tests make the statistics
that stale (ANALYZE while the workspace is empty, then thousands of rows) and read the plans.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text

from channels import gate, ledger, ledger_new
from channels.ledger import Outcome, Outgoing
from core.db import session_scope
from models import Channel, MessageStatus
from models.messages import SourceType

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
ROWS = 5000


@pytest.fixture
async def stale(engine, workspaces):
    """A workspace with ROWS profiles, consents and queued messages that ANALYZE never saw."""
    ws = (await workspaces.create()).id
    async with engine.begin() as conn:
        for table in ("profiles", "consents", "messages"):
            await conn.execute(text(f"ANALYZE {table}"))
        await conn.execute(
            text(
                "INSERT INTO profiles (id, workspace_id, email, properties, created_at, "
                "updated_at) SELECT gen_random_uuid(), :ws, 'p' || i || '@example.com', '{}', "
                "now(), now() FROM generate_series(1, :n) AS i"
            ),
            {"ws": ws, "n": ROWS},
        )
        await conn.execute(
            text(
                "INSERT INTO consents (profile_id, channel, workspace_id, state, source, "
                "updated_at) SELECT id, 'email', :ws, 'subscribed', 'api', now() "
                "FROM profiles WHERE workspace_id = :ws"
            ),
            {"ws": ws},
        )
        await conn.execute(
            text(
                "INSERT INTO messages (id, workspace_id, profile_id, channel, source_type, "
                "idempotency_key, transactional, status, created_at) "
                "SELECT gen_random_uuid(), :ws, id, 'email', 'campaign', 'k:' || id, false, "
                "'queued', now() FROM profiles WHERE workspace_id = :ws"
            ),
            {"ws": ws},
        )
        rows = (
            await conn.execute(
                text("SELECT id, profile_id FROM messages WHERE workspace_id = :ws LIMIT 500"),
                {"ws": ws},
            )
        ).all()
    return ws, [r.id for r in rows], [r.profile_id for r in rows]


class Plans:
    """EXPLAIN instead of running: every statement the engine sends meanwhile is explained
    (not executed), and its plan kept."""

    def __init__(self, engine) -> None:
        self.engine = engine.sync_engine
        self.plans: list[str] = []

    def _explain(self, conn, cursor, statement, parameters, context, executemany):
        return "EXPLAIN " + statement, parameters

    def _keep(self, conn, cursor, statement, parameters, context, executemany):
        self.plans.append("\n".join(row[0] for row in cursor.fetchall()))

    def __enter__(self) -> Plans:
        event.listen(self.engine, "before_cursor_execute", self._explain, retval=True)
        event.listen(self.engine, "after_cursor_execute", self._keep)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._explain)
        event.remove(self.engine, "after_cursor_execute", self._keep)


def _by_primary_key(plan: str, table: str) -> None:
    """Every scan of `table` in `plan` goes through its primary key (an index scan, or a bitmap
    scan of that index): none reads the table, or another of its indexes, wholesale."""
    scans = [
        line.strip().removeprefix("->  ")
        for line in plan.splitlines()
        if "Scan" in line and (f" on {table} " in line or f" on {table}_" in line)
    ]
    assert scans, plan
    for scan in scans:
        assert scan.startswith(
            (
                f"Index Scan using {table}_pkey on {table} ",
                f"Bitmap Heap Scan on {table} ",
                f"Bitmap Index Scan on {table}_pkey ",
            )
        ), plan


async def _gate_plan(engine, ws, rows: list, *, smart: bool = False) -> str:
    """The gate's plan for a batch of [profile id, address] rows."""
    params = {"ws": ws, "channel": "email", "since": NOW, "smart": smart}
    async with session_scope(engine) as session:
        plan = await session.execute(
            text("EXPLAIN " + gate._FACTS.text), params | {"rows": json.dumps(rows)}
        )
        return "\n".join(row[0] for row in plan)


async def test_message_transitions_probe_the_primary_key(engine, stale):
    ws, ids, _ = stale
    with Plans(engine) as explained:
        async with session_scope(engine) as session:
            await ledger.mark_outcomes(
                session, ws, [Outcome(i, MessageStatus.sent, "sg-1") for i in ids], NOW
            )
            claims = [Outgoing(i, "p@example.com", "Hi", b"x", "0" * 64, "local") for i in ids]
            await ledger.mark_sending(session, ws, claims, NOW)
            await ledger.mark_skipped(session, ws, [(i, "no_consent") for i in ids], NOW)
            await ledger.mark_held(session, ws, [(i, NOW) for i in ids], NOW)
    assert len(explained.plans) == 4
    for plan in explained.plans:
        _by_primary_key(plan, "messages")


async def test_new_rows_and_the_gate_probe_profiles_and_consents_by_key(engine, stale):
    ws, _, profile_ids = stale
    source = ledger_new.Source(channel=Channel.email, source_type=SourceType.campaign)
    decided = [
        ledger_new.Decided(uuid.uuid4(), f"new:{p}", p, MessageStatus.skipped, skip_reason="x")
        for p in profile_ids
    ]
    with Plans(engine) as explained:
        async with session_scope(engine) as session:
            await ledger_new.insert_decided(session, ws, source, decided, NOW)
    _by_primary_key(explained.plans[0], "profiles")
    _by_primary_key(await _gate_plan(engine, ws, [[str(p), None] for p in profile_ids]), "consents")


async def test_a_batch_s_ledger_keys_are_probed_one_by_one(engine, stale):
    """`find_many` looks each key up in the unique index (workspace, key): with stale
    statistics, `idempotency_key = ANY(keys)` was a filter over every message of the workspace
    (1,000 keys compared with each: 2.4 s per batch at 40,000 messages, growing each batch)."""
    ws, ids, profile_ids = stale
    keys = [f"k:{p}" for p in profile_ids]
    with Plans(engine) as explained:
        async with session_scope(engine) as session:
            await ledger_new.find_many(session, ws, keys)
    [plan] = explained.plans
    scans = [line for line in plan.splitlines() if " on messages" in line]
    assert scans and all("Index Scan using uq_messages_idempotency_key" in s for s in scans)
    conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert "Filter" not in plan and all("idempotency_key)::text = k.key" in c for c in conditions)


async def test_the_gate_probes_suppressions_and_smart_sending_per_recipient(engine, stale):
    """Suppressions and Smart Sending's "sent within the window" are looked up per recipient in
    their index: as hashed subplans, they read every suppression and every message the
    workspace sent within the window (a campaign's own sends) once per batch."""
    ws, _, profile_ids = stale
    rows = [[str(p), f"{p}@example.com"] for p in profile_ids]
    plan = await _gate_plan(engine, ws, rows, smart=True)
    assert "hashed" not in plan.lower(), plan
    lines = plan.splitlines()
    for index, probe in (
        ("ix_messages_smart_sending", "profile_id = "),
        ("suppressions_pkey", "address = "),
    ):
        [at] = [n for n, line in enumerate(lines) if f"using {index} on" in line]
        assert probe in lines[at + 1], plan
