"""The workspace's channel settings: Smart Sending, quiet hours, sender, UTM, webhook keys."""

from __future__ import annotations

from datetime import time

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError

from api.deps import Admin, Reader, SessionDep
from api.errors import ApiError
from channels.settings import (
    ChannelSettings,
    QuietHours,
    SmartSendingWindows,
    load_channel_settings,
    save_channel_settings,
)

router = APIRouter(prefix="/v1/workspace/channel-settings", tags=["workspace"])


class ChannelSettingsPublic(BaseModel):
    smart_sending_hours: SmartSendingWindows
    quiet_hours: QuietHours
    timezone: str | None
    effective_timezone: str = Field(description="The zone used for recipients without one")
    from_email: str | None
    from_name: str | None
    reply_to: str | None
    utm: dict[str, str]
    sendgrid_webhook_public_key: str | None
    twilio_auth_token_set: bool = Field(description="The token itself is never shown")


class SmartSendingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: float | None = Field(default=None, ge=0, le=24 * 30)
    sms: float | None = Field(default=None, ge=0, le=24 * 30)
    push: float | None = Field(default=None, ge=0, le=24 * 30)
    whatsapp: float | None = Field(default=None, ge=0, le=24 * 30)


class QuietHoursUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    start: time | None = None
    end: time | None = None


class ChannelSettingsUpdate(BaseModel):
    """Only the fields given change; `null` clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    smart_sending_hours: SmartSendingUpdate | None = None
    quiet_hours: QuietHoursUpdate | None = None
    timezone: str | None = None
    from_email: EmailStr | None = None
    from_name: str | None = Field(default=None, max_length=200)
    reply_to: EmailStr | None = None
    utm: dict[str, str] | None = None
    sendgrid_webhook_public_key: str | None = None
    twilio_auth_token: str | None = None


def _public(cs: ChannelSettings) -> ChannelSettingsPublic:
    return ChannelSettingsPublic(
        **cs.model_dump(exclude={"twilio_auth_token"}),
        effective_timezone=cs.timezone or cs.workspace_timezone,
        twilio_auth_token_set=bool(cs.twilio_auth_token),
    )


@router.get("", response_model=ChannelSettingsPublic)
async def get_channel_settings(principal: Reader, session: SessionDep) -> ChannelSettingsPublic:
    return _public(await load_channel_settings(session, principal.workspace_id))


@router.patch("", response_model=ChannelSettingsPublic)
async def update_channel_settings(
    body: ChannelSettingsUpdate, principal: Admin, session: SessionDep
) -> ChannelSettingsPublic:
    current = await load_channel_settings(session, principal.workspace_id)
    merged = current.model_dump()
    merged["twilio_auth_token"] = current.twilio_auth_token
    for name, value in body.model_dump(exclude_unset=True).items():
        if name in ("smart_sending_hours", "quiet_hours") and value is not None:
            merged[name] |= {k: v for k, v in value.items() if v is not None}
        else:
            merged[name] = value
    try:
        updated = ChannelSettings.model_validate(merged)
    except ValidationError as exc:
        details = [
            {
                "loc": "body." + ".".join(str(p) for p in err["loc"]),
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        summary = "; ".join(f"{d['loc']}: {d['message']}" for d in details)
        raise ApiError(422, "validation_error", f"invalid request — {summary}", details) from None
    updated.workspace_timezone = current.workspace_timezone
    await save_channel_settings(session, principal.workspace_id, updated)
    await session.commit()
    return _public(updated)
