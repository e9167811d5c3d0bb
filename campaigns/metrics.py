"""Campaign figures per campaign, path and message, and the progress of a message being sent.

Three set-based aggregates per request, each grouped in PostgreSQL to a handful of rows (never
one row per recipient in Python):

- `campaign_recipients` (the audience snapshots) → per message and due time, recipients by
  status: the recipients, the progress of a send (done, held, remaining) and its waves;
- `campaign_recipients` again → distinct profiles per path and for the campaign;
- `messages` (the ledger, through `ix_messages_campaign_message`) → per message: sent, skipped
  by reason, failed, delivered, opened, clicked, bounced, unsubscribed (the same figures as a
  flow's: `channels.ledger_metrics`).

What each figure counts:

- `recipients`: for a message, the profiles its audience snapshot holds (0 until it starts
  sending); for a path or the campaign, the distinct profiles of its messages' snapshots (a
  profile that got three messages of a path counts once). Every other figure counts messages.
- `sent`: handed to the provider (or the local outbox); `skipped`: the gate said no (no consent,
  suppressed, Smart Sending, no address), by reason; `failed`: refused by the provider, a
  template error, or an outcome never confirmed; `delivered` / `opened` / `clicked` /
  `bounced`: messages for which that happened at least once; `unsubscribed`: messages whose
  recipient unsubscribed through them.
- `progress` (a message): `done` = sent + skipped + failed recipients, `remaining` = the rest
  (`held`: waiting for quiet hours to end in their zone), `percent` = done / recipients.
  `waves` are the distinct due times of the snapshot as they stand (local-time zone groups,
  throttled hourly waves, and a quiet-hours hold moves its recipients to the time it ends);
  `current_wave` is the one being sent or due next (1-based; all of them once nothing remains).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import Uuid, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from channels.ledger_metrics import MessageCounts, Reasons, ledger_counts
from models import Message
from models.campaigns import CampaignMessage, CampaignMessageStatus, CampaignPath
from models.profile import Channel

FINISHED = (
    CampaignMessageStatus.sent,
    CampaignMessageStatus.cancelled,
    CampaignMessageStatus.cancelled_during_send,
)
DONE = ("sent", "skipped", "failed")  # campaign_recipients.status of a settled recipient


class _Recipients(BaseModel):
    recipients: int = Field(0, description="profiles in the audience snapshot(s); see the docs")


# `recipients` first, then the ledger's figures (pydantic orders fields from the last base).
class Counts(MessageCounts, _Recipients):
    pass


class Progress(BaseModel):
    recipients: int = Field(0, description="in the audience snapshot (0 until sending starts)")
    done: int = Field(0, description="sent, skipped or failed")
    remaining: int = Field(0, description="still to send (held ones included)")
    held: int = Field(0, description="waiting for quiet hours to end in their time zone")
    percent: float = Field(0.0, description="done / recipients, 0–100")
    waves: int = Field(0, description="distinct due times: zone groups, throttled waves, holds")
    current_wave: int = Field(0, description="1-based: the wave being sent or due next")
    next_due_at: datetime | None = Field(
        None, description="when the next remaining recipients are due"
    )


class MessageMetrics(Counts):
    message_id: uuid.UUID
    path_id: uuid.UUID
    name: str
    channel: Channel
    status: CampaignMessageStatus
    send_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress = Field(default_factory=Progress)


class PathMetrics(Counts):
    path_id: uuid.UUID
    position: int
    name: str | None
    messages: list[MessageMetrics] = Field(description="ordered by send time")


class CampaignMetrics(Counts):
    campaign_id: uuid.UUID
    paths: list[PathMetrics] = Field(description="in path order")


# --- the three aggregates -------------------------------------------------------------------

_RECIPIENTS = text(
    """
SELECT message_id, local_send_at AS due, status, count(*) AS n
FROM campaign_recipients
WHERE message_id = ANY (CAST(:ids AS uuid[]))
GROUP BY message_id, local_send_at, status
"""
)

# Distinct profiles per path and (the grouping set ()) for all the given messages together.
_PROFILES = text(
    """
