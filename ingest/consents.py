"""Consent changes, set-based: the current state per (profile, channel) and the full history.

Every writer (REST API, tracking, CSV import, SMS keywords, unsubscribe links, bounces) goes
through `apply_consents`, so history is never skipped. A change to the state a profile already
has records nothing; the last change for a (profile, channel) in one call wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from models import Channel, ConsentSource, ConsentState
from models.base import utcnow


@dataclass(frozen=True)
class ConsentUpdate:
    profile_id: uuid.UUID
    channel: Channel
    state: ConsentState
    source: ConsentSource
    occurred_at: datetime | None = None


_APPLY = text(
    """
    WITH input AS (
        SELECT DISTINCT ON (x.profile_id, x.channel)
               x.profile_id, x.channel, x.state, x.source, x.occurred_at
        FROM unnest(CAST(:profile_ids AS uuid[]), CAST(:channels AS text[]),
                    CAST(:states AS text[]), CAST(:sources AS text[]),
                    CAST(:times AS timestamptz[]))
             WITH ORDINALITY AS x(profile_id, channel, state, source, occurred_at, n)
        JOIN profiles p ON p.id = x.profile_id AND p.workspace_id = :ws
        ORDER BY x.profile_id, x.channel, x.n DESC
    ), changed AS (
        INSERT INTO consents AS c (profile_id, channel, workspace_id, state, source, updated_at)
        SELECT profile_id, channel, :ws, state, source, occurred_at FROM input
        ON CONFLICT (profile_id, channel) DO UPDATE
            SET state = EXCLUDED.state, source = EXCLUDED.source, updated_at = EXCLUDED.updated_at
            WHERE c.state IS DISTINCT FROM EXCLUDED.state
        RETURNING profile_id, channel, state, source, updated_at
    )
    INSERT INTO consent_changes (workspace_id, profile_id, channel, state, source, occurred_at)
    SELECT :ws, profile_id, channel, state, source, updated_at FROM changed
    """
)


async def apply_consents(
    session: AsyncSession, workspace_id: uuid.UUID, updates: Sequence[ConsentUpdate]
) -> int:
    """Apply consent updates in one statement; returns how many changed a state."""
    if not updates:
        return 0
    now = utcnow()
    result = await session.execute(
        _APPLY,
        {
            "ws": workspace_id,
            "profile_ids": [u.profile_id for u in updates],
            "channels": [Channel(u.channel).value for u in updates],
            "states": [ConsentState(u.state).value for u in updates],
            "sources": [ConsentSource(u.source).value for u in updates],
            "times": [u.occurred_at or now for u in updates],
        },
    )
    return result.rowcount
