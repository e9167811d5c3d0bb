"""Column helpers shared by every table: UUID keys, timestamptz, JSONB, workspace scoping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def id_field() -> Any:
    return Field(default_factory=uuid.uuid4, primary_key=True)


def workspace_of_parent() -> Any:
    """`workspace_id` of a high-volume row that goes with its workspace through a parent whose
    foreign key cascades (an event with its profile, a message with its profile, a history
    entry with its message), written from that parent's workspace: no foreign key of its own,
    so appending a row checks nothing more (the send path writes five such rows per message,
    and each check is an index probe and a row lock on the workspace)."""
    return Field(sa_column=Column(UUID(as_uuid=True), nullable=False))


def workspace_fk(*, index: bool = True) -> Any:
    """`workspace_id` of a row that belongs to one workspace; rows go with their workspace.

    `index=False` where a composite index already starts with `workspace_id`."""
    return Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
            index=index,
        )
    )


def workspace_pk() -> Any:
    """`workspace_id` as the first column of a composite primary key."""
    return Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("workspaces.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )


def created_at_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_column_kwargs={"server_default": func.now()},
        sa_type=DateTime(timezone=True),
        nullable=False,
    )


def tz_field(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable, index=index)


def jsonb_field(default_factory: Any = dict) -> Any:
    return Field(
        default_factory=default_factory,
        sa_column=Column(JSONB, nullable=False, server_default="{}"),
    )
