"""SendGrid Event Webhook: verify the ECDSA signature, then apply each event once.

Signature: SendGrid signs `timestamp + raw body` with ECDSA P-256 / SHA-256 and sends the
base64 DER signature and the timestamp in `X-Twilio-Email-Event-Webhook-Signature` /
`-Timestamp`; verified with the SDK's `EventWebhook` against the workspace's public key
(channel settings `sendgrid_webhook_public_key`).

Each event finds its message by `waymark_message_id` (our custom arg, top-level in the event),
else by `sg_message_id`'s prefix (the X-Message-Id the send answered). It is stored once by its
`sg_event_id` (message history and profile events alike), so a replayed delivery changes
nothing. Side effects:

- processed → sent, delivered → delivered, open → opened + "Opened Email" (first open only,
  the same event id as Waymark's own pixel), click → clicked + "Clicked Email";
- bounce → bounced + "Bounced Email"; a hard bounce (type `bounce`, not `blocked`) suppresses
  the address; dropped → failed;
- spamreport → spam + "Marked Email as Spam" + suppression;
- unsubscribe / group_unsubscribe → unsubscribed; email consent revoked (source
  `unsubscribe_link`) and "Unsubscribed from Email" when that changed the consent.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from channels import ledger, metrics
from ingest.consents import ConsentUpdate, apply_consents
from ingest.events import NewEvent, store_events
from ingest.suppressions import suppress
from models import (
    Channel,
    ConsentSource,
    ConsentState,
    MessageStatus,
    Profile,
)
from models.base import utcnow

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP

STATUS = {
    "processed": MessageStatus.sent,
    "delivered": MessageStatus.delivered,
    "open": MessageStatus.opened,
    "click": MessageStatus.clicked,
    "bounce": MessageStatus.bounced,
    "dropped": MessageStatus.failed,
    "spamreport": MessageStatus.spam,
    "unsubscribe": MessageStatus.unsubscribed,
    "group_unsubscribe": MessageStatus.unsubscribed,
}
KEPT_DETAIL = ("event", "reason", "type", "status", "url", "useragent", "ip", "asm_group_id")


def verify(public_key: str | None, body: bytes, signature: str | None, timestamp: str | None):
    """True when SendGrid signed this body (any missing piece, or a malformed one, is False)."""
    if not (public_key and signature and timestamp):
        return False
    try:
        verifier = EventWebhook(public_key)
        return verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
    except (ValueError, TypeError, UnicodeDecodeError):
        return False


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _event_id(event: dict[str, Any]) -> str:
    if event.get("sg_event_id"):
        return f"sendgrid:{event['sg_event_id']}"
    raw = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    return f"sendgrid:sha256:{hashlib.sha256(raw).hexdigest()}"


async def _message_id(session: AsyncSession, workspace_id: uuid.UUID, event: dict[str, Any]):
    if found := _uuid(event.get("waymark_message_id")):
        return found
    sg_id = str(event.get("sg_message_id") or "").split(".", 1)[0]
    if sg_id:  # the request's id: its recipient tells the messages of a batch apart
        email = str(event.get("email") or "").strip() or None
        row = await ledger.find_by_provider_id(session, workspace_id, sg_id, email)
        return row.id if row else None
    return None


async def _profile_by_email(session, workspace_id, email: str) -> uuid.UUID | None:
    return await session.scalar(
        select(Profile.id).where(
            Profile.workspace_id == workspace_id, func.lower(Profile.email) == email.lower()
        )
    )


async def apply_event(
    session: AsyncSession, workspace_id: uuid.UUID, event: dict[str, Any]
) -> bool:
    """Apply one event; False when it was ignored (unknown kind) or seen before."""
    kind = str(event.get("event") or "")
    status = STATUS.get(kind)
    if status is None:
        return False
    stamp = event.get("timestamp")
    at = datetime.fromtimestamp(int(stamp), UTC) if isinstance(stamp, int | float) else utcnow()
    provider_event_id = _event_id(event)
    detail = {k: event[k] for k in KEPT_DETAIL if event.get(k) is not None}
    email = str(event.get("email") or "").strip().lower()
    message_id = await _message_id(session, workspace_id, event)
    profile_id: uuid.UUID | None = None
    if message_id is not None:
        recorded = await ledger.record_provider_event(
            session,
            workspace_id=workspace_id,
            message_id=message_id,
            status=status,
            occurred_at=at,
            detail=detail,
            provider_event_id=provider_event_id,
            provider_message_id=str(event.get("sg_message_id") or "").split(".", 1)[0] or None,
        )
        if recorded is None and await ledger.get_message(session, workspace_id, message_id):
            return False  # a replay
        profile_id = recorded.profile_id if recorded else None
    if profile_id is None and email:
        profile_id = await _profile_by_email(session, workspace_id, email)

    if kind == "bounce" and event.get("type", "bounce") != "blocked" and email:
        await suppress(session, workspace_id, Channel.email, email, "hard_bounce")
    if kind == "spamreport" and email:
        await suppress(session, workspace_id, Channel.email, email, "spam_complaint")

    metric: str | None = {
        "open": metrics.OPENED[Channel.email],
        "click": metrics.CLICKED[Channel.email],
        "bounce": metrics.BOUNCED[Channel.email],
        "spamreport": metrics.MARKED_SPAM,
    }.get(kind)
    if status == MessageStatus.unsubscribed and profile_id is not None:
        update = ConsentUpdate(
            profile_id, Channel.email, ConsentState.unsubscribed, ConsentSource.unsubscribe_link, at
        )
        if await apply_consents(session, workspace_id, [update]):
            metric = metrics.UNSUBSCRIBED[Channel.email]
    if metric and profile_id is not None:
        properties: dict[str, Any] = {"channel": "email", "provider": "sendgrid", **detail}
        if message_id is not None:
            properties["message_id"] = str(message_id)
        event_id = f"opened:{message_id}" if kind == "open" and message_id else provider_event_id
        new = NewEvent(profile_id, metric, event_id, at, properties, context={"source": "sendgrid"})
        await store_events(session, workspace_id, [new])
    return True


def _lock_order(event: dict[str, Any]) -> tuple[int, int]:
    """Events of messages with Waymark's id first, by that id (as UUIDs sort in PostgreSQL)."""
    found = _uuid(event.get("waymark_message_id"))
    return (0, found.int) if found is not None else (1, 0)


async def apply_events(
    session: AsyncSession, workspace_id: uuid.UUID, events: list[dict[str, Any]]
) -> int:
    """Apply a webhook's events in one transaction, message by message in id order (a
    message's own events in the order they came): each locks its message's row, and the send
    path's batch statements lock theirs in id order too (`id = ANY(...)` through the primary
    key), so the two never wait on each other in a cycle. In arrival order a request's
    `processed` events deadlocked with the outcome of a batch still being recorded
    (`bench.campaign`, worker killed and restarted)."""
    applied = 0
    for event in sorted((e for e in events if isinstance(e, dict)), key=_lock_order):
        applied += await apply_event(session, workspace_id, event)
    return applied
