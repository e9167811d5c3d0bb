"""Campaigns: details and send settings, paths (audiences), messages, review and scheduling.

A profile whose path audiences overlap receives only the messages of the FIRST path (in path
order) that includes it; reordering paths changes who gets what. Send settings are locked while
any message is scheduled (revert them all to draft to unlock) and for good once one is sent.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, EmailStr, Field, field_validator
from sqlalchemy import select, tuple_

from api.deps import Reader, SessionDep, SettingsDep, TemporalDep, Writer
from api.errors import ApiError
from api.pagination import encode_cursor, time_cursor
from campaigns import review as reviews
from campaigns import service
from models import Channel
from models.base import utcnow
from models.campaigns import (
    Campaign,
    CampaignMessage,
    CampaignMessageStatus,
    CampaignPath,
    PassedLocalTime,
    SendStrategy,
)

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

_ZONES = frozenset(available_timezones())
SEND_SETTINGS = ("timezone", "use_recipient_local_time", "passed_local_time")
Limit = Query(50, ge=1, le=500, description="Items per page")
Cursor = Query(None, description="`next_cursor` of the previous page")


# --- schemas ------------------------------------------------------------------------------------


class Audience(BaseModel):
    name: str | None = Field(default=None, max_length=255)
    include_lists: list[uuid.UUID] = []
    include_segments: list[uuid.UUID] = []
    exclude_lists: list[uuid.UUID] = []
    exclude_segments: list[uuid.UUID] = []


class AudienceUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=255)
    include_lists: list[uuid.UUID] | None = None
    include_segments: list[uuid.UUID] | None = None
    exclude_lists: list[uuid.UUID] | None = None
    exclude_segments: list[uuid.UUID] | None = None


class _Zone(BaseModel):
    @field_validator("timezone", check_fields=False)
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in _ZONES:
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value


class CampaignCreate(_Zone):
    name: str = Field(min_length=1, max_length=255)
    tag: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    color: str | None = Field(default=None, max_length=16, description="Calendar colour")
    timezone: str = Field(default="UTC", description="IANA zone of the send times")
    use_recipient_local_time: bool = False
    passed_local_time: PassedLocalTime = Field(
        default=PassedLocalTime.next_day,
        description="Local time only: where the time has passed, send at once or the next day",
    )
    path: Audience = Field(default_factory=Audience, description="The first path")


class CampaignUpdate(_Zone):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    tag: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    color: str | None = Field(default=None, max_length=16)
    timezone: str | None = None
    use_recipient_local_time: bool | None = None
    passed_local_time: PassedLocalTime | None = None


class Sender(BaseModel):
    from_email: EmailStr | None = None
    from_name: str | None = Field(default=None, max_length=200)
    reply_to: EmailStr | None = None
    from_number: str | None = Field(default=None, max_length=64)


class MessageFields(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    tag: str | None = Field(default=None, max_length=100)
    channel: Channel | None = None
    template_id: uuid.UUID | None = None
    sender: Sender | None = None
    send_at: datetime | None = None
    smart_sending: bool | None = None
    utm: dict[str, str] | None = None
    strategy: SendStrategy | None = None
    throttle_percent: int | None = Field(
        default=None, ge=10, le=50, description="Throttled: % of the path's recipients per hour"
    )

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class MessageCreate(MessageFields):
    name: str = Field(min_length=1, max_length=255)
    channel: Channel


class PathPublic(BaseModel):
    id: uuid.UUID
    position: int
    name: str | None
    include_lists: list[uuid.UUID]
    include_segments: list[uuid.UUID]
    exclude_lists: list[uuid.UUID]
    exclude_segments: list[uuid.UUID]


class MessagePublic(BaseModel):
    id: uuid.UUID
    campaign_id: uuid.UUID
    path_id: uuid.UUID
    name: str
    tag: str | None
    channel: Channel
    template_id: uuid.UUID | None
    sender: dict[str, Any]
    send_at: datetime | None
    smart_sending: bool
    utm: dict[str, Any]
    strategy: SendStrategy
    throttle_percent: int | None
    status: CampaignMessageStatus
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class PathWithMessages(PathPublic):
    messages: list[MessagePublic] = Field(description="Ordered by send time")


class CampaignPublic(BaseModel):
    id: uuid.UUID
    name: str
    tag: str | None
    description: str | None
    color: str | None
    timezone: str
    use_recipient_local_time: bool
    passed_local_time: PassedLocalTime
    settings_locked: str | None = Field(description="Why send settings cannot change, or null")
    created_at: datetime
    updated_at: datetime
    paths: list[PathWithMessages]


class CampaignSummary(BaseModel):
    id: uuid.UUID
    name: str
    tag: str | None
    color: str | None
    created_at: datetime


class CampaignPage(BaseModel):
    data: list[CampaignSummary]
    next_cursor: str | None


class PathOrder(BaseModel):
    path_ids: list[uuid.UUID] = Field(description="Every path of the campaign, in the new order")


class CloneMessage(BaseModel):
    path_id: uuid.UUID | None = Field(default=None, description="Target path; default its own")


class Cancel(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class IssueOut(BaseModel):
    severity: Literal["error", "warning"]
    code: str
    message: str


class ReviewOut(BaseModel):
    message_id: uuid.UUID
    recipients: int = Field(description="Profiles in the path's audience now (first path wins)")
    errors: list[IssueOut]
    warnings: list[IssueOut]


class CampaignReview(BaseModel):
    messages: list[ReviewOut]


# --- helpers ------------------------------------------------------------------------------------


def _message(m: CampaignMessage) -> MessagePublic:
    return MessagePublic.model_validate(m, from_attributes=True)


def _path(p: CampaignPath) -> PathPublic:
    return PathPublic.model_validate(p, from_attributes=True)


async def _public(session: SessionDep, campaign: Campaign) -> CampaignPublic:
    paths = await service.paths_of(session, campaign.id)
    messages = await service.messages_of(session, campaign.id)
    out = [
        PathWithMessages(
            **_path(p).model_dump(),
            messages=[_message(m) for m in messages if m.path_id == p.id],
        )
        for p in paths
    ]
    data = {k: getattr(campaign, k) for k in CampaignPublic.model_fields if hasattr(campaign, k)}
    data |= {"paths": out, "settings_locked": await service.settings_lock(session, campaign)}
    return CampaignPublic(**data)


def _no_nulls(changes: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in changes and changes[key] is None:
            raise ApiError(422, "validation_error", f"{key} cannot be null")


def _message_values(body: MessageFields) -> dict[str, Any]:
    """The fields the caller set (model defaults fill the rest on create)."""
    values = body.model_dump(exclude_unset=True)
    _no_nulls(values, ("name", "channel", "smart_sending", "strategy"))
    if "sender" in values:
        values["sender"] = {k: v for k, v in (values["sender"] or {}).items() if v is not None}
    if "utm" in values:
        values["utm"] = values["utm"] or {}
    return values


def _check_strategy(message: CampaignMessage) -> None:
    if message.strategy == SendStrategy.throttled and message.throttle_percent is None:
        raise ApiError(
            422, "validation_error", "a throttled send needs throttle_percent (10–50 % per hour)"
        )


async def _template_ok(session: SessionDep, ws: uuid.UUID, template_id: uuid.UUID | None) -> None:
    from channels.templates import get_template

    if template_id is not None and await get_template(session, ws, template_id) is None:
        raise ApiError(422, "unknown_template", f"template {template_id} not found")


# --- campaigns ----------------------------------------------------------------------------------


@router.post("", response_model=CampaignPublic, status_code=status.HTTP_201_CREATED)
async def create_campaign(body: CampaignCreate, principal: Writer, session: SessionDep):
    """A campaign with its first path."""
    ws = principal.workspace_id
    audience = body.path.model_dump()
    await service.check_references(session, ws, audience)
    campaign = Campaign(workspace_id=ws, **body.model_dump(exclude={"path"}))
    session.add(campaign)
    await session.flush()
    await service.add_path(session, campaign, audience)
    await session.commit()
    return await _public(session, campaign)


@router.get("", response_model=CampaignPage)
async def list_campaigns(
    principal: Reader, session: SessionDep, limit: int = Limit, cursor: str | None = Cursor
) -> CampaignPage:
    query = select(Campaign).where(Campaign.workspace_id == principal.workspace_id)
    if cursor:
        query = query.where(tuple_(Campaign.created_at, Campaign.id) > tuple_(*time_cursor(cursor)))
    query = query.order_by(Campaign.created_at, Campaign.id).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    more, rows = len(rows) > limit, rows[:limit]
    last = rows[-1] if more else None
    return CampaignPage(
        data=[CampaignSummary.model_validate(c, from_attributes=True) for c in rows],
        next_cursor=encode_cursor(last.created_at.isoformat(), last.id) if last else None,
    )


@router.get("/{campaign_id}", response_model=CampaignPublic)
async def get_campaign(campaign_id: uuid.UUID, principal: Reader, session: SessionDep):
    """The campaign, its paths in order and each path's messages by send time."""
    return await _public(
        session, await service.get_campaign(session, principal.workspace_id, campaign_id)
    )


