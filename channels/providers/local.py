"""Local mode: every channel without a provider account "sends" into the `local_outbox` table.

The whole product then works on a laptop with no SendGrid or Twilio account: messages are
rendered as they would be sent and kept for a developer to read at `GET /v1/outbox` or the
`/outbox` page. Writing is idempotent per Waymark message id, so an activity retried by
Temporal records a message once and answers with the same provider id.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from channels.base import (
    OutgoingEmail,
    OutgoingPush,
    OutgoingSms,
    SendResult,
    SendStatus,
)
from channels.email_tags import substitute
from core.db import session_scope
from models import Channel, LocalOutboxMessage, PushSubscription

PROFILE_ARG = "waymark_profile_id"  # custom_args key the send path may set; shown as a filter


def provider_id(row_id: uuid.UUID) -> str:
    return f"local-{row_id}"


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


class LocalOutboxProvider:
    """Implements EmailProvider, SmsProvider and PushProvider for one workspace."""

    def __init__(self, engine: AsyncEngine, workspace_id: uuid.UUID) -> None:
        self.engine = engine
        self.workspace_id = workspace_id

    async def send_emails(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        return await self._record(
            [
                {
                    "message_id": e.message_id,
                    "channel": Channel.email.value,
                    "to": e.to,
                    "profile_id": _uuid_or_none(e.custom_args.get(PROFILE_ARG)),
                    # As the recipient gets it: the substitutions applied.
                    "subject": substitute(e.subject, e.substitutions),
                    "html": substitute(e.html, e.substitutions),
                    "text": substitute(e.text, e.substitutions),
                    "payload": {
                        "from_email": e.from_email,
                        "from_name": e.from_name,
                        "reply_to": e.reply_to,
                        "headers": e.headers,
                        "categories": list(e.categories),
                        "custom_args": e.custom_args,
                    },
                }
                for e in emails
            ]
        )

    async def send_sms(self, messages: list[OutgoingSms]) -> list[SendResult]:
        return await self._record(
            [
                {
                    "message_id": m.message_id,
                    "channel": (Channel.whatsapp if m.whatsapp else Channel.sms).value,
                    "to": m.to,
                    "text": m.body,
                    "payload": {
                        "from_number": m.from_number,
                        "messaging_service_sid": m.messaging_service_sid,
                        "status_callback": m.status_callback,
                    },
                }
                for m in messages
            ]
        )

    async def send_push(self, messages: list[OutgoingPush]) -> list[SendResult]:
        ids = {m.subscription_id for m in messages}
        async with session_scope(self.engine) as session:
            owners = dict(
                (
                    await session.execute(
                        select(PushSubscription.id, PushSubscription.profile_id).where(
                            PushSubscription.id.in_(ids)
                        )
                    )
                ).all()
            )
        return await self._record(
            [
                {
                    "message_id": m.message_id,
                    "channel": Channel.push.value,
                    "to": m.endpoint,
                    "profile_id": owners.get(m.subscription_id),
                    "subject": str(m.payload.get("title", "")) or None,
                    "text": str(m.payload.get("body", "")) or None,
                    "payload": {
                        "payload": m.payload,
                        "subscription_id": str(m.subscription_id),
                        "ttl_seconds": m.ttl_seconds,
                        "urgency": m.urgency,
                    },
                }
                for m in messages
            ]
        )

    async def _record(self, rows: list[dict[str, Any]]) -> list[SendResult]:
        if not rows:
            return []
        for row in rows:
            row.setdefault("id", uuid.uuid4())
            row["workspace_id"] = self.workspace_id
        async with session_scope(self.engine) as session:
            # executemany: one compiled statement, sent in multi-row batches by SQLAlchemy
            # ("insertmanyvalues"), not a statement with a parameter per value.
            await session.execute(
                insert(LocalOutboxMessage).on_conflict_do_nothing(
                    index_elements=[LocalOutboxMessage.message_id]
                ),
                rows,
            )
            # Retries find the row of the first attempt: the same provider id every time.
            stored = dict(
                (
                    await session.execute(
                        select(LocalOutboxMessage.message_id, LocalOutboxMessage.id).where(
                            LocalOutboxMessage.message_id.in_([r["message_id"] for r in rows])
                        )
                    )
                ).all()
            )
        return [
            SendResult(
                message_id=row["message_id"],
                status=SendStatus.sent,
                provider_message_id=provider_id(stored[row["message_id"]]),
            )
            for row in rows
        ]