SELECT path_id, GROUPING(path_id) AS total, count(DISTINCT profile_id) AS n
FROM campaign_recipients
WHERE message_id = ANY (CAST(:ids AS uuid[]))
GROUP BY GROUPING SETS ((path_id), ())
"""
)

_PROGRESS = text(
    """
SELECT local_send_at AS due, status, count(*) AS n
FROM campaign_recipients WHERE message_id = :id
GROUP BY local_send_at, status
"""
)


def _ledger_query(ws: uuid.UUID, ids: list[uuid.UUID]):
    """Per message and skip reason, through ix_messages_campaign_message."""
    m = Message.__table__.c
    ledger = ledger_counts()
    message_id = m.campaign_message_id.label("message_id")
    return (
        select(message_id, ledger.reason, *ledger.counts)
        .where(
            m.workspace_id == ws, m.campaign_message_id == any_(bindparam("ids", ids, ARRAY(Uuid)))
        )
        .group_by(m.campaign_message_id, ledger.reason)
    )


def _progress(status: CampaignMessageStatus, rows: list) -> Progress:
    """From (due, status, n) groups of one message."""
    p = Progress()
    dues = sorted({r.due for r in rows})
    remaining_dues = sorted({r.due for r in rows if r.status not in DONE})
    for r in rows:
        p.recipients += r.n
        if r.status in DONE:
            p.done += r.n
        else:
            p.remaining += r.n
            p.held += r.n if r.status == "held" else 0
    p.waves = len(dues)
    if remaining_dues:
        p.next_due_at = remaining_dues[0]
        p.current_wave = dues.index(remaining_dues[0]) + 1
    else:
        p.current_wave = p.waves
    if p.recipients:
        p.percent = round(100.0 * p.done / p.recipients, 1)
    elif status in FINISHED:
        p.percent = 100.0
    return p


async def progress(session: AsyncSession, message: CampaignMessage) -> Progress:
    """The progress of one message (one query, for a progress display to poll)."""
    rows = list(await session.execute(_PROGRESS, {"id": message.id}))
    return _progress(CampaignMessageStatus(message.status), rows)


async def campaign_metrics(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    workspace_id: uuid.UUID,
    paths: list[CampaignPath],
    messages: list[CampaignMessage],
) -> CampaignMetrics:
    """The figures of `messages` (all of a campaign's, or those of some paths) and `paths`.
    The caller has loaded both from the campaign, scoped to the workspace."""
    ids = [m.id for m in messages]
    by_message: dict[uuid.UUID, list] = defaultdict(list)
    profiles: dict[uuid.UUID | None, int] = {}
    ledger: dict[uuid.UUID, Counts] = defaultdict(Counts)
    if ids:
        for row in await session.execute(_RECIPIENTS, {"ids": ids}):
            by_message[row.message_id].append(row)
        for row in await session.execute(_PROFILES, {"ids": ids}):
            profiles[None if row.total else row.path_id] = row.n
        for row in await session.execute(_ledger_query(workspace_id, ids)):
            ledger[row.message_id].add_row(row)

    out = CampaignMetrics(campaign_id=campaign_id, recipients=profiles.get(None, 0), paths=[])
    for path in paths:
        item = PathMetrics(
            path_id=path.id,
            position=path.position,
            name=path.name,
            recipients=profiles.get(path.id, 0),
            messages=[],
        )
        for message in (m for m in messages if m.path_id == path.id):
            status = CampaignMessageStatus(message.status)
            one = MessageMetrics(
                **ledger[message.id].model_dump(exclude={"recipients"}),
                message_id=message.id,
                path_id=message.path_id,
                name=message.name,
                channel=message.channel,
                status=status,
                send_at=message.send_at,
                started_at=message.started_at,
                finished_at=message.finished_at,
                progress=_progress(status, by_message[message.id]),
            )
            one.recipients = one.progress.recipients
            item.messages.append(one)
            item.add(one)
        out.paths.append(item)
        out.add(item)
    return out


__all__ = [
    "CampaignMetrics",
    "Counts",
    "MessageMetrics",
    "PathMetrics",
    "Progress",
    "Reasons",
    "campaign_metrics",
    "progress",
]