@router.patch("/{campaign_id}", response_model=CampaignPublic)
async def update_campaign(
    campaign_id: uuid.UUID, body: CampaignUpdate, principal: Writer, session: SessionDep
):
    """Details change at any time; send settings only while unlocked (409 says why not)."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    changes = body.model_dump(exclude_unset=True)
    _no_nulls(changes, ("name", *SEND_SETTINGS))
    changed = [k for k in SEND_SETTINGS if k in changes and changes[k] != getattr(campaign, k)]
    if changed and (reason := await service.settings_lock(session, campaign)):
        raise ApiError(409, "send_settings_locked", f"cannot change {', '.join(changed)}: {reason}")
    for key, value in changes.items():
        setattr(campaign, key, value)
    campaign.updated_at = utcnow()
    await session.commit()
    return await _public(session, campaign)


@router.delete("/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_campaign(campaign_id: uuid.UUID, principal: Writer, session: SessionDep):
    """Delete the campaign, its paths and messages. Refused while a message is scheduled."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    await service.ensure_paths_editable(session, campaign, "delete the campaign")
    await session.delete(campaign)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- paths --------------------------------------------------------------------------------------


@router.post("/{campaign_id}/paths", response_model=PathPublic, status_code=201)
async def add_path(campaign_id: uuid.UUID, body: Audience, principal: Writer, session: SessionDep):
    """A new path at the end (at most 10)."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    await service.ensure_paths_editable(session, campaign, "add a path")
    audience = body.model_dump()
    await service.check_references(session, campaign.workspace_id, audience)
    path = await service.add_path(session, campaign, audience)
    await session.commit()
    return _path(path)


@router.put("/{campaign_id}/paths/order", response_model=list[PathPublic])
async def reorder_paths(
    campaign_id: uuid.UUID, body: PathOrder, principal: Writer, session: SessionDep
):
    """Set the path order: a profile in several audiences gets the first path's messages."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    await service.ensure_paths_editable(session, campaign, "reorder paths")
    paths = await service.reorder_paths(session, campaign, body.path_ids)
    await session.commit()
    return [_path(p) for p in paths]


