"""The message ledger: create-or-get by idempotency key, status transitions with history.

Two kinds of writes:

- The send path's own writes, set-based. A key seen for the first time is written once, with
  its decided state (`channels.ledger_new.insert_decided`: `sending` with its content — the
  claim —, `skipped`, held, or `failed`), `INSERT ... ON CONFLICT DO NOTHING` on the unique
  key: only rows this statement created may be handed to a provider. A key that has a row
  already moves by transitions (`mark_*`), each guarded by the status it expects:
  `queued → skipped | sending`, `sending → sent | failed | queued`. `mark_sending` is that
  claim: only rows it moved from `queued` may be handed to a provider. Either way two
  concurrent attempts at the same key never both send.
- The history (`message_events`) gets every change but the send path's two routine steps,
  which the row keeps itself: the claim (`sending_at`) and the provider's acceptance
  (`sent_at`, `provider_message_id`) — two of the six rows written per message sent, about
  15 % of the database's work in `bench.send`. Skips, holds, failures and hand-backs (with
  their reasons) are entries, as is everything afterwards.
- What happens afterwards (`record_provider_event` from webhooks, `record_engagement` from
  Waymark's own open pixel and click links): appended to the history and applied by rank
  (`models.messages.STATUS_RANK`), so events arriving late or out of order never move a message
  back; a provider event id is stored once, so webhook replays change nothing.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.events import STORE_INPUT
from models import Channel, Message, MessageStatus
from models.messages import STATUS_RANK


def _json(value: dict[str, Any] | None) -> str:
    return json.dumps(value or {}, separators=(",", ":"), default=str)


_COLUMNS = (
    "id, idempotency_key, profile_id, status, sending_at, sent_at, skip_reason, "
    "provider_message_id, error, flow_id, step_id, campaign_id, campaign_message_id, "
    "template_id, source_type"
)
# One probe of the unique index (workspace, key) per key, in a LATERAL subquery (OFFSET 0: not
# flattened); the keys as JSON text (json.dumps is C, psycopg quotes array elements in Python).
# As `idempotency_key = ANY(:keys)`, a workspace whose statistics are stale (its rows grew since
# the last ANALYZE: a campaign's own batches) was read whole through the index's first column,
# every row compared with every key: 2.4 s per 1,000 keys at 40,000 messages, growing with each
# batch (see "Batch statements and stale statistics", docs/ARCHITECTURE.md).
_FIND = text(
    f"""
    SELECT found.* FROM jsonb_array_elements_text(CAST(:keys AS jsonb)) AS k(key)
    CROSS JOIN LATERAL (
        SELECT {_COLUMNS} FROM messages
        WHERE workspace_id = :ws AND idempotency_key = k.key OFFSET 0
    ) AS found
    """
)


async def get_message(
    session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
) -> Message | None:
    return (
        await session.execute(
            select(Message)
            .where(Message.workspace_id == workspace_id, Message.id == message_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def find_by_provider_id(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    provider_message_id: str,
    to_address: str | None = None,
) -> Message | None:
    """The message the provider knows by that id; None when there is none or several. A
    SendGrid id is its request's, shared by every recipient of a batch: `to_address` (the
    event's recipient) tells them apart."""
    query = select(Message).where(
        Message.workspace_id == workspace_id,
        Message.provider_message_id == provider_message_id,
    )
    if to_address:
        query = query.where(func.lower(Message.to_address) == to_address.lower())
    found = (await session.execute(query.limit(2))).scalars().all()
    return found[0] if len(found) == 1 else None


# --- the send path's own transitions ------------------------------------------------------
#
# A batch statement takes its rows as one JSON object keyed by message id, finds the rows by
# primary key (`= ANY` of the object's keys) and has each row read its own values from the
# object: there is no join for the planner to order. Joined to the batch's rows instead, a
# workspace whose messages grew since the last ANALYZE (a new shop's first campaign) was
# estimated at a handful of rows, scanned as the outer side of a nested loop and the batch's
# input re-read for each: 4 s per 1,000 messages at 20,000 rows, growing with every batch
# (`bench.campaign` measured it). The workspace is checked on each row, compared as text so
# that it offers no index path either (its estimate is the stale one).
_BATCH = "batch AS MATERIALIZED (SELECT CAST(:rows AS jsonb) AS doc)"
_BY_ID = """m.id = ANY (ARRAY(SELECT CAST(jsonb_object_keys(doc) AS uuid) FROM batch))
          AND CAST(m.workspace_id AS text) = CAST(:ws AS text)"""


