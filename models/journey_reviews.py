"""The review queue of flows in status `manual`: one row per send step a journey holds until a
person releases it through the API (`api/routes/flow_reviews.py`) or discards it.

A row is written by the journey (`JourneyActivities.register_review`) only while its flow is
manual, and is unique per (journey, step): an activity retry finds its row again. `released`
and `discarded` are final; a journey that leaves while its send waits (exit, flow deleted, its
step removed by a new version) discards its row with that reason.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, String
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, tz_field, workspace_fk


class ReviewStatus(enum.StrEnum):
    waiting = "waiting"
    released = "released"  # the send went (or goes) out
    discarded = "discarded"  # the journey was removed (by the API or because it left)


def _fk(target: str) -> object:
    return Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey(target, ondelete="CASCADE"), nullable=False)
    )


class JourneyReview(SQLModel, table=True):
    __tablename__ = "journey_reviews"
    __table_args__ = (
        # The queue of a flow (optionally one step), oldest first.
        Index("ix_journey_reviews_queue", "flow_id", "status", "created_at", "id"),
        Index("uq_journey_reviews_step", "journey_id", "step_id", unique=True),
        # A profile's rows: the FK cascade when a merge or an erasure deletes a profile.
        Index("ix_journey_reviews_profile", "profile_id"),
    )

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    flow_id: uuid.UUID = _fk("flows.id")
    flow_version: int = Field(sa_type=Integer)
    step_id: str = Field(max_length=64)
    journey_id: uuid.UUID = _fk("journeys.id")
    profile_id: uuid.UUID = _fk("profiles.id")
    channel: str = Field(max_length=16)
    template_id: uuid.UUID
    status: ReviewStatus = Field(default=ReviewStatus.waiting, sa_type=String(16))
    reason: str | None = Field(default=None, max_length=255)  # why it was discarded
    decided_by: str | None = Field(default=None, max_length=255)  # API key name (id)
    created_at: datetime = created_at_field()
    decided_at: datetime | None = tz_field()


__all__ = ["JourneyReview", "ReviewStatus"]
