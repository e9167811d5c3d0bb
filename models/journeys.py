"""Journeys: one row per customer trip through a flow (`journeys`, also the per-profile index of
active journeys the event router reads) and the log of step outcomes (`journey_steps`, the
source of per flow / version / step statistics).

No foreign key to the flow tables: a journey row outlives edits, and the flows migration is on a
parallel branch. Rows follow their profile (cascade)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, tz_field, workspace_fk


class JourneyStatus(enum.StrEnum):
    active = "active"
    completed = "completed"  # reached the end of a path
    removed = "removed"  # failed the flow filter, step deleted by an edit, restarted, flow deleted
    exited = "exited"  # an exit condition matched (order placed, page visited, custom event)


class StepOutcome(enum.StrEnum):
    entered = "entered"
    completed = "completed"
    skipped = "skipped"
    failed = "failed"


class Journey(SQLModel, table=True):
    __tablename__ = "journeys"
    __table_args__ = (
        # The router's index: the active journeys of a batch's profiles.
        Index(
            "ix_journeys_active_profile",
            "workspace_id",
            "profile_id",
            postgresql_where=text("status = 'active'"),
        ),
        # Cooldown: "not in this flow in the last N days".
        Index("ix_journeys_flow_profile", "flow_id", "profile_id", "started_at"),
    )

    id: uuid.UUID = Field(primary_key=True)  # the journey id
    workspace_id: uuid.UUID = workspace_fk(index=False)
    flow_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    flow_version: int = Field(sa_type=Integer)
    profile_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False
        )
    )
    workflow_id: str = Field(max_length=255)
    status: JourneyStatus = Field(default=JourneyStatus.active, sa_type=String(16))
    current_step: str | None = Field(default=None, max_length=64)
    started_at: datetime = created_at_field()
    ended_at: datetime | None = tz_field()
    end_reason: str | None = Field(default=None, max_length=255)


class JourneyStep(SQLModel, table=True):
    __tablename__ = "journey_steps"
    __table_args__ = (
        Index("ix_journey_steps_stats", "flow_id", "flow_version", "step_id", "outcome"),
        Index("ix_journey_steps_journey", "journey_id", "id"),
        Index("uq_journey_steps_key", "journey_id", "key", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    journey_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    workspace_id: uuid.UUID = workspace_fk(index=False)
    flow_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    flow_version: int = Field(sa_type=Integer)
    step_id: str = Field(max_length=64)
    outcome: StepOutcome = Field(sa_type=String(16))
    reason: str | None = Field(default=None, max_length=255)
    # Idempotency of `record_step` under activity retries: one row per (journey, key).
    key: str = Field(max_length=255)
    occurred_at: datetime = created_at_field()


__all__ = ["Journey", "JourneyStatus", "JourneyStep", "StepOutcome"]
