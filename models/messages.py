"""The message ledger: one row per message (sent, skipped, failed, held) and its status history.

A message row is created by its idempotency key before anything else happens, so a retried send
finds it and never calls the provider twice (see `channels.send`). Provider webhooks find rows
by `provider_message_id` or by the Waymark message id they carry.

Rendered content is kept compactly: `content` is the zlib-compressed JSON of every rendered part
(subject, preheader, html, text, body, push title/url) exactly as handed to the provider, and
`content_sha256` its hash. An email of the same copy for every recipient of a send (a template
that reads nothing of the recipient but, maybe, its own unsubscribe and preference links) keeps
its content once instead, in `message_contents`: the content with each recipient's values
as tags, which `content_id` references (and `content_sha256` is then that content's hash) and
`channels.compose.message_content` fills in again from the message's own ids (a signed URL is a
function of the workspace's key and the ids, so nothing per recipient needs storing). That row
holds nothing of any recipient, and stays when a profile is erased. A retention job may null
`content` later and keep the hash (proof of what was sent).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from models.base import (
    created_at_field,
    id_field,
    jsonb_field,
    tz_field,
    workspace_fk,
    workspace_of_parent,
)
from models.profile import Channel, profile_of_row


class MessageStatus(enum.StrEnum):
    queued = "queued"  # created; not yet handed to a provider (or held for quiet hours)
    sending = "sending"  # committed just before the provider call: the unknown-outcome window
    sent = "sent"
    delivered = "delivered"
    opened = "opened"
    clicked = "clicked"
    bounced = "bounced"
    failed = "failed"
    spam = "spam"
    unsubscribed = "unsubscribed"
    skipped = "skipped"


# How far along a message is. A provider or engagement event only replaces a status of the
# same or a lower rank, so webhooks arriving out of order ("delivered" after "opened") never move
# a message back. `failed` and `delivered` share a rank: a delivery report settles a message
# failed as "outcome unknown", and a carrier failure report follows a "sent". `skipped` is final.
STATUS_RANK: dict[MessageStatus, int] = {
    MessageStatus.queued: 0,
    MessageStatus.sending: 1,
    MessageStatus.sent: 2,
    MessageStatus.failed: 3,
    MessageStatus.delivered: 3,
    MessageStatus.bounced: 4,
    MessageStatus.opened: 5,
    MessageStatus.clicked: 6,
    MessageStatus.spam: 7,
    MessageStatus.unsubscribed: 8,
    MessageStatus.skipped: 99,
}


class SourceType(enum.StrEnum):
    flow = "flow"
    campaign = "campaign"
    transactional = "transactional"


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        # Idempotency: one message per key in a workspace (journey run + step, campaign
        # message + profile, ...).
        Index("uq_messages_idempotency_key", "workspace_id", "idempotency_key", unique=True),
        # Webhooks: provider id -> message.
        Index(
            "ix_messages_provider_message_id",
            "workspace_id",
            "provider_message_id",
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        # Smart Sending: "was this profile sent a marketing message on this channel since T?"
        Index(
            "ix_messages_smart_sending",
            "workspace_id",
            "profile_id",
            "channel",
            "sent_at",
            postgresql_where=text("NOT transactional AND sent_at IS NOT NULL"),
        ),
        # Erasure, merge and a profile's message history.
        Index("ix_messages_profile_created", "profile_id", "created_at"),
        # Metrics per flow step and per campaign message.
        Index(
            "ix_messages_flow_step",
            "workspace_id",
            "flow_id",
            "step_id",
            postgresql_where=text("flow_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_campaign_message",
            "workspace_id",
            "campaign_message_id",
            postgresql_where=text("campaign_message_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_of_parent()  # the profile's
    profile_id: uuid.UUID = profile_of_row()
    channel: Channel = Field(sa_type=String(16))
    source_type: SourceType = Field(sa_type=String(16))
    flow_id: str | None = Field(default=None, max_length=255)
    flow_version: int | None = None
    step_id: str | None = Field(default=None, max_length=255)
    journey_id: str | None = Field(default=None, max_length=255)
    campaign_id: uuid.UUID | None = Field(default=None, sa_type=UUID(as_uuid=True))
    campaign_message_id: uuid.UUID | None = Field(default=None, sa_type=UUID(as_uuid=True))
    template_id: uuid.UUID | None = Field(default=None, sa_type=UUID(as_uuid=True))
    idempotency_key: str = Field(max_length=512)
    transactional: bool = Field(default=False, sa_type=Boolean)
    status: MessageStatus = Field(default=MessageStatus.queued, sa_type=String(16))
    skip_reason: str | None = Field(default=None, max_length=64)
    hold_until: datetime | None = tz_field()
    to_address: str | None = Field(default=None, max_length=2048)
    subject: str | None = Field(default=None, sa_type=Text)
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    content_sha256: str | None = Field(default=None, max_length=64)
    # A `message_contents` row written in the claim's transaction, before the message; no
    # foreign key (a check and a row lock on that one row for every message of a send): the
    # contents go only with their workspace, as its messages do.
    content_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(UUID(as_uuid=True), nullable=True)
    )
    provider: str | None = Field(default=None, max_length=32)
    provider_message_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = created_at_field()
    sending_at: datetime | None = tz_field()
    sent_at: datetime | None = tz_field()
    delivered_at: datetime | None = tz_field()
    opened_at: datetime | None = tz_field()
    clicked_at: datetime | None = tz_field()
    bounced_at: datetime | None = tz_field()
    failed_at: datetime | None = tz_field()
    error: str | None = Field(default=None, sa_type=Text)


class MessageContent(SQLModel, table=True):
    """Content shared by the messages of one send (see the module doc): `content` as on a
    message, the recipients' values (links, message token) as tags; its id is derived from the
    workspace and `content_sha256`, so a send stores it once however many batches reference
    it."""

    __tablename__ = "message_contents"

    id: uuid.UUID = Field(primary_key=True)
    workspace_id: uuid.UUID = workspace_fk()
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    content_sha256: str = Field(max_length=64)
    created_at: datetime = created_at_field()


class MessageEvent(SQLModel, table=True):
    """A message's status history: every transition, engagement and provider event but the
    send path's claim and the provider's acceptance, which the row keeps (`sending_at`;
    `sent_at` and `provider_message_id`): see `channels.ledger`."""

    __tablename__ = "message_events"
    __table_args__ = (
        Index("ix_message_events_message", "message_id", "occurred_at"),
        # Webhook replays: a provider event (sg_event_id, Twilio sid+status) is stored once.
        Index(
            "uq_message_events_provider_event",
            "workspace_id",
            "provider_event_id",
            unique=True,
            postgresql_where=text("provider_event_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, Identity(always=False), primary_key=True),
    )
    message_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
        )
    )
    workspace_id: uuid.UUID = workspace_of_parent()  # the message's
    status: str = Field(max_length=32)
    occurred_at: datetime = created_at_field()
    detail: dict = jsonb_field()
    provider_event_id: str | None = Field(default=None, max_length=255)


__all__ = [
    "Message",
    "MessageContent",
    "MessageEvent",
    "MessageStatus",
    "STATUS_RANK",
    "SourceType",
]
