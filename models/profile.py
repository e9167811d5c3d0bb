"""Profiles, their anonymous ids, typed custom properties, consents and push subscriptions."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, jsonb_field, workspace_fk, workspace_pk


class Channel(enum.StrEnum):
    email = "email"
    sms = "sms"
    whatsapp = "whatsapp"
    push = "push"


class ConsentState(enum.StrEnum):
    subscribed = "subscribed"
    unsubscribed = "unsubscribed"
    never = "never"  # never asked: the state of a profile without a consent row


class ConsentSource(enum.StrEnum):
    api = "api"
    import_ = "import"
    form = "form"
    keyword = "keyword"
    unsubscribe_link = "unsubscribe_link"
    bounce = "bounce"
    flow = "flow"


class PropertyType(enum.StrEnum):
    string = "string"
    number = "number"
    boolean = "boolean"
    date = "date"
    datetime = "datetime"
    list = "list"
    object = "object"


def profile_fk(*, primary_key: bool = False) -> object:
    return Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("profiles.id", ondelete="CASCADE"),
            nullable=False,
            primary_key=primary_key,
        )
    )


def profile_of_row() -> object:
    """`profile_id` of a high-volume row (an event, a message), without a foreign key.

    A key is checked for every row written: the RI trigger's query, a probe and a row lock on
    the profile, about a tenth of the database's work per email sent (`bench.send`). Instead,
    the one statement that writes such rows locks the profiles itself, as the check did
    (`FOR KEY SHARE`: `ingest.events.STORE_INPUT`, `channels.ledger_new.insert_decided`), and
    skips rows of a profile that is gone; erasure and merge delete or move these rows in a
    statement after the one that deletes the profile (`ingest.erasure`, `merge_profiles`).
    Whichever comes second waits for the other and sees what it wrote: a row written for a
    profile being erased goes with it, and none is written once it is gone."""
    return Field(sa_column=Column(UUID(as_uuid=True), nullable=False))


class Profile(SQLModel, table=True):
    __tablename__ = "profiles"
    __table_args__ = (
        Index(
            "uq_profiles_external_id",
            "workspace_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index(
            "uq_profiles_email",
            "workspace_id",
            text("lower(email)"),
            unique=True,
            postgresql_where=text("email IS NOT NULL"),
        ),
        Index(
            "uq_profiles_phone",
            "workspace_id",
            "phone",
            unique=True,
            postgresql_where=text("phone IS NOT NULL"),
        ),
        # Cursor pagination: (created_at, id) within a workspace.
        Index("ix_profiles_workspace_created", "workspace_id", "created_at", "id"),
    )

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    external_id: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    timezone: str | None = Field(default=None, max_length=64)
    locale: str | None = Field(default=None, max_length=35)
    country: str | None = Field(default=None, max_length=2)
    region: str | None = Field(default=None, max_length=255)
    city: str | None = Field(default=None, max_length=255)
    postal_code: str | None = Field(default=None, max_length=32)
    latitude: float | None = Field(default=None, sa_type=Float)
    longitude: float | None = Field(default=None, sa_type=Float)
    properties: dict = jsonb_field()
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()


class ProfileAlias(SQLModel, table=True):
    """An anonymous id (Segment `anonymousId`) and the profile it now belongs to."""

    __tablename__ = "profile_aliases"

    workspace_id: uuid.UUID = workspace_pk()
    anonymous_id: str = Field(primary_key=True, max_length=255)
    profile_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("profiles.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )


class PropertyDefinition(SQLModel, table=True):
    """The type of a custom profile property, fixed by its first value in the workspace."""

    __tablename__ = "property_definitions"

    workspace_id: uuid.UUID = workspace_pk()
    name: str = Field(primary_key=True, max_length=255)
    type: PropertyType = Field(sa_type=String(16))
    created_at: datetime = created_at_field()


class Consent(SQLModel, table=True):
    """The current consent of a profile on a channel. No row means `never`."""

    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_workspace_channel_state", "workspace_id", "channel", "state"),
    )

    profile_id: uuid.UUID = profile_fk(primary_key=True)
    channel: Channel = Field(sa_type=String(16), primary_key=True)
    workspace_id: uuid.UUID = workspace_fk(index=False)
    state: ConsentState = Field(sa_type=String(16))
    source: ConsentSource = Field(sa_type=String(32))
    updated_at: datetime = created_at_field()


class ConsentChange(SQLModel, table=True):
    """Every consent change ever made: the history readable per profile."""

    __tablename__ = "consent_changes"
    __table_args__ = (Index("ix_consent_changes_profile", "profile_id", "occurred_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    workspace_id: uuid.UUID = workspace_fk()
    profile_id: uuid.UUID = profile_fk()
    channel: Channel = Field(sa_type=String(16))
    state: ConsentState = Field(sa_type=String(16))
    source: ConsentSource = Field(sa_type=String(32))
    occurred_at: datetime = created_at_field()
    detail: dict = jsonb_field()


class Suppression(SQLModel, table=True):
    """An address that must not be sent to (hard bounce, spam complaint, invalid number).

    Separate from consent: a subscribed profile whose address bounced is still not sent to.
    """

    __tablename__ = "suppressions"

    workspace_id: uuid.UUID = workspace_pk()
    channel: Channel = Field(sa_type=String(16), primary_key=True)
    # Lower-cased email, or E.164 phone.
    address: str = Field(primary_key=True, max_length=320)
    reason: str = Field(max_length=64)
    created_at: datetime = created_at_field()


class PushSubscription(SQLModel, table=True):
    """A browser's web-push subscription (the PushSubscription JSON of the Push API)."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (
        Index("uq_push_subscriptions_endpoint", "workspace_id", "endpoint", unique=True),
    )

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    profile_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("profiles.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    endpoint: str = Field(max_length=2048)
    p256dh: str = Field(max_length=255)
    auth: str = Field(max_length=255)
    user_agent: str | None = Field(default=None, max_length=512)
    created_at: datetime = created_at_field()


__all__ = [
    "Channel",
    "Consent",
    "ConsentChange",
    "ConsentSource",
    "ConsentState",
    "Profile",
    "ProfileAlias",
    "PropertyDefinition",
    "PropertyType",
    "PushSubscription",
    "Suppression",
]
