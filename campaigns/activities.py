"""Campaign message activities: prepare, snapshot the audience, send one batch, finish.

The workflow (`workflows.campaign_message`) carries counts and batch numbers only; the
recipients live in `campaign_recipients` (`campaigns.audience`). Every activity is safe to
retry: the snapshot is done once per message, and a batch goes through the send path with the
ledger key `campaign:{message_id}:{profile_id}`, so a re-run (a retry, a worker killed mid-send
and restarted) never sends a recipient twice.

The send path (`channels.send`) is imported when an activity runs: the workflow sandbox
imports this module for its method references, so its top stays light.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from campaigns.audience import Group

NO_RECIPIENTS = "no recipients"
# Recipients per `send_batch` activity, whatever the channel: SendGrid takes 1,000
# personalizations per request, and the send path cuts SMS and push into its own provider
# chunks (`channels.send.SMS_BATCH`). Fewer, larger batches spend less of each send on the
# per-call reads (profiles, ledger keys, the gate) before the first provider request.
BATCH_SIZE = 1000


class PrepareMessageInput(BaseModel):
    workspace_id: uuid.UUID
    message_id: uuid.UUID


class PrepareMessageResult(BaseModel):
    # False when the message is no longer scheduled (reverted, cancelled, deleted, sent).
    proceed: bool = False
    status: str | None = None
    # When the first recipient can be due: `send_at`, or with recipient local time the same
    # wall-clock time in the earliest zone (UTC+14).
    start_at: datetime | None = None
    channel: str | None = None


class SnapshotAudienceInput(BaseModel):
    workspace_id: uuid.UUID
    message_id: uuid.UUID
    now: datetime  # workflow time: which local-time zones have passed
    batch_size: int | None = None  # default `BATCH_SIZE` (1,000)


class SnapshotAudienceResult(BaseModel):
    total: int = 0  # every recipient of the message (0: no recipients, the message is cancelled)
    recipients: int = 0  # those still pending (all of them, unless a send was interrupted)
    groups: list[Group] = Field(default_factory=list)


class SendBatchInput(BaseModel):
    workspace_id: uuid.UUID
    message_id: uuid.UUID
    batch_no: int | None = None
    # Instead of a batch: recipients held (quiet hours) and due by then, at most `limit`.
    held_due: datetime | None = None
    limit: int = 1000


class SendBatchResult(BaseModel):
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)
    held: int = 0
    next_hold: datetime | None = None  # earliest time a held recipient of the message is due
    replayed: int = 0


class FinishMessageInput(BaseModel):
    workspace_id: uuid.UUID
    message_id: uuid.UUID
    cancelled_reason: str | None = None  # set: the message is cancelled (e.g. no recipients)


class FinishMessageResult(BaseModel):
    status: str
    counts: dict[str, int] = Field(default_factory=dict)  # "sent", "skipped:no_consent", ...


_MESSAGE = text(
    """
SELECT m.status, m.channel, m.template_id, m.sender, m.send_at, m.smart_sending, m.utm,
       m.campaign_id, c.use_recipient_local_time, COALESCE(tz.name, 'UTC') AS camp_tz
FROM campaign_messages m
JOIN campaigns c ON c.id = m.campaign_id
LEFT JOIN pg_timezone_names tz ON tz.name = c.timezone
WHERE m.id = :message_id AND m.workspace_id = :workspace_id
"""
)

# Each recipient's outcome (`[status, reason, hold until]`) comes in one JSON object keyed by
# profile id; rows are found by primary key and read their own value: no join to plan (see
# `channels.ledger`'s batch statements). The snapshot ANALYZEs the table, so the message's
# recipients are not estimated at a handful of rows either.
_RECORD = text(
    """
WITH batch AS MATERIALIZED (SELECT CAST(:rows AS jsonb) AS doc)
UPDATE campaign_recipients r
SET status = b.doc -> CAST(r.profile_id AS text) ->> 0,
    reason = b.doc -> CAST(r.profile_id AS text) ->> 1,
    local_send_at = COALESCE(
        CAST(b.doc -> CAST(r.profile_id AS text) ->> 2 AS timestamptz), r.local_send_at)
FROM batch b
WHERE r.message_id = :message_id
  AND r.profile_id = ANY (ARRAY(SELECT CAST(jsonb_object_keys(doc) AS uuid) FROM batch))
