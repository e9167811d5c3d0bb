"""The audience of one campaign message, snapshotted at send time (`campaign_recipients`).

One row per (message, profile): the path the profile belongs to (first path wins), when it is
due in its own time (`local_send_at`: local time groups, throttled waves, or a quiet-hours hold),
the batch that sends it (`batch_no`, read by the send activity) and what happened to it
(`status`, `reason`: the gate's skip reason, a failure, a hold). The workflow never carries this
list: it carries counts and batch ranges, and activities read rows by `batch_no`.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from models.base import workspace_fk
from models.profile import profile_fk


class RecipientStatus(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    skipped = "skipped"  # the gate said no (consent, suppression, smart sending, ...): `reason`
    held = "held"  # quiet hours: due again at `local_send_at`
    failed = "failed"


class CampaignRecipient(SQLModel, table=True):
    __tablename__ = "campaign_recipients"
    __table_args__ = (
        Index("ix_campaign_recipients_batch", "message_id", "batch_no"),
        Index("ix_campaign_recipients_profile", "profile_id"),
        # The next hold of a message (after every batch) and the held recipients now due.
        Index(
            "ix_campaign_recipients_held",
            "message_id",
            "local_send_at",
            postgresql_where=text("status = 'held'"),
        ),
    )

    message_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("campaign_messages.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    profile_id: uuid.UUID = profile_fk(primary_key=True)
    workspace_id: uuid.UUID = workspace_fk(index=False)
    path_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    local_send_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    batch_no: int = Field(sa_column=Column(Integer, nullable=False))
    status: RecipientStatus = Field(
        default=RecipientStatus.pending,
        sa_column=Column(String(16), nullable=False, server_default="pending"),
    )
    reason: str | None = Field(default=None, sa_column=Column(String(255)))
