"""Campaign messages: create in a path, edit, clone, delete, review, schedule, revert, cancel.

A message is edited only as a draft. Scheduling runs the review first (`campaigns.review`):
errors answer 422 with every issue as a detail; warnings do not block. Scheduling registers the
send with Temporal (`campaigns.scheduling`); reverting or cancelling removes it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, EmailStr, Field, field_validator

from api.deps import Reader, SessionDep, SettingsDep, TemporalDep, Writer
from api.errors import ApiError
from campaigns import review as reviews
from campaigns import service
from models import Channel
from models.base import utcnow
from models.campaigns import CampaignMessage, CampaignMessageStatus, SendStrategy

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


# --- schemas ------------------------------------------------------------------------------------


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


def message_public(m: CampaignMessage) -> MessagePublic:
    return MessagePublic.model_validate(m, from_attributes=True)


def no_nulls(changes: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in changes and changes[key] is None:
            raise ApiError(422, "validation_error", f"{key} cannot be null")


def _message_values(body: MessageFields) -> dict[str, Any]:
    """The fields the caller set (model defaults fill the rest on create)."""
    values = body.model_dump(exclude_unset=True)
    no_nulls(values, ("name", "channel", "smart_sending", "strategy"))
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


# --- messages of a path -------------------------------------------------------------------------


@router.get("/{campaign_id}/paths/{path_id}/messages", response_model=list[MessagePublic])
async def list_path_messages(
    campaign_id: uuid.UUID, path_id: uuid.UUID, principal: Reader, session: SessionDep
):
    """The path's messages ordered by send time (unset last)."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    path = await service.get_path(session, campaign, path_id)
    return [message_public(m) for m in await service.messages_of(session, campaign.id, path.id)]


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
    return message_public(message)


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
    return message_public(message)


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
    return message_public(message)


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
    return message_public(copy)


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
    return message_public(message)


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
    return message_public(message)


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
    return message_public(message)
