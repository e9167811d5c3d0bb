"""Channel settings: which provider account each channel sends with, or local mode.

Secrets go in through `PUT` and never come out: listings show a masked hint (`…abcd`).
Deleting a channel's credentials puts it back in local mode (the outbox). Browsers fetch the
workspace's VAPID public key with the public write key to subscribe to push.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Response, status
from pydantic import BaseModel, ValidationError

from api.deps import Admin, Reader, SessionDep, SettingsDep, Tracker
from api.errors import ApiError, not_found
from channels import credentials, vapid
from models import Channel

router = APIRouter(tags=["channels"])


class ChannelPublic(BaseModel):
    channel: Channel
    mode: str  # "local": messages go to the outbox; "provider": sent through `provider`
    provider: str | None = None
    config: dict[str, Any] = {}
    secret: dict[str, str] = {}  # masked: "…abcd"
    updated_at: datetime | None = None
    vapid_public_key: str | None = None  # push only


class ChannelList(BaseModel):
    data: list[ChannelPublic]


class VapidPublicKey(BaseModel):
    public_key: str  # applicationServerKey for pushManager.subscribe (base64url)


def _public(channel: Channel, row, vapid_key: str | None) -> ChannelPublic:
    extra = {"vapid_public_key": vapid_key} if channel is Channel.push else {}
    if row is None:
        return ChannelPublic(channel=channel, mode="local", **extra)
    config = {k: v for k, v in row.config.items() if k != "secret_hint"}
    return ChannelPublic(
        channel=channel,
        mode="provider",
        provider=row.provider,
        config=config,
        secret=row.config.get("secret_hint", {}),
        updated_at=row.updated_at,
        **extra,
    )


@router.get("/v1/channels", response_model=ChannelList)
async def list_channels(principal: Reader, session: SessionDep) -> ChannelList:
    """Each channel's mode, provider and non-secret settings."""
    rows = await credentials.rows(session, principal.workspace_id)
    vapid_key = await vapid.public_key(session, principal.workspace_id)
    return ChannelList(data=[_public(c, rows.get(c), vapid_key) for c in Channel])


@router.put("/v1/channels/{channel}/credentials", response_model=ChannelPublic)
async def put_credentials(
    channel: Channel,
    principal: Admin,
    session: SessionDep,
    settings: SettingsDep,
    body: dict[str, Any] = Body(...),
) -> ChannelPublic:
    """Send `channel` through a provider account: email → SendGrid (`api_key`, `from_email`,
    `from_name`, `reply_to`); sms and whatsapp → Twilio (`account_sid`, `auth_token`,
    `from_number` or `messaging_service_sid`); push → web push (`subject`: mailto: or https:)."""
    shape = credentials.SHAPES[channel]
    try:
        given = shape.model_validate(body)
    except ValidationError as exc:
        details = [
            {"loc": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{d['loc']}: {d['message']}" for d in details[:5])
        raise ApiError(
            422, "validation_error", f"invalid {channel.value} credentials — {summary}", details
        ) from None
    box = credentials.SecretBox.from_settings(settings)
    row = await credentials.save(session, box, principal.workspace_id, channel, given)
    vapid_key = None
    if channel is Channel.push:
        vapid_key = await vapid.ensure_keys(session, box, principal.workspace_id)
    await session.commit()
    return _public(channel, row, vapid_key)


@router.delete("/v1/channels/{channel}/credentials", status_code=status.HTTP_204_NO_CONTENT)
async def delete_credentials(channel: Channel, principal: Admin, session: SessionDep) -> Response:
    """Forget the channel's provider account: its messages go to the local outbox again."""
    if not await credentials.remove(session, principal.workspace_id, channel):
        raise not_found(f"{channel.value} credentials")
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/push/vapid-public-key", response_model=VapidPublicKey)
async def vapid_public_key(
    principal: Tracker, session: SessionDep, settings: SettingsDep
) -> VapidPublicKey:
    """The key browsers subscribe with (`applicationServerKey`). Made on first request."""
    key = await vapid.public_key(session, principal.workspace_id)
    if key is None:
        box = credentials.SecretBox.from_settings(settings)
        key = await vapid.ensure_keys(session, box, principal.workspace_id)
        await session.commit()
    return VapidPublicKey(public_key=key)
