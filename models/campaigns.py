"""Omnichannel campaigns: a campaign, its paths (audiences) and their scheduled messages.

A campaign has up to 10 paths, ordered by `position`; a profile whose audiences overlap gets the
messages of the first path (lowest `position`) that includes it. Each message belongs to one path
and has its own channel, content, sender, send time and strategy; at most 30 per campaign.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, jsonb_field, tz_field, workspace_fk
from models.profile import Channel

MAX_PATHS = 10
MAX_MESSAGES = 30


class PassedLocalTime(enum.StrEnum):
    """Local-time sends where the send time has already passed in the recipient's zone."""

    send_now = "send_now"
    next_day = "next_day"


class SendStrategy(enum.StrEnum):
    fixed = "fixed"  # everyone at send_at
    throttled = "throttled"  # throttle_percent of the path's recipients per hour from send_at


class CampaignMessageStatus(enum.StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    sending = "sending"
    sent = "sent"
    cancelled = "cancelled"
    cancelled_during_send = "cancelled_during_send"


def _uuid_array() -> object:
    return Field(
        default_factory=list,
        sa_column=Column(ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"),
    )


def _fk(table: str) -> object:
    return Field(
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey(f"{table}.id", ondelete="CASCADE"), nullable=False
        )
    )


class Campaign(SQLModel, table=True):
    """Details (name, tag, description, color) are editable at any time; send settings
    (timezone, use_recipient_local_time, passed_local_time) only while no message is scheduled
    and never again once `settings_locked_forever` (a message has been sent)."""

    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_workspace_created", "workspace_id", "created_at"),)

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    name: str = Field(max_length=255)
    tag: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    color: str | None = Field(default=None, max_length=16)
    timezone: str = Field(default="UTC", max_length=64)
    use_recipient_local_time: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default="false")
    )
    passed_local_time: PassedLocalTime = Field(
        default=PassedLocalTime.next_day,
        sa_column=Column(String(16), nullable=False, server_default="next_day"),
    )
    settings_locked_forever: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default="false")
    )
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()


class CampaignPath(SQLModel, table=True):
    """One audience of a campaign: include lists/segments minus exclude lists/segments."""

    __tablename__ = "campaign_paths"
    __table_args__ = (Index("ix_campaign_paths_campaign", "campaign_id", "position"),)

    id: uuid.UUID = id_field()
    campaign_id: uuid.UUID = _fk("campaigns")
    workspace_id: uuid.UUID = workspace_fk(index=False)
    position: int = Field(sa_column=Column(Integer, nullable=False))
    name: str | None = Field(default=None, max_length=255)
    include_lists: list[uuid.UUID] = _uuid_array()
    include_segments: list[uuid.UUID] = _uuid_array()
    exclude_lists: list[uuid.UUID] = _uuid_array()
    exclude_segments: list[uuid.UUID] = _uuid_array()


class CampaignMessage(SQLModel, table=True):
    """A message of a path. `sender`: `{from_email, from_name, reply_to}` or `{from_number}`;
    `utm`: `{utm_source, utm_medium, utm_campaign, ...}`."""

    __tablename__ = "campaign_messages"
    __table_args__ = (
        Index("ix_campaign_messages_path", "path_id", "send_at"),
        Index("ix_campaign_messages_campaign", "campaign_id"),
    )

    id: uuid.UUID = id_field()
    campaign_id: uuid.UUID = _fk("campaigns")
    path_id: uuid.UUID = _fk("campaign_paths")
    workspace_id: uuid.UUID = workspace_fk(index=False)
    name: str = Field(max_length=255)
    tag: str | None = Field(default=None, max_length=100)
    channel: Channel = Field(sa_type=String(16))
    template_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(UUID(as_uuid=True), ForeignKey("templates.id", ondelete="SET NULL")),
    )
    sender: dict = jsonb_field()
    send_at: datetime | None = tz_field()
    smart_sending: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default="true")
    )
    utm: dict = jsonb_field()
    strategy: SendStrategy = Field(
        default=SendStrategy.fixed,
        sa_column=Column(String(16), nullable=False, server_default="fixed"),
    )
    throttle_percent: int | None = Field(default=None, sa_column=Column(Integer))
    status: CampaignMessageStatus = Field(
        default=CampaignMessageStatus.draft,
        sa_column=Column(String(32), nullable=False, server_default="draft"),
    )
    status_reason: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()
    scheduled_at: datetime | None = tz_field()
    started_at: datetime | None = tz_field()
    finished_at: datetime | None = tz_field()


__all__ = [
    "MAX_MESSAGES",
    "MAX_PATHS",
    "Campaign",
    "CampaignMessage",
    "CampaignMessageStatus",
    "CampaignPath",
    "PassedLocalTime",
    "SendStrategy",
]
