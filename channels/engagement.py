"""Opens, clicks and unsubscribes from Waymark's own tracking links: written to the message ledger
and as profile events (segments, flow exits and revenue attribution read the events).

Which profile events are kept:
- Opens: the first open of a message only (event message id `opened:{message_id}`, deduplicated
  by `store_events`), so "opened email N times" counts messages, not pixel loads that image
  proxies and re-reads multiply. The ledger keeps every open in the message's history.
- Clicks: every click (`clicked:{message_id}:{uuid}`), with the URL.
- Unsubscribes: one event per actual consent change (a repeated one-click POST changes nothing
  and writes nothing).
Each event carries the message's flow / step / campaign / template ids when the ledger has it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channels import ledger, metrics
from ingest.consents import ConsentUpdate, apply_consents
from ingest.events import NewEvent, store_events
from models import Channel, ConsentSource, ConsentState, Profile
from models.base import utcnow
from models.messages import Message

Kind = Literal["opened", "clicked", "unsubscribed"]
_METRICS = {
    "opened": metrics.OPENED,
    "clicked": metrics.CLICKED,
    "unsubscribed": metrics.UNSUBSCRIBED,
}


async def profile_exists(session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID):
    found = await session.scalar(
        select(Profile.id).where(Profile.id == profile_id, Profile.workspace_id == workspace_id)
    )
    return found is not None


async def _message_properties(
    session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
) -> dict[str, Any]:
    row = (
        await session.execute(
            select(
                Message.flow_id,
                Message.step_id,
                Message.campaign_id,
                Message.campaign_message_id,
                Message.template_id,
                Message.subject,
            ).where(Message.id == message_id, Message.workspace_id == workspace_id)
        )
    ).first()
    if row is None:
        return {}
    return {k: str(v) for k, v in row._mapping.items() if v is not None}


def _event_id(kind: Kind, channel: Channel, message_id: uuid.UUID | None) -> str:
    if kind == "opened" and message_id is not None:
        return f"opened:{message_id}"
    return f"{kind}:{channel.value}:{message_id or '-'}:{uuid.uuid4()}"


async def record(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID | None,
    profile_id: uuid.UUID,
    channel: Channel,
    kind: Kind,
    detail: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> bool:
    """Write the engagement to the ledger (when there is a message) and as a profile event.
    False when the profile is not in the workspace (erased since): nothing is written.
    The caller commits."""
    channel = Channel(channel)
    metric = _METRICS[kind].get(channel)
    if metric is None:
        raise ValueError(f"no {kind} metric for the {channel.value} channel")
    if not await profile_exists(session, workspace_id, profile_id):
        return False
    at = occurred_at or utcnow()
    detail = dict(detail or {})
    properties: dict[str, Any] = {"channel": channel.value, **detail}
    if message_id is not None:
        await ledger.record_engagement(session, workspace_id, message_id, kind, at, detail)
        properties |= {"message_id": str(message_id)}
        properties |= await _message_properties(session, workspace_id, message_id)
    event = NewEvent(
        profile_id=profile_id,
        metric=metric,
        message_id=_event_id(kind, channel, message_id),
        occurred_at=at,
        properties=properties,
        context={"source": "waymark_link"},
    )
    await store_events(session, workspace_id, [event])
    return True


async def set_consent(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    profile_id: uuid.UUID,
    channel: Channel,
    state: ConsentState,
    *,
    message_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """A consent change from an unsubscribe link or the preference page; True when the state
    changed. Unsubscribing (source `unsubscribe_link`) also writes "Unsubscribed from …" and
    marks the message unsubscribed in the ledger; re-subscribing is recorded with source `form`.
    Idempotent: the same state again changes and writes nothing. The caller commits."""
    source = ConsentSource.unsubscribe_link
    if state == ConsentState.subscribed:
        source = ConsentSource.form
    update = ConsentUpdate(profile_id, Channel(channel), state, source)
    changed = await apply_consents(session, workspace_id, [update]) > 0
    if changed and state == ConsentState.unsubscribed:
        await record(session, workspace_id, message_id, profile_id, channel, "unsubscribed", detail)
    return changed