@router.patch("/{campaign_id}/paths/{path_id}", response_model=PathPublic)
async def update_path(
    campaign_id: uuid.UUID,
    path_id: uuid.UUID,
    body: AudienceUpdate,
    principal: Writer,
    session: SessionDep,
):
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    path = await service.get_path(session, campaign, path_id)
    changes = body.model_dump(exclude_unset=True)
    _no_nulls(changes, service.AUDIENCE_FIELDS)
    if set(changes) & set(service.AUDIENCE_FIELDS):
        await service.ensure_paths_editable(session, campaign, "change an audience")
        await service.check_references(session, campaign.workspace_id, changes)
    for key, value in changes.items():
        setattr(path, key, value)
    await session.commit()
    return _path(path)


@router.delete("/{campaign_id}/paths/{path_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_path(
    campaign_id: uuid.UUID, path_id: uuid.UUID, principal: Writer, session: SessionDep
):
    """Delete a path and its messages (permanent)."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    path = await service.get_path(session, campaign, path_id)
    await service.ensure_paths_editable(session, campaign, "delete a path")
    await service.delete_path(session, campaign, path)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{campaign_id}/paths/{path_id}/clone", response_model=PathWithMessages, status_code=201
)
async def clone_path(
    campaign_id: uuid.UUID, path_id: uuid.UUID, principal: Writer, session: SessionDep
):
    """A copy of the path (audience and messages, as drafts), placed right after it."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    source = await service.get_path(session, campaign, path_id)
    await service.ensure_paths_editable(session, campaign, "add a path")
    path = await service.clone_path(session, campaign, source)
    await session.commit()
    messages = await service.messages_of(session, campaign.id, path.id)
    return PathWithMessages(**_path(path).model_dump(), messages=[_message(m) for m in messages])


@router.get("/{campaign_id}/paths/{path_id}/messages", response_model=list[MessagePublic])
async def list_path_messages(
    campaign_id: uuid.UUID, path_id: uuid.UUID, principal: Reader, session: SessionDep
):
    """The path's messages ordered by send time (unset last)."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    path = await service.get_path(session, campaign, path_id)
    return [_message(m) for m in await service.messages_of(session, campaign.id, path.id)]


@router.post(
    "/{campaign_id}/paths/{path_id}/messages", response_model=MessagePublic, status_code=201
)
async def create_message(
    campaign_id: uuid.UUID,
    path_id: uuid.UUID,
    body: MessageCreate,
    principal: Writer,
    session: SessionDep,
):
    """A draft message in the path (at most 30 messages per campaign)."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    path = await service.get_path(session, campaign, path_id)
    await service.ensure_room(session, campaign.id, messages=1)
    values = _message_values(body)
    await _template_ok(session, campaign.workspace_id, values.get("template_id"))
    message = CampaignMessage(
        campaign_id=campaign.id, path_id=path.id, workspace_id=campaign.workspace_id, **values
    )
    _check_strategy(message)
    session.add(message)
    await session.commit()
    return _message(message)


