"""A workspace's channel settings, kept under `workspaces.settings["channels"]`.

Smart Sending windows per channel, SMS quiet hours, the default recipient time zone, default
sender, UTM defaults, and what webhooks are verified with (SendGrid's ECDSA public key, the
Twilio auth token). Provider *sending* credentials live in `channels.credentials`; the Twilio
auth token here is only read when the credentials module holds none for the workspace.
"""

from __future__ import annotations

import json
import uuid
from datetime import time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from models import Channel

_TIMEZONES = frozenset(available_timezones())


class SmartSendingWindows(BaseModel):
    """Hours since the last marketing message on a channel during which another is skipped."""

    model_config = ConfigDict(extra="forbid")

    email: float = Field(default=16, ge=0, le=24 * 30)
    sms: float = Field(default=24, ge=0, le=24 * 30)
    push: float = Field(default=24, ge=0, le=24 * 30)
    whatsapp: float = Field(default=24, ge=0, le=24 * 30)


# A wall-clock time, "HH:MM" both ways (JSON Schema's `time` format would demand an offset).
LocalTime = Annotated[
    time,
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"}),
]


class QuietHours(BaseModel):
    """Local hours (the recipient's time zone) in which marketing SMS are held, not sent."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    start: LocalTime = time(21, 0)
    end: LocalTime = time(8, 0)


def normalize_public_key(value: str) -> str:
    """The base64 body of SendGrid's verification key, with or without PEM armour."""
    body = "".join(
        line.strip() for line in value.strip().splitlines() if not line.startswith("-----")
    )
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        EventWebhook(body)
    except (ValueError, TypeError) as exc:
        message = "not an ECDSA public key (SendGrid: Mail Settings → Event Webhook)"
        raise ValueError(message) from exc
    return body


class ChannelSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    smart_sending_hours: SmartSendingWindows = Field(default_factory=SmartSendingWindows)
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    timezone: str | None = Field(
        default=None,
        description="Time zone for recipients without one; unset means the workspace's zone",
    )
    from_email: EmailStr | None = None
    from_name: str | None = Field(default=None, max_length=200)
    reply_to: EmailStr | None = None
    utm: dict[str, str] = Field(default_factory=dict, description="e.g. {'utm_source': 'waymark'}")
    sendgrid_webhook_public_key: str | None = None
    twilio_auth_token: str | None = None
    # Filled from the workspace by `load_channel_settings`; never stored.
    workspace_timezone: str = Field(default="UTC", exclude=True)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _TIMEZONES:
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    @field_validator("sendgrid_webhook_public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        return normalize_public_key(value) if value else None

    def smart_sending_window(self, channel: Channel | str) -> timedelta:
        return timedelta(hours=getattr(self.smart_sending_hours, Channel(channel).value))

    def default_zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or self.workspace_timezone or "UTC")


_LOAD = text("SELECT timezone, settings -> 'channels' FROM workspaces WHERE id = :ws")
_SAVE = text(
    "UPDATE workspaces SET settings = jsonb_set(settings, '{channels}', CAST(:value AS jsonb)) "
    "WHERE id = :ws"
)


async def load_channel_settings(session: AsyncSession, workspace_id: uuid.UUID) -> ChannelSettings:
    row = (await session.execute(_LOAD, {"ws": workspace_id})).one_or_none()
    if row is None:
        raise LookupError(f"workspace {workspace_id} not found")
    return channel_settings_of(*row)


def channel_settings_of(workspace_timezone: str | None, stored: Any) -> ChannelSettings:
    """The settings from a workspace's time zone and its `settings["channels"]` (a caller that
    has the workspace row already)."""
    settings = ChannelSettings.model_validate(stored or {})
    settings.workspace_timezone = workspace_timezone or "UTC"
    return settings


async def save_channel_settings(
    session: AsyncSession, workspace_id: uuid.UUID, settings: ChannelSettings
) -> None:
    value = json.dumps(settings.model_dump(mode="json"), separators=(",", ":"))
    await session.execute(_SAVE, {"ws": workspace_id, "value": value})
