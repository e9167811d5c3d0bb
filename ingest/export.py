"""Export (GDPR access / portability): everything stored about one profile as one JSON document.

One query per table, all in one REPEATABLE READ snapshot, and events streamed from a
server-side cursor, so a profile with a million events costs constant memory.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.base import utcnow

_EVENT_BATCH = 1000

_PROFILE = "SELECT * FROM profiles WHERE id = :id AND workspace_id = :ws"

# Section name → query; each returns the rows of one table about the profile.
_SECTIONS = {
    "aliases": "SELECT anonymous_id FROM profile_aliases "
    "WHERE profile_id = :id AND workspace_id = :ws ORDER BY anonymous_id",
    "consents": "SELECT channel, state, source, updated_at FROM consents "
    "WHERE profile_id = :id AND workspace_id = :ws ORDER BY channel",
    "consent_history": "SELECT channel, state, source, occurred_at, detail FROM consent_changes "
    "WHERE profile_id = :id AND workspace_id = :ws ORDER BY occurred_at DESC, id DESC",
    "suppressions": "SELECT s.channel, s.address, s.reason, s.created_at "
    "FROM suppressions s JOIN profiles p ON p.id = :id AND p.workspace_id = s.workspace_id "
    "WHERE s.workspace_id = :ws AND ((s.channel = 'email' AND s.address = lower(p.email)) "
    "OR (s.channel IN ('sms', 'whatsapp') AND s.address = p.phone)) ORDER BY s.channel",
    "lists": "SELECT m.list_id, l.name, m.source, m.joined_at "
    "FROM list_members m JOIN lists l ON l.id = m.list_id "
    "WHERE m.profile_id = :id AND m.workspace_id = :ws ORDER BY m.joined_at",
    "list_changes": "SELECT c.list_id, l.name, c.action, c.source, c.occurred_at "
    "FROM list_membership_changes c JOIN lists l ON l.id = c.list_id "
    "WHERE c.profile_id = :id AND c.workspace_id = :ws ORDER BY c.occurred_at, c.id",
    "push_subscriptions": "SELECT id, endpoint, p256dh, auth, user_agent, created_at "
    "FROM push_subscriptions WHERE profile_id = :id AND workspace_id = :ws ORDER BY created_at",
}
_EVENTS = (
    "SELECT id, metric, message_id, occurred_at, received_at, value, currency, properties, "
    "context FROM events WHERE profile_id = :id AND workspace_id = :ws ORDER BY occurred_at, id"
)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False)


async def _rows(conn: AsyncConnection, query: str, params: dict) -> list[dict]:
    return [dict(row) for row in (await conn.execute(text(query), params)).mappings()]


async def export_profile(
    engine: AsyncEngine, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> AsyncIterator[str]:
    """The export document in chunks: `{"profile": ..., <sections>..., "events": [...]}`.

    Opens its own connection (a streamed response outlives the request's session). A profile
    that does not exist (or was erased meanwhile) exports as `{"profile": null}`.
    """
    params = {"id": profile_id, "ws": workspace_id}
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            profile = (await conn.execute(text(_PROFILE), params)).mappings().one_or_none()
            if profile is None:
                yield '{"profile": null}'
                return
            head = {"exported_at": utcnow(), "profile": dict(profile)}
            for name, query in _SECTIONS.items():
                head[name] = await _rows(conn, query, params)
            yield _dumps(head)[:-1] + ', "events": ['
            result = await conn.stream(
                text(_EVENTS).execution_options(yield_per=_EVENT_BATCH), params
            )
            first = True
            async for batch in result.mappings().partitions():
                chunk = ", ".join(_dumps(dict(row)) for row in batch)
                yield chunk if first else ", " + chunk
                first = False
            yield "]}"