# --- messages -----------------------------------------------------------------------------------


@router.get("/{campaign_id}/review", response_model=CampaignReview)
async def review_campaign(
    campaign_id: uuid.UUID, principal: Reader, session: SessionDep, settings: SettingsDep
):
    """The review of every message, in path order then send time."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    out = []
    for path in await service.paths_of(session, campaign.id):
        for message in await service.messages_of(session, campaign.id, path.id):
            result = await reviews.review_message(session, settings, campaign, path, message)
            out.append(ReviewOut(**result.as_dict()))
    return CampaignReview(messages=out)


async def _load(session: SessionDep, ws: uuid.UUID, campaign_id: uuid.UUID, message_id: uuid.UUID):
    campaign = await service.get_campaign(session, ws, campaign_id)
    return campaign, await service.get_message(session, campaign, message_id)


@router.get("/{campaign_id}/messages/{message_id}", response_model=MessagePublic)
async def get_message(
    campaign_id: uuid.UUID, message_id: uuid.UUID, principal: Reader, session: SessionDep
):
    _, message = await _load(session, principal.workspace_id, campaign_id, message_id)
    return _message(message)


@router.patch("/{campaign_id}/messages/{message_id}", response_model=MessagePublic)
async def update_message(
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
    body: MessageFields,
    principal: Writer,
    session: SessionDep,
):
    """Edit a draft (revert a scheduled message to draft first)."""
    campaign, message = await _load(session, principal.workspace_id, campaign_id, message_id)
    service.ensure_draft(message, "edit")
    values = _message_values(body)
    await _template_ok(session, campaign.workspace_id, values.get("template_id"))
    for key, value in values.items():
        setattr(message, key, value)
    if message.strategy == SendStrategy.fixed:
        message.throttle_percent = None
    _check_strategy(message)
    message.updated_at = utcnow()
    await session.commit()
    return _message(message)


@router.delete("/{campaign_id}/messages/{message_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_message(
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
):
    """Delete permanently (a scheduled one is unscheduled; one being sent must be cancelled)."""
    _, message = await _load(session, principal.workspace_id, campaign_id, message_id)
    await service.delete_message(session, temporal, settings, message)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{campaign_id}/messages/{message_id}/clone", response_model=MessagePublic, status_code=201
)
async def clone_message(
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
    body: CloneMessage,
    principal: Writer,
    session: SessionDep,
):
    """A draft copy in any path of the campaign (its own by default)."""
    campaign, message = await _load(session, principal.workspace_id, campaign_id, message_id)
    target = await service.get_path(session, campaign, body.path_id or message.path_id)
    copy = await service.clone_message(session, message, target)
    await session.commit()
    return _message(copy)


@router.get("/{campaign_id}/messages/{message_id}/review", response_model=ReviewOut)
async def review_message(
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    settings: SettingsDep,
):
    """Errors (they block scheduling) and warnings (they don't) for the message now."""
    campaign, message = await _load(session, principal.workspace_id, campaign_id, message_id)
    path = await service.get_path(session, campaign, message.path_id)
    result = await reviews.review_message(session, settings, campaign, path, message)
    return ReviewOut(**result.as_dict())


@router.post("/{campaign_id}/messages/{message_id}/schedule", response_model=MessagePublic)
async def schedule_message(
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
):
    """Review, then schedule: review errors answer 422 with every issue as a detail. Locks the
    campaign's send settings until every scheduled message is reverted to draft."""
    campaign, message = await _load(session, principal.workspace_id, campaign_id, message_id)
    service.ensure_draft(message, "schedule")
    path = await service.get_path(session, campaign, message.path_id)
    result = await reviews.review_message(session, settings, campaign, path, message)
    if result.errors:
        details = [{"loc": None, "message": i.message, "type": i.code} for i in result.errors]
        summary = "; ".join(i.message for i in result.errors[:5])
        raise ApiError(
            422, "review_failed", f"the message cannot be scheduled — {summary}", details
        )
    await service.schedule(session, temporal, settings, message)
    return _message(message)


@router.post("/{campaign_id}/messages/{message_id}/revert", response_model=MessagePublic)
async def revert_message(
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
):
    """Scheduled → draft (the schedule is removed)."""
    _, message = await _load(session, principal.workspace_id, campaign_id, message_id)
    await service.revert(session, temporal, settings, message)
    await session.commit()
    return _message(message)


@router.post("/{campaign_id}/messages/{message_id}/cancel", response_model=MessagePublic)
async def cancel_message(
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    body: Cancel | None = None,
):
    """Draft or scheduled → cancelled; sending → cancelled_during_send."""
    _, message = await _load(session, principal.workspace_id, campaign_id, message_id)
    await service.cancel(session, temporal, settings, message, body.reason if body else None)
    await session.commit()
    return _message(message)
