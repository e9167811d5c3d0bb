"""List joins and segment entries owed to the flows they trigger (the membership outbox).

Rows are written by PostgreSQL triggers on `list_membership_changes` and
`segment_membership_changes` (migration 0014), in the transaction that logged the change, one
row per change and per live (or manual) flow whose trigger is that list or segment at that
moment — so only joins and entries after a flow went live reach it, and a committed change is
never lost. The outbox dispatcher (`ingest/outbox.py`) claims rows with `FOR UPDATE SKIP LOCKED`,
hands them to the journey router and deletes them in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Identity, String
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, tz_field
from models.profile import profile_fk


class MembershipOutbox(SQLModel, table=True):
    __tablename__ = "membership_outbox"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, Identity(always=False), primary_key=True),
    )
    workspace_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    flow_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey("flows.id", ondelete="CASCADE"), nullable=False
        )
    )
    profile_id: uuid.UUID = profile_fk()
    trigger_type: str = Field(sa_type=String(32))  # list_joined | segment_entered
    # The list or segment (no foreign key: a row of a deleted one is dropped when routed).
    list_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    segment_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    # `list_membership_changes.id` or `segment_membership_changes.id`: the journey's key.
    change_id: int = Field(sa_type=BigInteger)
    source: str | None = Field(default=None, sa_type=String(32))  # a list join's source
    occurred_at: datetime = tz_field(nullable=False)
    created_at: datetime = created_at_field()


__all__ = ["MembershipOutbox"]
