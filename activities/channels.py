"""Channel activities: send one message (journeys) or one message to many profiles (campaigns).

Both are safe to retry: every message has a ledger row under its idempotency key, and a key
whose message was sent, failed or skipped answers that outcome without calling the provider.

A held message (SMS quiet hours) answers `held` with `hold_until`: the calling workflow sleeps
until then (`workflow.sleep`) and calls again with the same key.

Retries. `ProviderUnavailable` (429, 5xx, network) hands the message back to `queued` and raises,
so Temporal retries it. A message found in `sending` (a worker died between the provider call
and recording its answer) is the one window where the outcome is unknown: see `channels.send`.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.messages import SourceType
from models.profile import Channel


class SendOutcome(enum.StrEnum):
    sent = "sent"  # handed to the provider (or further: delivered, opened, ...)
    failed = "failed"  # refused by the provider, template error, no sender, outcome unknown
    skipped = "skipped"  # the gate said no: `skip_reason`
    held = "held"  # quiet hours: call again at `hold_until` with the same key


class Sender(BaseModel):
    """Overrides of the workspace's default sender (channel settings)."""

    from_email: str | None = None
    from_name: str | None = None
    reply_to: str | None = None


class SendMessageInput(BaseModel):
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    channel: Channel
    template_id: uuid.UUID
    # e.g. f"journey:{workflow_id}:{step_id}" — one message per key, ever.
    idempotency_key: str = Field(min_length=1, max_length=512)
    source_type: SourceType = SourceType.flow
    flow_id: str | None = None
    flow_version: int | None = None
    step_id: str | None = None
    journey_id: str | None = None
    campaign_id: uuid.UUID | None = None
    campaign_message_id: uuid.UUID | None = None
    transactional: bool = False
    smart_sending: bool = True
    utm: dict[str, str] = Field(default_factory=dict)
    # The trigger event as templates see it (`channels.render.event_context`).
    event: dict[str, Any] | None = None
    sender: Sender = Field(default_factory=Sender)
    # The caller's clock (a journey's `workflow.now()`), as `SendMessagesInput.now`: the gate
    # and the ledger's stamps use the later of it and the wall clock. None: the wall clock.
    now: datetime | None = None


class SendMessageResult(BaseModel):
    outcome: SendOutcome
    message_id: uuid.UUID | None = None  # None only when the profile no longer exists
    status: str | None = None  # the ledger status (sent, delivered, skipped, ...)
    skip_reason: str | None = None
    hold_until: datetime | None = None
    provider_message_id: str | None = None
    error: str | None = None
    # True when an earlier attempt had already settled this key (nothing was sent now).
    replayed: bool = False


class SendMessagesInput(BaseModel):
    """One template to many profiles (a campaign message's batch, up to a few thousand)."""

    workspace_id: uuid.UUID
    channel: Channel
    template_id: uuid.UUID
    profile_ids: list[uuid.UUID]
    # The key of each recipient's message is f"{idempotency_prefix}:{profile_id}".
    idempotency_prefix: str = Field(min_length=1, max_length=400)
    source_type: SourceType = SourceType.campaign
    campaign_id: uuid.UUID | None = None
    campaign_message_id: uuid.UUID | None = None
    flow_id: str | None = None
    flow_version: int | None = None
    step_id: str | None = None
    transactional: bool = False
    smart_sending: bool = True
    utm: dict[str, str] = Field(default_factory=dict)
    sender: Sender = Field(default_factory=Sender)
    # The time the send is for, when the caller's clock may run ahead of the wall clock (a
    # campaign workflow on Temporal's time-skipping test server): the gate (quiet hours, Smart
    # Sending) and the ledger's stamps use the later of the two. None: the wall clock.
    now: datetime | None = None


class HeldRecipient(BaseModel):
    profile_id: uuid.UUID
    hold_until: datetime


class SendMessagesResult(BaseModel):
    sent: int = 0
    failed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)  # reason -> count
    held: list[HeldRecipient] = Field(default_factory=list)
    replayed: int = 0  # settled by an earlier attempt, counted above too
    missing: int = 0  # profiles no longer in the workspace


# How long a retry waits for webhooks to settle a message whose outcome is unknown.
PENDING_RETRY_DELAY = timedelta(seconds=60)


class SendActivities:
    """`channels.send` is imported when an activity runs (the workflow sandbox imports this
    module for its method references; keep the top light)."""

    def __init__(self, engine: AsyncEngine, settings: Any) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn
    async def send_message(self, input: SendMessageInput) -> SendMessageResult:
        from channels.send import OutcomePending, send_one

        try:
            return await send_one(self.engine, self.settings, input)
        except OutcomePending as exc:
            raise ApplicationError(
                str(exc), type="OutcomePending", next_retry_delay=PENDING_RETRY_DELAY
            ) from None

    @activity.defn
    async def send_messages(self, input: SendMessagesInput) -> SendMessagesResult:
        from channels.send import OutcomePending, send_many

        try:
            return await send_many(self.engine, self.settings, input, heartbeat=activity.heartbeat)
        except OutcomePending as exc:
            raise ApplicationError(
                str(exc), type="OutcomePending", next_retry_delay=PENDING_RETRY_DELAY
            ) from None
