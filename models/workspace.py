"""Tenants and their API keys."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Column, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, jsonb_field, tz_field, workspace_fk


class Scope(enum.StrEnum):
    """What a private key may do. Each scope includes the ones before it."""

    read = "read"
    write = "write"
    admin = "admin"

    def includes(self, other: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(other)


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"

    id: uuid.UUID = id_field()
    name: str = Field(max_length=200)
    # The public write key for tracking (Segment-style HTTP Basic username). Not a secret.
    public_key: str = Field(max_length=64, unique=True)
    timezone: str = Field(default="UTC", max_length=64)
    settings: dict = jsonb_field()
    created_at: datetime = created_at_field()


class ApiKey(SQLModel, table=True):
    """A private key. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk()
    name: str = Field(max_length=200)
    # The first characters of the key, so people can tell keys apart in a list.
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    created_at: datetime = created_at_field()
    last_used_at: datetime | None = tz_field()
    revoked_at: datetime | None = tz_field()
