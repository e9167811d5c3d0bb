"""Storing events: deduplicated by message id, and handed to the outbox in the same statement.

`store_events` writes any number of events in one SQL statement: rows whose (workspace,
message_id) already exists are dropped (a replay changes nothing), and every row that is stored
gets an outbox row, so the router sees each new event exactly once it is committed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
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


_STORE = text(
    """
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:profile_ids AS uuid[]), CAST(:metrics AS text[]), CAST(:message_ids AS text[]),
            CAST(:times AS timestamptz[]), CAST(:values AS numeric[]), CAST(:currencies AS text[]),
            CAST(:properties AS jsonb[]), CAST(:contexts AS jsonb[])
        ) AS x(profile_id, metric, message_id, occurred_at, value, currency, properties, context)
    ), stored AS (
        INSERT INTO events (workspace_id, profile_id, metric, message_id, occurred_at, value,
                            currency, properties, context)
        SELECT :ws, profile_id, metric, message_id, occurred_at, value, currency, properties,
               context
        FROM input
        ON CONFLICT (workspace_id, message_id) DO NOTHING
        RETURNING id, metric
    ), outboxed AS (
        INSERT INTO event_outbox (event_id, workspace_id) SELECT id, :ws FROM stored
    ), new_metrics AS (
        INSERT INTO metrics (workspace_id, name)
        SELECT DISTINCT :ws, metric FROM stored
        ON CONFLICT DO NOTHING
    )
    SELECT id FROM stored
    """
)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


async def store_events(
    session: AsyncSession, workspace_id: uuid.UUID, events: Sequence[NewEvent]
) -> list[int]:
    """Store new events (duplicates by message id are dropped); returns the stored ids."""
    if not events:
        return []
    result = await session.execute(
        _STORE,
        {
            "ws": workspace_id,
            "profile_ids": [e.profile_id for e in events],
            "metrics": [e.metric for e in events],
            "message_ids": [e.message_id for e in events],
            "times": [e.occurred_at for e in events],
            "values": [e.value for e in events],
            "currencies": [e.currency for e in events],
            "properties": [_json(e.properties) for e in events],
            "contexts": [_json(e.context) for e in events],
        },
    )
    return list(result.scalars())