"""
)


def _recipient_row(result: Any) -> list[str | None]:
    """A recipient's `[status, reason, hold until]` from its send outcome."""
    outcome = result.outcome  # a `SendOutcome` (a StrEnum: not imported here, see above)
    if outcome == "skipped":
        return ["skipped", result.skip_reason, None]
    if outcome == "failed":
        return ["failed", (result.error or "")[:255], None]
    if outcome == "held":
        return ["held", "quiet_hours", result.hold_until.isoformat()]
    return ["sent", None, None]


def idempotency_prefix(message_id: uuid.UUID) -> str:
    return f"campaign:{message_id}"


class CampaignActivities:
    def __init__(self, engine: AsyncEngine, settings: Any) -> None:
        self.engine = engine
        self.settings = settings

    def all(self) -> list:
        return [self.prepare_message, self.snapshot_audience, self.send_batch, self.finish_message]

    @activity.defn
    async def prepare_message(self, input: PrepareMessageInput) -> PrepareMessageResult:
        from core.db import session_scope

        async with session_scope(self.engine) as session:
            row = (
                await session.execute(
                    _MESSAGE, {"message_id": input.message_id, "workspace_id": input.workspace_id}
                )
            ).one_or_none()
            if row is None:
                return PrepareMessageResult(status="deleted")
            if row.status not in ("scheduled", "sending") or row.send_at is None:
                return PrepareMessageResult(status=row.status)
            start_at = row.send_at
            if row.use_recipient_local_time:
                start_at = (
                    await session.execute(
                        text(
                            "SELECT (CAST(:at AS timestamptz) AT TIME ZONE :tz) "
                            "AT TIME ZONE 'Etc/GMT-14'"
                        ),
                        {"at": row.send_at, "tz": row.camp_tz},
                    )
                ).scalar_one()
            return PrepareMessageResult(
                proceed=True, status=row.status, start_at=start_at, channel=row.channel
            )

    @activity.defn
    async def snapshot_audience(self, input: SnapshotAudienceInput) -> SnapshotAudienceResult:
        """ONE set-based statement fills `campaign_recipients`; the message becomes `sending`."""
        from campaigns import audience
        from core.db import session_scope

        async with session_scope(self.engine) as session:
            # One snapshot of a message at a time (a retried activity waits for the first).
            (
                await session.execute(
                    text(
                        "SELECT id FROM campaign_messages "
                        "WHERE id = :message_id AND workspace_id = :workspace_id FOR UPDATE"
                    ),
                    {"message_id": input.message_id, "workspace_id": input.workspace_id},
                )
            ).scalar_one()
            groups = await audience.snapshot(
                session,
                workspace_id=input.workspace_id,
                message_id=input.message_id,
                now=input.now,
                batch_size=input.batch_size or BATCH_SIZE,
            )
            await session.execute(
                text(
                    "UPDATE campaign_messages SET status = 'sending', "
                    "started_at = COALESCE(started_at, now()), updated_at = now() "
                    "WHERE id = :message_id AND status = 'scheduled'"
                ),
                {"message_id": input.message_id},
            )
            total = (
                await session.execute(
                    text("SELECT count(*) FROM campaign_recipients WHERE message_id = :m"),
                    {"m": input.message_id},
                )
            ).scalar_one()
            if total:  # sending starts: the campaign's send settings lock for good
                await session.execute(
                    text(
                        "UPDATE campaigns SET settings_locked_forever = true WHERE id = "
                        "(SELECT campaign_id FROM campaign_messages WHERE id = :m)"
                    ),
                    {"m": input.message_id},
                )
        if total:
            # The batches read and update these rows by message: statistics that have not
            # seen them yet would estimate the message at a handful of rows.
            async with session_scope(self.engine) as session:
                await session.execute(text("ANALYZE campaign_recipients"))
        return SnapshotAudienceResult(
            total=total, recipients=sum(g.recipients for g in groups), groups=groups
        )

    @activity.defn
    async def send_batch(self, input: SendBatchInput) -> SendBatchResult:
        """Send one batch (or the held recipients now due) through the send path's batch
        function, then record each recipient's outcome (one UPDATE)."""
        from activities.channels import Sender, SendMessagesInput
        from channels.send import OutcomePending, send_many_outcomes
        from core.db import session_scope

        params = {"message_id": input.message_id, "workspace_id": input.workspace_id}
        async with session_scope(self.engine) as session:
            message = (await session.execute(_MESSAGE, params)).one()
            if input.held_due is not None:
                ids = (
                    (
                        await session.execute(
                            text(
                                "SELECT profile_id FROM campaign_recipients WHERE message_id = "
                                ":message_id AND status = 'held' AND local_send_at <= :due "
                                "ORDER BY local_send_at, profile_id LIMIT :limit"
                            ),
                            params | {"due": input.held_due, "limit": input.limit},
                        )
                    )
                    .scalars()
                    .all()
                )
            else:
                ids = (
                    (
                        await session.execute(
                            text(
                                "SELECT profile_id FROM campaign_recipients WHERE message_id = "
                                ":message_id AND batch_no = :batch_no AND status = 'pending' "
                                "ORDER BY profile_id"
                            ),
                            params | {"batch_no": input.batch_no},
                        )
                    )
                    .scalars()
                    .all()
                )
        result = SendBatchResult(recipients=len(ids))
        if ids:
            prefix = idempotency_prefix(input.message_id)
            send = SendMessagesInput(
                workspace_id=input.workspace_id,
                channel=message.channel,
                template_id=message.template_id,
                profile_ids=list(ids),
                idempotency_prefix=prefix,
                campaign_id=message.campaign_id,
                campaign_message_id=input.message_id,
                smart_sending=message.smart_sending,
                utm={str(k): str(v) for k, v in (message.utm or {}).items()},
                sender=Sender.model_validate(message.sender or {}),
                # Temporal's clock: the wall clock in production, the skipped one in tests.
                now=activity.info().current_attempt_scheduled_time,
            )
            try:
                summary, outcomes = await send_many_outcomes(
                    self.engine, self.settings, send, heartbeat=activity.heartbeat
                )
            except OutcomePending as exc:
                from activities.channels import PENDING_RETRY_DELAY

                raise ApplicationError(
                    str(exc), type="OutcomePending", next_retry_delay=PENDING_RETRY_DELAY
                ) from None
            activity.heartbeat(result.recipients)
            rows = {str(pid): _recipient_row(one) for pid, one in outcomes.items()}
            async with session_scope(self.engine) as session:
                await session.execute(_RECORD, params | {"rows": json.dumps(rows)})
            result.sent, result.failed = summary.sent, summary.failed
            result.skipped, result.held = summary.skipped, len(summary.held)
            result.replayed = summary.replayed
        async with session_scope(self.engine) as session:
            result.next_hold = (
                await session.execute(
                    text(
                        "SELECT min(local_send_at) FROM campaign_recipients "
                        "WHERE message_id = :message_id AND status = 'held'"
                    ),
                    params,
                )
            ).scalar_one()
        activity.heartbeat(result.recipients)
        return result

    @activity.defn
    async def finish_message(self, input: FinishMessageInput) -> FinishMessageResult:
        """The message's final status (`sent`, or `cancelled` with a reason) and its counts by
        recipient status and reason."""
        from core.db import session_scope

        params = {"message_id": input.message_id, "workspace_id": input.workspace_id}
        status = "cancelled" if input.cancelled_reason else "sent"
        async with session_scope(self.engine) as session:
            await session.execute(
                text(
                    "UPDATE campaign_messages SET status = :status, status_reason = :reason, "
                    "finished_at = now(), updated_at = now() "
                    "WHERE id = :message_id AND workspace_id = :workspace_id "
                    "AND status IN ('scheduled', 'sending')"
                ),
                params | {"status": status, "reason": input.cancelled_reason},
            )
            rows = await session.execute(
                text(
                    "SELECT status, reason, count(*) FROM campaign_recipients "
                    "WHERE message_id = :message_id GROUP BY status, reason"
                ),
                params,
            )
            counts: dict[str, int] = {}
            for st, reason, n in rows:
                key = f"{st}:{reason}" if st == "skipped" and reason else st
                counts[key] = counts.get(key, 0) + n
            final = (
                await session.execute(
                    text("SELECT status FROM campaign_messages WHERE id = :message_id"), params
                )
            ).scalar_one_or_none()
        return FinishMessageResult(status=final or "deleted", counts=counts)