def _by_id(rows: dict[uuid.UUID, Any]) -> str:
    """The batch document: each message's values under its id."""
    return json.dumps(
        {str(k): v for k, v in rows.items()}, separators=(",", ":"), ensure_ascii=False
    )


_SKIP = text(
    f"""
    WITH {_BATCH}, moved AS (
        UPDATE messages m
        SET status = 'skipped', skip_reason = b.doc ->> CAST(m.id AS text), hold_until = NULL
        FROM batch b
        WHERE {_BY_ID} AND m.status = 'queued'
        RETURNING m.id, m.skip_reason AS reason
    ), history AS (
        INSERT INTO message_events (message_id, workspace_id, status, occurred_at, detail)
        SELECT id, :ws, 'skipped', :now, jsonb_build_object('reason', reason) FROM moved
    )
    SELECT id FROM moved
    """
)


async def mark_skipped(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    skips: Sequence[tuple[uuid.UUID, str]],
    now: datetime,
) -> None:
    if skips:
        await session.execute(
            _SKIP,
            {"ws": workspace_id, "now": now, "rows": _by_id({i: str(r) for i, r in skips})},
        )


_HOLD = text(
    f"""
    WITH {_BATCH}, moved AS (
        UPDATE messages m SET hold_until = CAST(b.doc ->> CAST(m.id AS text) AS timestamptz)
        FROM batch b
        WHERE {_BY_ID} AND m.status = 'queued'
          AND m.hold_until IS DISTINCT FROM CAST(b.doc ->> CAST(m.id AS text) AS timestamptz)
        RETURNING m.id, m.hold_until AS until
    ), history AS (
        INSERT INTO message_events (message_id, workspace_id, status, occurred_at, detail)
        SELECT id, :ws, 'held', :now,
               jsonb_build_object('reason', 'quiet_hours', 'hold_until', until) FROM moved
    )
    SELECT id FROM moved
    """
)


async def mark_held(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    holds: Sequence[tuple[uuid.UUID, datetime]],
    now: datetime,
) -> None:
    if holds:
        await session.execute(
            _HOLD,
            {"ws": workspace_id, "now": now, "rows": _by_id({i: u.isoformat() for i, u in holds})},
        )


@dataclass(slots=True)  # one per message: not frozen (see `channels.base.SendResult`)
class Outgoing:
    """What is about to be handed to the provider, stored on the row before the call."""

    message_id: uuid.UUID
    to_address: str
    subject: str | None
    content: bytes | None  # None when the content is shared (`content_id`)
    content_sha256: str
    provider: str
    content_id: str | None = None  # `message_contents` id, as text (see `models.messages`)


def outgoing_row(o: Outgoing) -> dict[str, Any]:
    """The ledger columns of a claim, as the batch statements read them."""
    row: dict[str, Any] = {
        "to_address": o.to_address,
        "subject": o.subject,
        "content_sha256": o.content_sha256,
        "provider": o.provider,
    }
    if o.content is not None:
        row["content"] = base64.b64encode(o.content).decode()
    if o.content_id is not None:
        row["content_id"] = o.content_id
    return row


_CONTENTS = text(
    """
    INSERT INTO message_contents (id, workspace_id, content, content_sha256, created_at)
    SELECT x.id, :ws, decode(x.content, 'base64'), x.content_sha256, :now
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(id uuid, content text, content_sha256 text)
    ON CONFLICT (id) DO NOTHING
    """
)


async def store_contents(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    contents: dict[uuid.UUID, tuple[bytes, str]],
    now: datetime,
) -> None:
    """Store shared contents (id → packed content, SHA-256) once: a content stored already (a
    later batch of the same send) is left as it is (its id is derived from it)."""
    if contents:
        rows = [
            {"id": str(i), "content": base64.b64encode(c).decode(), "content_sha256": d}
            for i, (c, d) in contents.items()
        ]
        await session.execute(_CONTENTS, {"ws": workspace_id, "now": now, "rows": _dumps(rows)})


# Set-based statements take their rows as one JSON document: json.dumps is C, while psycopg
# quotes every element of a text/bytea array in Python (1,000 HTML bodies most of all).
_CLAIM = text(
    f"""
    WITH {_BATCH}, moved AS (
        UPDATE messages m
        SET (status, sending_at, hold_until, to_address, subject, content, content_sha256,
             content_id, provider) = (
                SELECT 'sending', CAST(:now AS timestamptz), CAST(NULL AS timestamptz),
                       x.to_address, x.subject,
                       decode(x.content, 'base64'), x.content_sha256, x.content_id, x.provider
                FROM jsonb_to_record(b.doc -> CAST(m.id AS text))
                     AS x(to_address text, subject text, content text, content_sha256 text,
                          content_id uuid, provider text)
            )
        FROM batch b
        WHERE {_BY_ID} AND m.status = 'queued'
        RETURNING m.id
    )
    SELECT id FROM moved
    """
)


