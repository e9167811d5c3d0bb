"""The audience of a campaign message, snapshotted into `campaign_recipients` in ONE statement.

`snapshot` inserts, set-based, every profile of the message's path audience:

- audience of a path: (members of its include lists ∪ include segments) minus (members of its
  exclude lists ∪ exclude segments);
- first path wins: a profile in several paths' audiences belongs to the first of them by
  `position` (`DISTINCT ON (profile_id) ... ORDER BY profile_id, position` over this path and
  the ones before it), so it gets only that path's messages. These two rules are
  `AUDIENCE_CTES`, which the review (`campaigns.review`) counts recipients with too;
- when it is due (`local_send_at`): the message's `send_at`, or with recipient local time the
  same wall-clock time in the profile's zone (fallback: the campaign's zone; unknown zone names
  fall back too, never an SQL error). Zones where that time has passed at `now` follow the
  campaign: `send_now` (due now) or `next_day` (same wall-clock time the next day, DST-correct);
- throttled: within each due time, `throttle_percent` of its recipients per hour
  (wave k = row k // ceil(n · percent / 100), due + k hours);
- `batch_no`: consecutive numbers, batches of `batch_size` never straddling two due times, in
  due-time order. The workflow gets one `Group` per due time (first/last batch, count) and the
  send activity reads rows by `batch_no`.

Consent, suppression and Smart Sending are deliberately NOT filtered here: the send path's gate
applies them per batch (one query) with the same rules as every other send, and its skip
reasons are recorded per recipient. The snapshot is idempotent: a message that already has rows
is left as it is (a retried activity returns the same groups).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class Group(BaseModel):
    """Recipients due at the same instant (a local-time zone group or a throttled wave)."""

    at: datetime
    first_batch: int
    last_batch: int
    recipients: int


# The audience of a campaign's paths up to one of them, first path wins: one row per profile,
# with the first path (by position) whose include-minus-exclude has it. Reads a CTE `scope`
# (campaign_id, position) defined before it — the snapshot's from the message, the review's from
# its parameters — and the parameter :workspace_id. The one definition of a path's audience.
AUDIENCE_CTES = """
paths AS (
    SELECT p.id, p.position, p.exclude_lists, p.exclude_segments,
           p.include_lists, p.include_segments
    FROM campaign_paths p JOIN scope s ON p.campaign_id = s.campaign_id
    WHERE p.position <= s.position AND p.workspace_id = :workspace_id
),
included AS (
    SELECT p.id AS path_id, p.position, lm.profile_id
    FROM paths p JOIN list_members lm
      ON lm.list_id = ANY (p.include_lists) AND lm.workspace_id = :workspace_id
    UNION ALL
    SELECT p.id, p.position, sm.profile_id
    FROM paths p JOIN segment_members sm
      ON sm.segment_id = ANY (p.include_segments) AND sm.workspace_id = :workspace_id
),
audience AS (
    SELECT DISTINCT ON (i.profile_id) i.profile_id, i.path_id
    FROM included i JOIN paths p ON p.id = i.path_id
    WHERE NOT EXISTS (
            SELECT 1 FROM list_members x
            WHERE x.list_id = ANY (p.exclude_lists) AND x.profile_id = i.profile_id)
      AND NOT EXISTS (
            SELECT 1 FROM segment_members x
            WHERE x.segment_id = ANY (p.exclude_segments) AND x.profile_id = i.profile_id)
    ORDER BY i.profile_id, i.position
)
"""

_SNAPSHOT = text(
    """
WITH msg AS (
    SELECT m.id, m.path_id, m.send_at, m.strategy, m.throttle_percent, p.campaign_id,
           p.position AS path_position, c.use_recipient_local_time AS local_time,
           c.passed_local_time AS passed, COALESCE(ctz.name, 'UTC') AS camp_tz
    FROM campaign_messages m
    JOIN campaign_paths p ON p.id = m.path_id
    JOIN campaigns c ON c.id = p.campaign_id
    LEFT JOIN pg_timezone_names ctz ON ctz.name = c.timezone
    WHERE m.id = :message_id AND m.workspace_id = :workspace_id
      AND NOT EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.message_id = :message_id)
),
scope AS (SELECT campaign_id, path_position AS position FROM msg),
"""
    + AUDIENCE_CTES
    + """,
zoned AS (
    SELECT a.profile_id, a.path_id,
           (msg.send_at AT TIME ZONE msg.camp_tz) AS wall,
           COALESCE(ptz.name, msg.camp_tz) AS zone
    FROM audience a
    JOIN msg ON a.path_id = msg.path_id
    JOIN profiles pr ON pr.id = a.profile_id AND pr.workspace_id = :workspace_id
    LEFT JOIN pg_timezone_names ptz ON ptz.name = pr.timezone
),
timed AS (
    SELECT z.profile_id, z.path_id,
           CASE
             WHEN NOT msg.local_time THEN msg.send_at
             WHEN (z.wall AT TIME ZONE z.zone) >= :now THEN z.wall AT TIME ZONE z.zone
             WHEN msg.passed = 'next_day' THEN (z.wall + interval '1 day') AT TIME ZONE z.zone
             ELSE CAST(:now AS timestamptz)
           END AS due
    FROM zoned z CROSS JOIN msg
),
numbered AS (
    SELECT t.profile_id, t.path_id, t.due,
           row_number() OVER (PARTITION BY t.due ORDER BY t.profile_id) - 1 AS rn,
           count(*) OVER (PARTITION BY t.due) AS cnt
    FROM timed t
),
waved AS (
    SELECT n.profile_id, n.path_id,
           CASE
             WHEN msg.strategy = 'throttled' AND COALESCE(msg.throttle_percent, 0) > 0
             THEN n.due + (n.rn / ceil(n.cnt * msg.throttle_percent / 100.0)::bigint)
                          * interval '1 hour'
             ELSE n.due
           END AS due
    FROM numbered n CROSS JOIN msg
),
batched AS (
    SELECT w.profile_id, w.path_id, w.due,
           (row_number() OVER (PARTITION BY w.due ORDER BY w.profile_id) - 1)
             / :batch_size AS inner_no
    FROM waved w
),
offsets AS (
    SELECT due,
           sum(max(inner_no) + 1) OVER (ORDER BY due) - (max(inner_no) + 1) AS base
    FROM batched GROUP BY due
)
INSERT INTO campaign_recipients
    (message_id, profile_id, workspace_id, path_id, local_send_at, batch_no, status)
SELECT :message_id, b.profile_id, :workspace_id, b.path_id, b.due,
       (o.base + b.inner_no)::int, 'pending'
FROM batched b JOIN offsets o ON o.due = b.due
ON CONFLICT (message_id, profile_id) DO NOTHING
"""
)

_GROUPS = text(
    """
SELECT local_send_at, min(batch_no), max(batch_no), count(*)
FROM campaign_recipients
WHERE message_id = :message_id AND status = 'pending'
GROUP BY local_send_at
ORDER BY local_send_at
"""
)


async def snapshot(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    now: datetime,
    batch_size: int,
) -> list[Group]:
    """Snapshot the audience (when not done yet) and return its groups by due time."""
    params = {"workspace_id": workspace_id, "message_id": message_id, "now": now}
    await session.execute(_SNAPSHOT, params | {"batch_size": batch_size})
    return await groups(session, message_id)


async def groups(session: AsyncSession, message_id: uuid.UUID) -> list[Group]:
    rows = await session.execute(_GROUPS, {"message_id": message_id})
    return [
        Group(at=at, first_batch=first, last_batch=last, recipients=count)
        for at, first, last, count in rows
    ]
