"""Twilio webhooks: message status callbacks and inbound SMS / WhatsApp.

Both are verified with the SDK's `RequestValidator` (`X-Twilio-Signature`: HMAC over the full
public URL Twilio called plus the sorted form parameters) under the workspace's auth token.

Status callbacks are posted to the URL the send path gave Twilio,
`/webhooks/twilio/{workspace}/status?wm=<message id>`, so a message is found by its Waymark id
even when the send's answer (the Message SID) was never recorded — the unknown-outcome window
is reconciled this way. Each (SID, status) is applied once.

Inbound messages: the first word is the keyword. STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT
revoke consent for the channel it came in on (SMS, or WhatsApp for `whatsapp:` senders); START,
UNSTOP, JOIN grant it (source `keyword`). Every inbound message is stored as "Replied to SMS" /
"Replied to WhatsApp" with {keyword, body}, so segments and flows can use any keyword.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.request_validator import RequestValidator

from channels import ledger, metrics
from ingest.consents import ConsentUpdate, apply_consents
from ingest.events import NewEvent, store_events
from ingest.suppressions import suppress
from ingest.traits import normalize_phone
from models import Channel, ConsentSource, ConsentState, Message, MessageStatus
from models.base import utcnow

STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START = frozenset({"START", "UNSTOP", "JOIN"})
STATUS = {
    "sent": MessageStatus.sent,
    "delivered": MessageStatus.delivered,
    "undelivered": MessageStatus.failed,
    "failed": MessageStatus.failed,
    "read": MessageStatus.opened,  # WhatsApp read receipts
}
# Error codes that mean the number will never receive messages: suppress it.
# 30003 unreachable handset, 30005 unknown destination, 30006 landline or unreachable carrier,
# 21211 invalid 'To' number, 21614 'To' is not a mobile number.
PERMANENT_ERRORS = frozenset({"30003", "30005", "30006", "21211", "21614"})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# An unsubscribe by keyword is credited to the last message sent on the channel within this.
UNSUBSCRIBE_ATTRIBUTION = timedelta(days=5)


def verify(auth_token: str | None, url: str, params: dict[str, Any], signature: str | None):
    if not (auth_token and signature):
        return False
    return RequestValidator(auth_token).validate(url, params, signature)


def _channel_and_phone(address: str) -> tuple[Channel, str]:
    if address.startswith("whatsapp:"):
        return Channel.whatsapp, address.removeprefix("whatsapp:")
    return Channel.sms, address


def keyword_of(body: str) -> str:
    words = body.strip().split()
    return "".join(ch for ch in words[0] if ch.isalnum()).upper() if words else ""


async def apply_status(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    params: dict[str, Any],
    waymark_message_id: str | None,
) -> bool:
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    twilio_status = str(params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    status = STATUS.get(twilio_status)
    message_id = None
    if waymark_message_id:
        try:
            message_id = uuid.UUID(waymark_message_id)
        except ValueError:
            message_id = None
    if message_id is None and sid:
        row = await ledger.find_by_provider_id(session, workspace_id, sid)
        message_id = row.id if row else None
    if status is None or message_id is None:
        return False
    error_code = str(params.get("ErrorCode") or "") or None
    detail = {"twilio_status": twilio_status, "error_code": error_code}
    detail = {k: v for k, v in detail.items() if v}
    recorded = await ledger.record_provider_event(
        session,
        workspace_id=workspace_id,
        message_id=message_id,
        status=status,
        occurred_at=utcnow(),
        detail=detail,
        provider_event_id=f"twilio:{sid}:{twilio_status}",
        provider_message_id=sid or None,
    )
    if recorded is None:
        return False
    if status == MessageStatus.failed:
        if error_code in PERMANENT_ERRORS and recorded.to_address:
            await suppress(
                session, workspace_id, recorded.channel, recorded.to_address, "invalid_number"
            )
        if metric := metrics.BOUNCED.get(recorded.channel):
            event = NewEvent(
                recorded.profile_id,
                metric,
                f"twilio:{sid}:{twilio_status}",
                utcnow(),
                {"message_id": str(message_id), "channel": recorded.channel.value, **detail},
                context={"source": "twilio"},
            )
            await store_events(session, workspace_id, [event])
    return True


_PROFILE_BY_PHONE = text(
    """
    WITH found AS (
        SELECT id FROM profiles WHERE workspace_id = :ws AND phone = :phone
    ), created AS (
        INSERT INTO profiles (id, workspace_id, phone, properties, created_at, updated_at)
        SELECT gen_random_uuid(), :ws, :phone, '{}', now(), now()
        WHERE NOT EXISTS (SELECT 1 FROM found)
        ON CONFLICT (workspace_id, phone) WHERE phone IS NOT NULL DO NOTHING
        RETURNING id
    )
    SELECT id FROM found UNION ALL SELECT id FROM created
    """
)


async def _profile_for_phone(session: AsyncSession, workspace_id: uuid.UUID, phone: str):
    """The profile with this phone; a new one when nobody has it (e.g. JOIN from a stranger)."""
    params = {"ws": workspace_id, "phone": phone}
    found = (await session.execute(_PROFILE_BY_PHONE, params)).first()
    if found is None:  # created concurrently by another request
        found = (await session.execute(_PROFILE_BY_PHONE, params)).first()
    return found[0]


async def apply_inbound(
    session: AsyncSession, workspace_id: uuid.UUID, params: dict[str, Any]
) -> str | None:
    """Apply an inbound message; returns its keyword (None when not from a usable number)."""
    channel, raw_phone = _channel_and_phone(str(params.get("From") or ""))
    try:
        phone = normalize_phone(raw_phone)
    except ValueError:
        return None
    body = str(params.get("Body") or "")
    sid = str(params.get("MessageSid") or params.get("SmsSid") or "")
    keyword = keyword_of(body)
    profile_id = await _profile_for_phone(session, workspace_id, phone)
    now = utcnow()
    events = [
        NewEvent(
            profile_id,
            metrics.REPLIED[channel],
            f"twilio:inbound:{sid}" if sid else f"twilio:inbound:{uuid.uuid4()}",
            now,
            {"keyword": keyword, "body": body, "channel": channel.value},
            context={"source": "twilio"},
        )
    ]
    state = ConsentState.unsubscribed if keyword in STOP else None
    state = ConsentState.subscribed if keyword in START else state
    if state is not None:
        update = ConsentUpdate(profile_id, channel, state, ConsentSource.keyword, now)
        changed = await apply_consents(session, workspace_id, [update])
        if changed and state == ConsentState.unsubscribed:
            await _credit_unsubscribe(session, workspace_id, profile_id, channel, sid, now)
            events.append(
                NewEvent(
                    profile_id,
                    metrics.UNSUBSCRIBED[channel],
                    f"twilio:unsubscribe:{sid or uuid.uuid4()}",
                    now,
                    {"keyword": keyword, "channel": channel.value},
                    context={"source": "twilio"},
                )
            )
    await store_events(session, workspace_id, events)
    return keyword


async def _credit_unsubscribe(session, workspace_id, profile_id, channel, sid, now) -> None:
    """Mark the last message sent on the channel (recently) as the one unsubscribed from."""
    last = await session.scalar(
        select(Message.id)
        .where(
            Message.workspace_id == workspace_id,
            Message.profile_id == profile_id,
            Message.channel == channel,
            Message.sent_at > now - UNSUBSCRIBE_ATTRIBUTION,
        )
        .order_by(Message.sent_at.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    if last is not None:
        await ledger.record_provider_event(
            session,
            workspace_id=workspace_id,
            message_id=last,
            status=MessageStatus.unsubscribed,
            occurred_at=now,
            detail={"source": "keyword"},
            provider_event_id=f"twilio:{sid}:unsubscribe" if sid else None,
        )