def _dumps(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


async def mark_sending(
    session: AsyncSession, workspace_id: uuid.UUID, outgoing: Sequence[Outgoing], now: datetime
) -> set[uuid.UUID]:
    """Claim rows for sending (`queued → sending`); returns the ids this call claimed. Commit
    before calling the provider: a crash after the call then finds the row in `sending`."""
    if not outgoing:
        return set()
    rows = {o.message_id: outgoing_row(o) for o in outgoing}
    result = await session.execute(_CLAIM, {"ws": workspace_id, "now": now, "rows": _by_id(rows)})
    return set(result.scalars())


class Outcome(NamedTuple):  # a tuple: one is made per message of a batch
    message_id: uuid.UUID | str  # or its text (the send path has it: no str() per message)
    status: MessageStatus  # sent | failed | queued (handed back: the provider was unavailable)
    provider_message_id: str | None = None
    error: str | None = None


# Each row's outcome from its entry in the batch document, or, when every row of the batch has
# the same outcome (a SendGrid request's: all accepted under one id), from the parameters
# (`:status`, `:provider_message_id`, `:error`): then the rows are only found by id, with no
# JSON read and no sub-select per row (a quarter of the statement's time, measured).
_OUTCOME_COLUMNS = ("status", "provider_message_id", "error", "sent_at", "failed_at", "sending_at")


def _outcome_values(status: str, provider_message_id: str, error: str) -> tuple[str, ...]:
    """The new values of `_OUTCOME_COLUMNS`, from these expressions of the outcome."""
    now = "CAST(:now AS timestamptz)"
    return (
        status,
        f"COALESCE({provider_message_id}, m.provider_message_id)",
        error,
        f"CASE WHEN {status} = 'sent' THEN {now} ELSE m.sent_at END",
        f"CASE WHEN {status} = 'failed' THEN {now} ELSE m.failed_at END",
        f"CASE WHEN {status} = 'queued' THEN NULL ELSE m.sending_at END",
    )


_PER_ROW = """SET ({columns}) = (
                SELECT {values}
                FROM jsonb_to_record(b.doc -> CAST(m.id AS text))
                     AS x(status text, provider_message_id text, error text)
            )
        FROM batch b""".format(
    columns=", ".join(_OUTCOME_COLUMNS),
    values=", ".join(_outcome_values("x.status", "x.provider_message_id", "x.error")),
)
_UNIFORM = "SET " + ", ".join(
    f"{column} = {value}"
    for column, value in zip(
        _OUTCOME_COLUMNS,
        _outcome_values(
            "CAST(:status AS text)", "CAST(:provider_message_id AS text)", "CAST(:error AS text)"
        ),
        strict=True,
    )
)
# What each row's entry says (the history's detail), by variant: the document's, or none.
_INPUT = {False: "b.doc -> CAST(m.id AS text)", True: "CAST(NULL AS jsonb)"}
_OUTCOME_MOVED = f"""
    WITH {_BATCH}, moved AS (
        UPDATE messages m
        {{set}}
        WHERE {_BY_ID} AND m.status = :expected
        RETURNING m.id, m.status, {{input}} AS input{{returning}}
    ), history AS (
        INSERT INTO message_events (message_id, workspace_id, status, occurred_at, detail)
        SELECT id, :ws, status, :now,
               jsonb_strip_nulls(jsonb_build_object(
                   'provider_message_id', COALESCE(input -> 'provider_message_id',
                                                   to_jsonb(CAST(:provider_message_id AS text))),
                   'error', COALESCE(input -> 'error', to_jsonb(CAST(:error AS text)))))
        FROM moved WHERE status <> 'sent'  -- accepted: `sent_at`, `provider_message_id`
    )"""
_OUTCOME_SQL = _OUTCOME_MOVED.replace("{returning}", "") + "\n    SELECT count(*) FROM moved"

# The same, and a "Received <Channel>" profile event (`:metric`) for each message the provider
# accepted, made from the ledger row: the row this statement moved (its RETURNING), or, for
# an accepted message it did not move (a replay of the same outcome, or a provider event that
# moved it first), the row read again — only when there is one (`:accepted`: how many of the
# batch's outcomes are `sent`). A replay stores no second event (its message id is the
# event's).
_RECEIVED = (
    "profile_id", "channel", "subject", "flow_id", "step_id", "campaign_id",
    "campaign_message_id", "template_id",
)  # fmt: skip
_OUTCOME_RECEIVED_SQL = (
    _OUTCOME_MOVED.replace("{returning}", "".join(f", m.{c}" for c in _RECEIVED))
    + f""", accepted AS (
        SELECT id, {", ".join(_RECEIVED)} FROM moved WHERE status = 'sent'
        UNION ALL
        SELECT m.id, {", ".join(f"m.{c}" for c in _RECEIVED)}
        FROM messages m
        WHERE (SELECT count(*) FROM moved WHERE status = 'sent') < :accepted
          AND m.id = ANY (ARRAY(SELECT CAST(e.key AS uuid) FROM batch, jsonb_each(doc) AS e
                                WHERE COALESCE(e.value ->> 'status', :status) = 'sent'))
          AND m.id NOT IN (SELECT id FROM moved)
          AND CAST(m.workspace_id AS text) = CAST(:ws AS text)
    ), input AS (
        SELECT profile_id, CAST(:metric AS text) AS metric,
               'waymark:' || CAST(id AS text) || '\\:received' AS message_id,
               CAST(:now AS timestamptz) AS occurred_at, CAST(NULL AS numeric) AS value,
               CAST(NULL AS text) AS currency,
               jsonb_strip_nulls(jsonb_build_object(
                   'message_id', CAST(id AS text), 'channel', channel,
                   'subject', subject, 'flow_id', flow_id, 'step_id', step_id,
                   'campaign_id', CAST(campaign_id AS text),
                   'campaign_message_id', CAST(campaign_message_id AS text),
                   'template_id', CAST(template_id AS text))) AS properties,
               CAST('{{}}' AS jsonb) AS context
        FROM accepted
    ), {STORE_INPUT}
    SELECT count(*) FROM moved
    """
)


def _by_uniformity(sql: str) -> dict[bool, Any]:
    """`sql` by "the batch's outcomes are all the same" (see `_UNIFORM`)."""
    return {
        u: text(sql.replace("{set}", _UNIFORM if u else _PER_ROW).replace("{input}", _INPUT[u]))
        for u in (False, True)
    }


_OUTCOME = _by_uniformity(_OUTCOME_SQL)
_OUTCOME_RECEIVED = _by_uniformity(_OUTCOME_RECEIVED_SQL)


async def mark_outcomes(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    outcomes: Sequence[Outcome],
    now: datetime,
    *,
    expected: MessageStatus = MessageStatus.sending,
    received_metric: str | None = None,
) -> int:
    """Record what the provider said for claimed rows (`sending → sent | failed | queued`), or
    fail rows that never reached a provider (`expected=queued`, e.g. a template error); returns
    how many moved. `received_metric`: also store that profile event for every `sent` outcome
    (same statement)."""
    if not outcomes:
        return 0
    # A status is a MessageStatus (a str: JSON takes it as it is) or its value.
    # The same outcome for every message (a SendGrid request's): as parameters, the rows only
    # by id; else each row's in the document.
    first = outcomes[0]
    uniform = all(
        o.status == first.status
        and o.provider_message_id == first.provider_message_id
        and o.error == first.error
        for o in outcomes
    )
    rows = {
        o.message_id: {}
        if uniform
        else {"status": o.status, "provider_message_id": o.provider_message_id, "error": o.error}
        for o in outcomes
    }
    params = {
        "ws": workspace_id,
        "now": now,
        "expected": MessageStatus(expected).value,
        "status": MessageStatus(first.status).value if uniform else None,
        "provider_message_id": first.provider_message_id if uniform else None,
        "error": first.error if uniform else None,
        "rows": _by_id(rows),
    }
    if received_metric is None:
        result = await session.execute(_OUTCOME[uniform], params)
    else:
        accepted = sum(1 for o in outcomes if o.status == MessageStatus.sent)
        result = await session.execute(
            _OUTCOME_RECEIVED[uniform], params | {"metric": received_metric, "accepted": accepted}
        )
    return result.scalar() or 0


# --- what happens afterwards: webhooks and engagement -------------------------------------

_RANK_SQL = "(CASE m.status {} ELSE 0 END)".format(
    " ".join(f"WHEN '{s.value}' THEN {r}" for s, r in STATUS_RANK.items())
)
# The timestamp column an event sets the first time it happens.
_STAMP = {
    MessageStatus.sent: "sent_at",
    MessageStatus.delivered: "delivered_at",
    MessageStatus.opened: "opened_at",
    MessageStatus.clicked: "clicked_at",
    MessageStatus.bounced: "bounced_at",
    MessageStatus.failed: "failed_at",
}
# Statuses that prove the provider accepted the message: they also settle `sent_at` (the
# unknown-outcome window is reconciled by any of them).
_PROVES_SENT = frozenset(STATUS_RANK) - {
    MessageStatus.queued,
    MessageStatus.sending,
    MessageStatus.failed,
    MessageStatus.skipped,
}


def _apply_sql(status: MessageStatus) -> str:
    sets = [
        f"status = CASE WHEN {STATUS_RANK[status]} >= {_RANK_SQL} THEN :status ELSE m.status END",
        "provider_message_id = COALESCE(m.provider_message_id, :provider_message_id)",
    ]
    if column := _STAMP.get(status):
        sets.append(f"{column} = COALESCE(m.{column}, :at)")
    if status in _PROVES_SENT and status != MessageStatus.sent:
        sets.append("sent_at = COALESCE(m.sent_at, :at)")
    return f"""
    WITH target AS (
        SELECT id FROM messages WHERE id = :mid AND workspace_id = :ws
    ), history AS (
        INSERT INTO message_events (message_id, workspace_id, status, occurred_at, detail,
                                    provider_event_id)
        SELECT id, :ws, :status, :at, CAST(:detail AS jsonb), :provider_event_id FROM target
        ON CONFLICT (workspace_id, provider_event_id) WHERE provider_event_id IS NOT NULL
        DO NOTHING
        RETURNING message_id
    ), applied AS (
        UPDATE messages m SET {", ".join(sets)}
        FROM history h WHERE m.id = h.message_id
        RETURNING m.id
    )
    SELECT message_id FROM history
    """


_APPLY = {status: text(_apply_sql(status)) for status in STATUS_RANK}


@dataclass(frozen=True)
class Recorded:
    """An event the ledger took (None from the functions below: unknown message or replay)."""

    message_id: uuid.UUID
    profile_id: uuid.UUID
    channel: Channel
    status: MessageStatus
    to_address: str | None
    detail: dict[str, Any] = field(default_factory=dict)


async def record_provider_event(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    status: MessageStatus | str,
    occurred_at: datetime,
    detail: dict[str, Any] | None = None,
    provider_event_id: str | None = None,
    provider_message_id: str | None = None,
) -> Recorded | None:
    """Append a provider's event to a message and apply it; None when the message is not in the
    workspace or the event (by `provider_event_id`) was recorded before — a replay."""
    status = MessageStatus(status)
    stored = (
        await session.execute(
            _APPLY[status],
            {
                "ws": workspace_id,
                "mid": message_id,
                "status": status.value,
                "at": occurred_at,
                "detail": _json(detail),
                "provider_event_id": provider_event_id,
                "provider_message_id": provider_message_id,
            },
        )
    ).first()
    if stored is None:
        return None
    row = (
        await session.execute(
            select(Message.profile_id, Message.channel, Message.to_address).where(
                Message.id == message_id
            )
        )
    ).one()
    return Recorded(
        message_id, row.profile_id, Channel(row.channel), status, row.to_address, detail or {}
    )


ENGAGEMENT_KINDS = {
    "open": MessageStatus.opened,
    "opened": MessageStatus.opened,
    "click": MessageStatus.clicked,
    "clicked": MessageStatus.clicked,
    "unsubscribe": MessageStatus.unsubscribed,
    "unsubscribed": MessageStatus.unsubscribed,
    "spam": MessageStatus.spam,
}


async def record_engagement(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    kind: str,
    occurred_at: datetime,
    detail: dict[str, Any] | None = None,
) -> Recorded | None:
    """An open (pixel), click (tracked link) or unsubscribe (link) of a message, from Waymark's
    own tracking: appended to its history (every open and click is kept; `opened_at` and
    `clicked_at` keep the first). The ledger only — profile events are the caller's.
    None when the message is not in the workspace."""
    try:
        status = ENGAGEMENT_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown engagement kind {kind!r}") from None
    return await record_provider_event(
        session,
        workspace_id=workspace_id,
        message_id=message_id,
        status=status,
        occurred_at=occurred_at,
        detail=detail,
    )
