"""Static lists and their members, with every join and leave recorded."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, workspace_fk
from models.profile import profile_fk


class ListAction(enum.StrEnum):
    joined = "joined"
    left = "left"


def list_fk(*, primary_key: bool = False) -> object:
    return Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("lists.id", ondelete="CASCADE"),
            nullable=False,
            primary_key=primary_key,
        )
    )


class ProfileList(SQLModel, table=True):
    __tablename__ = "lists"
    __table_args__ = (Index("uq_lists_name", "workspace_id", "name", unique=True),)

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    name: str = Field(max_length=255)
    description: str | None = Field(default=None, max_length=2000)
    created_at: datetime = created_at_field()


class ListMember(SQLModel, table=True):
    __tablename__ = "list_members"
    __table_args__ = (Index("ix_list_members_profile", "profile_id"),)

    list_id: uuid.UUID = list_fk(primary_key=True)
    profile_id: uuid.UUID = profile_fk(primary_key=True)
    workspace_id: uuid.UUID = workspace_fk()
    source: str = Field(sa_type=String(32))
    joined_at: datetime = created_at_field()


class ListMembershipChange(SQLModel, table=True):
    """A join or leave, with time and source. List-triggered flows start on joins."""

    __tablename__ = "list_membership_changes"
    __table_args__ = (Index("ix_list_membership_changes_list", "list_id", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    workspace_id: uuid.UUID = workspace_fk()
    list_id: uuid.UUID = list_fk()
    profile_id: uuid.UUID = profile_fk()
    action: ListAction = Field(sa_type=String(8))
    source: str = Field(sa_type=String(32))
    occurred_at: datetime = created_at_field()
