"""Test data for conditions: a `reference.World` written to PostgreSQL in a few set-based
statements (one per table), in a fresh workspace."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import session_scope
from ingest.events import NewEvent, store_events
from segments.reference import World

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PROFILE_COLUMNS = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "timezone",
    "locale",
    "country",
    "city",
    "latitude",
    "longitude",
)


def _rows(sql: str, rows: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    return text(sql), {"rows": json.dumps(rows, default=str)}


async def insert_world(
    engine: AsyncEngine, world: World, *, workspace_id: uuid.UUID | None = None
) -> uuid.UUID:
    """Write `world` into a new workspace (or `workspace_id`); returns the workspace id."""
    ws = workspace_id or uuid.uuid4()
    lists = {list_id for list_id, _ in world.list_members} | getattr(world, "lists", set())
    segments = {sid for sid, _ in world.segment_members} | getattr(world, "segments", set())
    async with session_scope(engine) as s:
        if workspace_id is None:
            await s.execute(
                text(
                    "INSERT INTO workspaces (id, name, public_key, timezone, settings) "
                    "VALUES (:id, 'Segments test', :key, :tz, '{}')"
                ),
                {"id": ws, "key": f"pk_{secrets.token_hex(12)}", "tz": world.workspace_timezone},
            )
        profiles = [
            {
                "id": str(pid),
                **{c: p.get(c) for c in PROFILE_COLUMNS},
                "properties": p.get("properties", {}),
                "created_at": p.get("created_at", NOW),
            }
            for pid, p in world.profiles.items()
        ]
        cols = ", ".join(PROFILE_COLUMNS)
        typed = ", ".join(
            f"{c} {'float8' if c in ('latitude', 'longitude') else 'text'}" for c in PROFILE_COLUMNS
        )
        await s.execute(
            *_rows(
                "INSERT INTO profiles (id, workspace_id, "
                f"{cols}, properties, created_at, updated_at) "
                f"SELECT id, '{ws}', {cols}, properties, created_at, created_at "
                f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(id uuid, {typed}, "
                "properties jsonb, created_at timestamptz)",
                profiles,
            )
        )
        if lists:
            await s.execute(
                text(
                    "INSERT INTO lists (id, workspace_id, name) "
                    "SELECT id, :ws, 'list ' || id FROM unnest(CAST(:ids AS uuid[])) AS id "
                    "ON CONFLICT DO NOTHING"
                ),
                {"ws": ws, "ids": list(lists)},
            )
        if segments:
            await s.execute(
                text(
                    "INSERT INTO segments (id, workspace_id, name, definition) "
                    "SELECT id, :ws, 'segment ' || id, '{\"all\": []}' "
                    "FROM unnest(CAST(:ids AS uuid[])) AS id ON CONFLICT DO NOTHING"
                ),
                {"ws": ws, "ids": list(segments)},
            )
        if world.list_members:
            await s.execute(
                *_rows(
                    f"INSERT INTO list_members (list_id, profile_id, workspace_id, source) "
                    f"SELECT l, p, '{ws}', 'test' FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                    "AS x(l uuid, p uuid)",
                    [{"l": str(lid), "p": str(pid)} for lid, pid in world.list_members],
                )
            )
        if world.segment_members:
            await s.execute(
                *_rows(
                    f"INSERT INTO segment_members (segment_id, profile_id, workspace_id) "
                    f"SELECT sg, p, '{ws}' FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                    "AS x(sg uuid, p uuid)",
                    [{"sg": str(sid), "p": str(pid)} for sid, pid in world.segment_members],
                )
            )
        if world.consents:
            await s.execute(
                *_rows(
                    f"INSERT INTO consents (profile_id, channel, workspace_id, state, source) "
                    f"SELECT p, c, '{ws}', st, 'api' FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                    "AS x(p uuid, c text, st text)",
                    [{"p": str(p), "c": c, "st": st} for (p, c), st in world.consents.items()],
                )
            )
        if world.consent_changes:
            await s.execute(
                *_rows(
                    "INSERT INTO consent_changes (workspace_id, profile_id, channel, state, "
                    f"source, occurred_at) SELECT '{ws}', p, c, st, 'api', at "
                    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                    "AS x(p uuid, c text, st text, at timestamptz)",
                    [
                        {"p": str(p), "c": c, "st": st, "at": at.isoformat()}
                        for p, c, st, at in world.consent_changes
                    ],
                )
            )
        if world.suppressions:
            await s.execute(
                *_rows(
                    f"INSERT INTO suppressions (workspace_id, channel, address, reason) "
                    f"SELECT '{ws}', c, a, 'bounce' FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                    "AS x(c text, a text)",
                    [{"c": c, "a": a} for c, a in world.suppressions],
                )
            )
        await store_events(
            s,
            ws,
            [
                NewEvent(
                    profile_id=e["profile_id"],
                    metric=e["metric"],
                    message_id=f"m-{i}",
                    occurred_at=e["occurred_at"],
                    properties=e.get("properties", {}),
                    value=None if e.get("value") is None else Decimal(str(e["value"])),
                )
                for i, e in enumerate(world.events)
            ],
        )
    return ws


def event(profile_id: uuid.UUID, metric: str, at: datetime, value=None, **properties):
    return {
        "profile_id": profile_id,
        "metric": metric,
        "occurred_at": at,
        "value": None if value is None else Decimal(str(value)),
        "properties": properties,
    }
