"""Channel credentials (encrypted at rest), the workspaces' VAPID keys and the local outbox."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, jsonb_field, tz_field, workspace_fk


def _workspace_pk() -> Column:
    return Column(
        UUID(as_uuid=True),
        ForeignKey("workspaces.id", ondelete="CASCADE"),
        primary_key=True,
    )


class ChannelCredential(SQLModel, table=True):
    """A workspace's provider account for one channel. No row: the channel is in local mode.

    `secret` is a Fernet token (see channels/credentials.py); `config` holds only what may be
    shown (from address, from number, messaging service sid, account sid, subject)."""

    __tablename__ = "channel_credentials"

    workspace_id: uuid.UUID = Field(sa_column=_workspace_pk())
    channel: str = Field(sa_column=Column(String(16), primary_key=True))
    provider: str = Field(max_length=32)
    secret: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    config: dict = jsonb_field()
    updated_at: datetime = created_at_field()


class VapidKey(SQLModel, table=True):
    """A workspace's VAPID key pair: browsers subscribe with the public key, pushes are signed
    with the private one (a PEM, encrypted like credentials). One per workspace."""

    __tablename__ = "vapid_keys"

    workspace_id: uuid.UUID = Field(sa_column=_workspace_pk())
    public_key: str = Field(max_length=128)  # base64url, uncompressed P-256 point
    private_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = created_at_field()
    rotated_at: datetime | None = tz_field()


class LocalOutboxMessage(SQLModel, table=True):
    """A message a workspace in local mode "sent": rendered and kept for a developer to read."""

    __tablename__ = "local_outbox"
    __table_args__ = (
        Index("ix_local_outbox_workspace_created", "workspace_id", "created_at"),
        Index("ix_local_outbox_workspace_to", "workspace_id", "to"),
    )

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    message_id: uuid.UUID = Field(unique=True)
    channel: str = Field(max_length=16)
    to: str = Field(sa_column=Column(Text, nullable=False))
    profile_id: uuid.UUID | None = Field(default=None)
    subject: str | None = Field(default=None, sa_column=Column(Text))
    html: str | None = Field(default=None, sa_column=Column(Text))
    text: str | None = Field(default=None, sa_column=Column(Text))
    payload: dict = jsonb_field()
    created_at: datetime = created_at_field()
