"""The ledger rows of keys seen for the first time, written once in their decided state.

The send path reads the rows of a batch's keys (`find_many`); a key without a row gets it only
when its fate is decided (`insert_decided`): `sending` with the content handed to the provider
(the claim), `skipped`, held (`queued` with `hold_until`) or `failed` — one INSERT per batch
with `ON CONFLICT DO NOTHING` on the unique key, each row but a claim with its history entry
(a claim's is the row's `sending_at`, see `channels.ledger`). A new message
thus costs one INSERT and one UPDATE (its outcome, `channels.ledger.mark_outcomes`), instead of
an INSERT (`queued`) and two UPDATEs. Only rows the statement wrote may be handed to a
provider: a key another attempt wrote meanwhile is not written again (nor sent).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from channels.ledger import _FIND, Outgoing, _dumps, outgoing_row
from ingest.events import live_profile
from models import Channel, MessageStatus
from models.messages import SourceType


async def find_many(
    session: AsyncSession, workspace_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, Any]:
    """The rows that exist for these keys, by key (the columns the send path reads)."""
    if not keys:
        return {}
    rows = await session.execute(_FIND, {"ws": workspace_id, "keys": json.dumps(list(keys))})
    return {row.idempotency_key: row for row in rows}


@dataclass(frozen=True)
class Source:
    """What every message of one send shares (the ledger columns besides key and profile)."""

    channel: Channel
    source_type: SourceType
    transactional: bool = False
    template_id: uuid.UUID | None = None
    flow_id: str | None = None
    flow_version: int | None = None
    step_id: str | None = None
    journey_id: str | None = None
    campaign_id: uuid.UUID | None = None
    campaign_message_id: uuid.UUID | None = None


@dataclass(slots=True)
class Decided:
    """A message whose key has no row yet, with its state decided: `sending` (with what is
    handed to the provider), `skipped` (reason), `queued` with `hold_until` (held) or `failed`
    (error)."""

    message_id: uuid.UUID
    idempotency_key: str
    profile_id: uuid.UUID
    status: MessageStatus
    skip_reason: str | None = None
    hold_until: datetime | None = None
    error: str | None = None
    outgoing: Outgoing | None = None
    ref: str = ""  # the message id as text, when the caller has it (else made here)
    profile_ref: str = ""  # the profile id as text, likewise


_DECIDED = text(
    f"""
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
             AS x(id uuid, key text, profile_id uuid, status text, skip_reason text,
                  hold_until timestamptz, error text, to_address text, subject text,
                  content text, content_sha256 text, content_id uuid, provider text)
    ), created AS (
        INSERT INTO messages (id, workspace_id, profile_id, channel, source_type,
                              idempotency_key, transactional, template_id, flow_id,
                              flow_version, step_id, journey_id, campaign_id,
                              campaign_message_id, status, skip_reason, hold_until, error,
                              to_address, subject, content, content_sha256, content_id,
                              provider, created_at, sending_at, failed_at)
        SELECT x.id, :ws, x.profile_id, :channel, :source_type, x.key,
               CAST(:transactional AS boolean), CAST(:template_id AS uuid),
               CAST(:flow_id AS text), CAST(:flow_version AS int), CAST(:step_id AS text),
               CAST(:journey_id AS text), CAST(:campaign_id AS uuid),
               CAST(:campaign_message_id AS uuid), x.status, x.skip_reason, x.hold_until,
               x.error, x.to_address, COALESCE(x.subject, :subject),
               decode(x.content, 'base64'), COALESCE(x.content_sha256, :content_sha256),
               COALESCE(x.content_id, CAST(:content_id AS uuid)),
               COALESCE(x.provider, :provider), :now,
               CASE WHEN x.status = 'sending' THEN CAST(:now AS timestamptz) END,
               CASE WHEN x.status = 'failed' THEN CAST(:now AS timestamptz) END
        FROM input x
        -- The profile, locked: none is written for a profile that is gone (erased meanwhile).
        WHERE {live_profile("x.profile_id")}
        ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
        RETURNING id, status, skip_reason, hold_until, error
    ), history AS (
        INSERT INTO message_events (message_id, workspace_id, status, occurred_at, detail)
        SELECT id, :ws, CASE WHEN status = 'queued' THEN 'held' ELSE status END, :now,
               CASE status
                   WHEN 'skipped' THEN jsonb_build_object('reason', skip_reason)
                   WHEN 'queued' THEN jsonb_build_object('reason', 'quiet_hours',
                                                         'hold_until', hold_until)
                   WHEN 'failed' THEN jsonb_build_object('error', error)
                   ELSE '{{}}'::jsonb
               END
        FROM created WHERE status <> 'sending'  -- a claim: `sending_at` keeps it
    )
    -- Every row written (the usual case): NULL, and no id to send back.
    SELECT CASE WHEN count(*) < :count
                THEN COALESCE(array_agg(id), CAST('{{}}' AS uuid[])) END
    FROM created
    """
)


# Claim columns often the same on every row (a send of one copy): sent once, as parameters.
_SHARED = ("subject", "content_sha256", "content_id", "provider")


def _shared_values(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each of `_SHARED` as a parameter: the value every row has (then taken out of the rows),
    else None (each row its own)."""
    shared = {}
    for name in _SHARED:
        value = rows[0].get(name)
        if value is not None and all(row.get(name) == value for row in rows):
            for row in rows:
                del row[name]
            shared[name] = value
        else:
            shared[name] = None
    return shared


async def insert_decided(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    source: Source,
    decided: Sequence[Decided],
    now: datetime,
) -> set[uuid.UUID]:
    """Write the rows of keys seen for the first time, each in its decided state, with its
    history entry (a claim: none); one statement. Returns the ids written: a key another
    attempt wrote meanwhile (or of a profile erased meanwhile) is not written — and a
    `sending` row not written must not be sent."""
    if not decided:
        return set()
    rows = []
    for d in decided:
        row: dict[str, Any] = {
            "id": d.ref or str(d.message_id),
            "key": d.idempotency_key,
            "profile_id": d.profile_ref or str(d.profile_id),
            "status": d.status.value,
        }
        if d.skip_reason is not None:
            row["skip_reason"] = str(d.skip_reason)
        if d.hold_until is not None:
            row["hold_until"] = d.hold_until.isoformat()
        if d.error is not None:
            row["error"] = d.error
        if d.outgoing is not None:
            row |= outgoing_row(d.outgoing)
        rows.append(row)
    params = {
        "ws": workspace_id,
        "now": now,
        **_shared_values(rows),
        "rows": _dumps(rows),
        "channel": Channel(source.channel).value,
        "source_type": SourceType(source.source_type).value,
        "transactional": source.transactional,
        "template_id": source.template_id,
        "flow_id": source.flow_id,
        "flow_version": source.flow_version,
        "step_id": source.step_id,
        "journey_id": source.journey_id,
        "campaign_id": source.campaign_id,
        "campaign_message_id": source.campaign_message_id,
    }
    written = (await session.execute(_DECIDED, params | {"count": len(rows)})).scalar()
    return {d.message_id for d in decided} if written is None else set(written)
