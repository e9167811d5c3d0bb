"""Consent changes, set-based: the current state per (profile, channel) and the full history.

Every writer (REST API, tracking, CSV import, SMS keywords, unsubscribe links, bounces) goes
through `apply_consents` (or, for rows already in the database, a statement made by
`consent_statement`), so history is never skipped. A change to the state a profile already
has records nothing; the last change for a (profile, channel) in one call wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.profiles import profiles_changed
from models import Channel, ConsentSource, ConsentState
from models.base import utcnow


@dataclass(frozen=True)
class ConsentUpdate:
    profile_id: uuid.UUID
    channel: Channel
    state: ConsentState
    source: ConsentSource
    occurred_at: datetime | None = None


# The one definition of how consent updates apply. `{changes}` is a query of the updates, with
# columns (profile_id, channel, state, source, occurred_at, n): a larger `n` is a later change.
_APPLY_BODY = """
    WITH input AS (
        SELECT DISTINCT ON (x.profile_id, x.channel)
               x.profile_id, x.channel, x.state, x.source, x.occurred_at
        FROM ({changes}) AS x(profile_id, channel, state, source, occurred_at, n)
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


@cache
def consent_statement(changes: str) -> TextClause:
    """The consent statement over `changes`: a SELECT of (profile_id, channel, state, source,
    occurred_at, n) rows, e.g. from a staging table. Binds `:ws` plus the query's own
    parameters; its rowcount is how many changes took effect."""
    return text(_APPLY_BODY.format(changes=changes))


_FROM_ARRAYS = consent_statement(
    """
    SELECT * FROM unnest(CAST(:profile_ids AS uuid[]), CAST(:channels AS text[]),
                         CAST(:states AS text[]), CAST(:sources AS text[]),
                         CAST(:times AS timestamptz[])) WITH ORDINALITY
    """
)


async def apply_consents(
    session: AsyncSession, workspace_id: uuid.UUID, updates: Sequence[ConsentUpdate]
) -> int:
    """Apply consent updates in one statement; returns how many changed a state."""
    if not updates:
        return 0
    now = utcnow()
    changed = await apply_consent_statement(
        session,
        _FROM_ARRAYS,
        workspace_id,
        {
            "profile_ids": [u.profile_id for u in updates],
            "channels": [Channel(u.channel).value for u in updates],
            "states": [ConsentState(u.state).value for u in updates],
            "sources": [ConsentSource(u.source).value for u in updates],
            "times": [u.occurred_at or now for u in updates],
        },
    )
    if changed:
        profiles = list(dict.fromkeys(u.profile_id for u in updates))
        await profiles_changed(session, workspace_id, profiles, changed={"consents"})
    return changed


async def apply_consent_statement(
    session: AsyncSession, statement: TextClause, workspace_id: uuid.UUID, params: dict[str, Any]
) -> int:
    """Run a statement from `consent_statement`; returns how many changed a state."""
    result = await session.execute(statement, {**params, "ws": workspace_id})
    return result.rowcount
