"""Storing events: deduplicated by message id, and handed to the outbox in the same statement.

`store_events` writes any number of events in one SQL statement (the rows travel as one JSON
array): rows whose (workspace, message_id) already exists are dropped (a replay changes nothing),
and every row that is stored gets an outbox row, so the router sees each new event exactly once
it is committed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class NewEvent:
    profile_id: uuid.UUID
    metric: str
    message_id: str
    occurred_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    value: Decimal | None = None
    currency: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


def live_profile(column: str) -> str:
    """SQL: the row's profile (`column`) exists in workspace `:ws`, locked as a foreign key's
    check locks it (`FOR KEY SHARE`, until the transaction ends: erasure and merge, which delete
    the profile, wait for it); false once it is gone. A correlated probe of the primary key per
    row (OFFSET 0: not turned into a join). See `models.profile.profile_of_row`."""
    return (
        f"EXISTS (SELECT FROM profiles p WHERE p.id = {column}"
        " AND CAST(p.workspace_id AS text) = CAST(:ws AS text) OFFSET 0 FOR KEY SHARE)"
    )


# Stores the rows of a CTE named `input` (profile_id, metric, message_id, occurred_at, value,
# currency, properties, context) as events of workspace `:ws`: a replayed message id is dropped,
# and so is an event of a profile that is gone (erased or merged meanwhile); every stored event
# gets its outbox row and its metric a row in `metrics`. Statements that derive events from
# other rows (the send path's "Received" events) end with it too.
STORE_INPUT = f"""
    stored AS (
        INSERT INTO events (workspace_id, profile_id, metric, message_id, occurred_at, value,
                            currency, properties, context)
        SELECT :ws, profile_id, metric, message_id, occurred_at, value, currency, properties,
               context
        FROM input
        WHERE {live_profile("input.profile_id")}
        ON CONFLICT (workspace_id, message_id) DO NOTHING
        RETURNING id, metric
    ), outboxed AS (
        INSERT INTO event_outbox (event_id, workspace_id) SELECT id, :ws FROM stored
    ), new_metrics AS (
        INSERT INTO metrics (workspace_id, name)
        SELECT DISTINCT :ws, metric FROM stored ORDER BY metric
        ON CONFLICT DO NOTHING
    )
"""

_STORE = text(
    f"""
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(
            profile_id uuid, metric text, message_id text, occurred_at timestamptz, value numeric,
            currency text, properties jsonb, context jsonb
        )
    ), {STORE_INPUT}
    SELECT id FROM stored
    """
)


def _row(event: NewEvent) -> dict[str, Any]:
    return {
        "profile_id": str(event.profile_id),
        "metric": event.metric,
        "message_id": event.message_id,
        # UTC: PostgreSQL refuses offsets beyond ±15:59, which Python allows.
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
        "value": None if event.value is None else str(event.value),
        "currency": event.currency,
        "properties": event.properties,
        "context": event.context,
    }


async def store_events(
    session: AsyncSession, workspace_id: uuid.UUID, events: Sequence[NewEvent]
) -> list[int]:
    """Store new events (duplicates by message id are dropped); returns the stored ids."""
    if not events:
        return []
    # One JSON document rather than eight arrays: json.dumps is C, while psycopg quotes every
    # element of a text array in Python (the JSON strings most of all).
    rows = json.dumps([_row(e) for e in events], separators=(",", ":"), default=str)
    result = await session.execute(_STORE, {"ws": workspace_id, "rows": rows})
    return list(result.scalars())
