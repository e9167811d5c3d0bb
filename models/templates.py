"""Message templates: one per channel, rendered per profile by `channels.render`."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, workspace_fk
from models.profile import Channel


class Template(SQLModel, table=True):
    """Email parts (subject, preheader, html, text), or `body` for SMS, WhatsApp and push.

    An email's `text` may stay empty: it is then derived from the rendered HTML."""

    __tablename__ = "templates"
    __table_args__ = (Index("uq_templates_name", "workspace_id", "name", unique=True),)

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    name: str = Field(max_length=255)
    channel: Channel = Field(sa_type=String(16))
    subject: str | None = Field(default=None, sa_type=Text)
    preheader: str | None = Field(default=None, sa_type=Text)
    html: str | None = Field(default=None, sa_type=Text)
    text: str | None = Field(default=None, sa_type=Text)
    body: str | None = Field(default=None, sa_type=Text)
    push_title: str | None = Field(default=None, sa_type=Text)
    push_url: str | None = Field(default=None, sa_type=Text)
    push_icon: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()


__all__ = ["Template"]
