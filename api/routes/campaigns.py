"""Campaigns: details and send settings, and paths (audiences) with their order.

A profile whose path audiences overlap receives only the messages of the FIRST path (in path
order) that includes it; reordering paths changes who gets what. Send settings are locked while
any message is scheduled (revert them all to draft to unlock) and for good once one is sent.
Messages, their review and scheduling: `api.routes.campaign_messages`; figures:
`api.routes.campaign_metrics`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import available_timezones

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from api.deps import Reader, SessionDep, Writer
from api.errors import ApiError
from api.pagination import created_page
from api.routes.campaign_messages import MessagePublic, message_public, no_nulls
from campaigns import service
from models.base import utcnow
from models.campaigns import Campaign, CampaignPath, PassedLocalTime

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


class PathPublic(BaseModel):
    id: uuid.UUID
    position: int
    name: str | None
    include_lists: list[uuid.UUID]
    include_segments: list[uuid.UUID]
    exclude_lists: list[uuid.UUID]
    exclude_segments: list[uuid.UUID]


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


# --- helpers ------------------------------------------------------------------------------------


def _path(p: CampaignPath) -> PathPublic:
    return PathPublic.model_validate(p, from_attributes=True)


async def _public(session: SessionDep, campaign: Campaign) -> CampaignPublic:
    paths = await service.paths_of(session, campaign.id)
    messages = await service.messages_of(session, campaign.id)
    out = [
        PathWithMessages(
            **_path(p).model_dump(),
            messages=[message_public(m) for m in messages if m.path_id == p.id],
        )
        for p in paths
    ]
    data = {k: getattr(campaign, k) for k in CampaignPublic.model_fields if hasattr(campaign, k)}
    data |= {"paths": out, "settings_locked": await service.settings_lock(session, campaign)}
    return CampaignPublic(**data)


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
    rows, next_cursor = await created_page(session, query, Campaign, limit, cursor)
    return CampaignPage(
        data=[CampaignSummary.model_validate(c, from_attributes=True) for c in rows],
        next_cursor=next_cursor,
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
    no_nulls(changes, ("name", *SEND_SETTINGS))
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
    no_nulls(changes, service.AUDIENCE_FIELDS)
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
    return PathWithMessages(
        **_path(path).model_dump(), messages=[message_public(m) for m in messages]
    )
