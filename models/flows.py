"""Flows: the editable draft and status (`flows`), immutable published versions
(`flow_versions`) and the log of status changes (`flow_status_changes`).

The trigger columns of `flows` are copied from the live version, so the event router finds the
flows an event starts with one indexed lookup, without reading any definition.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, workspace_fk


class FlowStatus(enum.StrEnum):
    draft = "draft"  # never published, or taken back to draft: takes no one in
    live = "live"
    manual = "manual"  # live, but send steps wait in a review queue until released
    paused = "paused"  # journeys hold before their next step; no one new enters
    deleted = "deleted"  # journeys cancelled; restorable as paused


def flow_fk(*, primary_key: bool = False) -> object:
    return Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("flows.id", ondelete="CASCADE"),
            nullable=False,
            primary_key=primary_key,
        )
    )


class Flow(SQLModel, table=True):
    __tablename__ = "flows"
    __table_args__ = (
        Index("uq_flows_name", "workspace_id", "name", unique=True),
        Index("ix_flows_router", "workspace_id", "status", "trigger_type", "trigger_metric"),
    )

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    name: str = Field(max_length=255)
    description: str | None = Field(default=None, sa_type=Text)
    status: FlowStatus = Field(default=FlowStatus.draft, sa_type=String(16))
    draft: dict = Field(sa_column=Column(JSONB, nullable=False))  # the editable definition
    live_version: int | None = Field(default=None, sa_type=Integer)
    # Denormalized from the live version's trigger (None until published).
    trigger_type: str | None = Field(default=None, max_length=32)
    trigger_metric: str | None = Field(default=None, max_length=255)
    trigger_list_id: uuid.UUID | None = Field(default=None, index=True)
    trigger_segment_id: uuid.UUID | None = Field(default=None, index=True)
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()


class FlowVersion(SQLModel, table=True):
    """A published definition. Never updated: an edit of a live flow is a new version."""

    __tablename__ = "flow_versions"

    flow_id: uuid.UUID = flow_fk(primary_key=True)
    version: int = Field(primary_key=True, sa_type=Integer)
    workspace_id: uuid.UUID = workspace_fk(index=False)
    definition: dict = Field(sa_column=Column(JSONB, nullable=False))
    author: str = Field(max_length=255)  # API key name and id, or "cli"
    message: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_at_field()


class FlowStatusChange(SQLModel, table=True):
    __tablename__ = "flow_status_changes"
    __table_args__ = (Index("ix_flow_status_changes_flow", "flow_id", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    flow_id: uuid.UUID = flow_fk()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    author: str = Field(max_length=255)
    occurred_at: datetime = created_at_field()


__all__ = ["Flow", "FlowStatus", "FlowStatusChange", "FlowVersion"]
