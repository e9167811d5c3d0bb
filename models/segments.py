"""Segments: saved condition definitions, their materialized members and every entry and exit."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, tz_field, workspace_fk
from models.profile import profile_fk


class SegmentAction(enum.StrEnum):
    entered = "entered"
    exited = "exited"


def segment_fk(*, primary_key: bool = False) -> object:
    return Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("segments.id", ondelete="CASCADE"),
            nullable=False,
            primary_key=primary_key,
        )
    )


class Segment(SQLModel, table=True):
    """A dynamic group of profiles: `definition` is a condition (segments.Condition) as JSON."""

    __tablename__ = "segments"
    __table_args__ = (Index("uq_segments_name", "workspace_id", "name", unique=True),)

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    name: str = Field(max_length=255)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()
    last_refreshed_at: datetime | None = tz_field()
    member_count: int = Field(default=0, sa_type=BigInteger, nullable=False)


class SegmentMember(SQLModel, table=True):
    """A profile currently in a segment (read by "in segment S" conditions)."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_profile", "profile_id"),)

    segment_id: uuid.UUID = segment_fk(primary_key=True)
    profile_id: uuid.UUID = profile_fk(primary_key=True)
    workspace_id: uuid.UUID = workspace_fk(index=False)  # read with segment_id, never alone
    entered_at: datetime = created_at_field()


class SegmentMembershipChange(SQLModel, table=True):
    """An entry or exit. "Entered segment" flows start on entries; history charts read these."""

    __tablename__ = "segment_membership_changes"
    __table_args__ = (
        Index("ix_segment_membership_changes_segment", "segment_id", "occurred_at"),
        Index("ix_segment_membership_changes_profile", "profile_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    workspace_id: uuid.UUID = workspace_fk(index=False)
    segment_id: uuid.UUID = segment_fk()
    profile_id: uuid.UUID = profile_fk()
    action: SegmentAction = Field(sa_type=String(8))
    occurred_at: datetime = created_at_field()


__all__ = ["Segment", "SegmentAction", "SegmentMember", "SegmentMembershipChange"]
