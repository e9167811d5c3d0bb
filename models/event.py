"""Events (named metrics a profile did) and the outbox that hands each stored event on."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Column, Identity, Index, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.base import created_at_field, jsonb_field, workspace_of_parent, workspace_pk
from models.profile import profile_of_row


class Event(SQLModel, table=True):
    """A metric a profile did ("Placed Order", "Viewed Page", ...), stored once per message id."""

    __tablename__ = "events"
    __table_args__ = (
        # Deduplication: one event per (workspace, messageId).
        Index("uq_events_message_id", "workspace_id", "message_id", unique=True),
        # Segment and flow conditions: "did M, in the last N days" per profile.
        Index(
            "ix_events_profile_metric_time", "workspace_id", "profile_id", "metric", "occurred_at"
        ),
        # Set evaluation over a whole workspace for one metric.
        Index("ix_events_metric_time", "workspace_id", "metric", "occurred_at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, Identity(always=False), primary_key=True),
    )
    workspace_id: uuid.UUID = workspace_of_parent()  # the profile's
    profile_id: uuid.UUID = profile_of_row()
    metric: str = Field(max_length=255)
    message_id: str = Field(max_length=255)
    occurred_at: datetime = created_at_field()
    received_at: datetime = created_at_field()
    value: Decimal | None = Field(default=None, sa_type=Numeric(18, 4))
    currency: str | None = Field(default=None, max_length=3)
    properties: dict = jsonb_field()
    context: dict = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )


class EventOutbox(SQLModel, table=True):
    """Events stored but not yet handed to the journey router. Written in the event's transaction,
    deleted by the dispatcher once routed: a row here is a delivery still owed."""

    __tablename__ = "event_outbox"

    # No foreign key (a check and a row lock on the event for every event stored): erasure
    # deletes a profile's outbox rows itself, and the dispatcher deletes a row whose event is
    # gone (a workspace deleted) without routing it.
    event_id: int = Field(sa_column=Column(BigInteger, primary_key=True))
    workspace_id: uuid.UUID = workspace_of_parent()
    created_at: datetime = created_at_field()


class Metric(SQLModel, table=True):
    """Every metric name a workspace has seen, with when it was first and last seen."""

    __tablename__ = "metrics"

    workspace_id: uuid.UUID = workspace_pk()
    name: str = Field(primary_key=True, max_length=255)
    first_seen_at: datetime = created_at_field()
    last_seen_at: datetime = created_at_field()


class ProcessedCall(SQLModel, table=True):
    """Message ids of tracking calls that are not events (identify, alias), so a replay of one
    changes nothing — events are deduplicated by their own unique index."""

    __tablename__ = "processed_calls"

    workspace_id: uuid.UUID = workspace_pk()
    message_id: str = Field(primary_key=True, max_length=255)
    received_at: datetime = created_at_field()
