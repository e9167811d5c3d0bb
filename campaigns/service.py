"""Campaign rules shared by the API: limits, send-settings locks, path order and cloning, message
status transitions, and the one place that calls the Temporal scheduling.

Raises `api.errors.ApiError` (409 for a rule, 422 for bad input) so routes stay thin.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError, not_found
from campaigns import scheduling
from models import ProfileList, Segment
from models.base import utcnow
from models.campaigns import (
    MAX_MESSAGES,
    MAX_PATHS,
    Campaign,
    CampaignMessage,
    CampaignMessageStatus,
    CampaignPath,
)

log = structlog.get_logger(__name__)

S = CampaignMessageStatus
LIVE = (S.scheduled, S.sending)  # a workflow exists for the message
STARTED = (S.sending, S.sent, S.cancelled_during_send)  # someone may have received it
AUDIENCE_FIELDS = ("include_lists", "include_segments", "exclude_lists", "exclude_segments")
MESSAGE_COPY = (
    "name",
    "tag",
    "channel",
    "template_id",
    "sender",
    "send_at",
    "smart_sending",
    "utm",
    "strategy",
    "throttle_percent",
)


# --- loading, scoped to the workspace -----------------------------------------------------------


async def get_campaign(session: AsyncSession, ws: uuid.UUID, campaign_id: uuid.UUID) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.workspace_id != ws:
        raise not_found("campaign")
    return campaign


async def get_path(session: AsyncSession, campaign: Campaign, path_id: uuid.UUID) -> CampaignPath:
    path = await session.get(CampaignPath, path_id)
    if path is None or path.campaign_id != campaign.id:
        raise not_found("path")
    return path


async def get_message(
    session: AsyncSession, campaign: Campaign, message_id: uuid.UUID
) -> CampaignMessage:
    message = await session.get(CampaignMessage, message_id)
    if message is None or message.campaign_id != campaign.id:
        raise not_found("message")
    return message


async def paths_of(session: AsyncSession, campaign_id: uuid.UUID) -> list[CampaignPath]:
    query = select(CampaignPath).where(CampaignPath.campaign_id == campaign_id)
    return list((await session.execute(query.order_by(CampaignPath.position))).scalars())


async def messages_of(
    session: AsyncSession, campaign_id: uuid.UUID, path_id: uuid.UUID | None = None
) -> list[CampaignMessage]:
    """Messages ordered by send time (unset last), then creation."""
    query = select(CampaignMessage).where(CampaignMessage.campaign_id == campaign_id)
    if path_id is not None:
        query = query.where(CampaignMessage.path_id == path_id)
    order = (CampaignMessage.send_at.asc().nulls_last(), CampaignMessage.created_at)
    return list((await session.execute(query.order_by(*order))).scalars())


# --- limits and locks ---------------------------------------------------------------------------


async def _count(session: AsyncSession, column: Any, campaign_id: uuid.UUID) -> int:
    table = column.class_
    query = select(func.count()).select_from(table).where(table.campaign_id == campaign_id)
    return (await session.execute(query)).scalar_one()


async def ensure_room(
    session: AsyncSession, campaign_id: uuid.UUID, *, paths: int = 0, messages: int = 0
) -> None:
    """409 when adding `paths` paths or `messages` messages would pass the campaign's limits.

    Locks the campaign row first, so two concurrent adds cannot both take the last place."""
    await session.execute(select(Campaign.id).where(Campaign.id == campaign_id).with_for_update())
    if paths:
        have = await _count(session, CampaignPath.id, campaign_id)
        if have + paths > MAX_PATHS:
            raise ApiError(
                409,
                "path_limit",
                f"a campaign has at most {MAX_PATHS} paths; this one has {have}: "
                "remove a path before adding another",
            )
    if messages:
        have = await _count(session, CampaignMessage.id, campaign_id)
        if have + messages > MAX_MESSAGES:
            raise ApiError(
                409,
                "message_limit",
                f"a campaign has at most {MAX_MESSAGES} messages in total; this one has {have}"
                + (f" and this would add {messages}" if messages > 1 else "")
                + ": delete a message first",
            )


async def settings_lock(session: AsyncSession, campaign: Campaign) -> str | None:
    """Why the send settings cannot change now, or None."""
    if campaign.settings_locked_forever:
        return "a message of this campaign has been sent: its send settings are locked for good"
    statuses = set(
        (
            await session.execute(
                select(CampaignMessage.status).where(CampaignMessage.campaign_id == campaign.id)
            )
        ).scalars()
    )
    if statuses & set(STARTED):
        return "a message of this campaign has been sent: its send settings are locked for good"
    if S.scheduled in statuses:
        return (
            "a message of this campaign is scheduled: revert every scheduled message to draft "
            "to change the send settings"
        )
    return None


async def ensure_paths_editable(session: AsyncSession, campaign: Campaign, what: str) -> None:
    """Audiences decide who gets which message (first path wins): frozen while one is live."""
    live = await session.scalar(
        select(func.count())
        .select_from(CampaignMessage)
        .where(CampaignMessage.campaign_id == campaign.id, CampaignMessage.status.in_(LIVE))
    )
    if live:
        raise ApiError(
            409,
            "campaign_scheduled",
            f"cannot {what} while a message of this campaign is scheduled or sending: "
            "revert the scheduled messages to draft first",
        )


def ensure_draft(message: CampaignMessage, what: str) -> None:
    if message.status != S.draft:
        hint = " (revert it to draft first)" if message.status == S.scheduled else ""
        raise ApiError(409, "message_not_draft", f"cannot {what} a {message.status} message{hint}")


async def check_references(
    session: AsyncSession, ws: uuid.UUID, audience: dict[str, list[uuid.UUID]]
) -> None:
    """422 naming every list or segment of an audience that is not in the workspace."""
    details = []
    for key, model in (("lists", ProfileList), ("segments", Segment)):
        for side in ("include", "exclude"):
            ids = audience.get(f"{side}_{key}") or []
            if not ids:
                continue
            found = set(
                (
                    await session.execute(
                        select(model.id).where(model.id.in_(ids), model.workspace_id == ws)
                    )
                ).scalars()
            )
            details += [
                {"loc": f"body.{side}_{key}", "message": f"{key[:-1]} {i} not found"}
                for i in ids
                if i not in found
            ]
    if details:
        summary = "; ".join(d["message"] for d in details[:5])
        raise ApiError(422, "unknown_audience", f"unknown audience — {summary}", details)


# --- paths --------------------------------------------------------------------------------------


async def add_path(
    session: AsyncSession, campaign: Campaign, values: dict[str, Any], *, after: int | None = None
) -> CampaignPath:
    """A new path at the end, or right after position `after` (the later ones move down)."""
    await ensure_room(session, campaign.id, paths=1)
    count = await _count(session, CampaignPath.id, campaign.id)
    position = count if after is None else after + 1
    if after is not None:
        await session.execute(
            update(CampaignPath)
            .where(CampaignPath.campaign_id == campaign.id, CampaignPath.position >= position)
            .values(position=CampaignPath.position + 1)
        )
    path = CampaignPath(
        campaign_id=campaign.id, workspace_id=campaign.workspace_id, position=position, **values
    )
    session.add(path)
    await session.flush()
    return path


async def clone_path(
    session: AsyncSession, campaign: Campaign, source: CampaignPath
) -> CampaignPath:
    """A copy of the path's audience and of its messages (as drafts), right after it."""
    messages = await messages_of(session, campaign.id, source.id)
    await ensure_room(session, campaign.id, paths=1, messages=len(messages))
    values = {k: list(getattr(source, k)) for k in AUDIENCE_FIELDS}
    values["name"] = f"{source.name} (copy)" if source.name else None
    path = await add_path(session, campaign, values, after=source.position)
    for message in messages:
        session.add(copy_message(message, path))
    await session.flush()
    return path


async def reorder_paths(
    session: AsyncSession, campaign: Campaign, order: list[uuid.UUID]
) -> list[CampaignPath]:
    paths = await paths_of(session, campaign.id)
    if sorted(order) != sorted(p.id for p in paths):
        raise ApiError(
            422,
            "invalid_order",
            f"path_ids must list every path of the campaign exactly once ({len(paths)} paths)",
        )
    by_id = {p.id: p for p in paths}
    for position, path_id in enumerate(order):
        by_id[path_id].position = position
    await session.flush()
    return [by_id[i] for i in order]


async def delete_path(session: AsyncSession, campaign: Campaign, path: CampaignPath) -> None:
    paths = await paths_of(session, campaign.id)
    if len(paths) == 1:
        raise ApiError(409, "last_path", "a campaign keeps at least one path")
    await session.delete(path)
    await session.flush()
    for position, other in enumerate(p for p in paths if p.id != path.id):
        other.position = position
    await session.flush()


# --- messages -----------------------------------------------------------------------------------


def copy_message(message: CampaignMessage, path: CampaignPath) -> CampaignMessage:
    values = {k: getattr(message, k) for k in MESSAGE_COPY}
    values["sender"], values["utm"] = dict(message.sender), dict(message.utm)
    return CampaignMessage(
        campaign_id=path.campaign_id, path_id=path.id, workspace_id=path.workspace_id, **values
    )


async def clone_message(
    session: AsyncSession, message: CampaignMessage, target: CampaignPath
) -> CampaignMessage:
    await ensure_room(session, target.campaign_id, messages=1)
    copy = copy_message(message, target)
    copy.name = f"{message.name} (copy)"
    session.add(copy)
    await session.flush()
    return copy


# --- status transitions and the Temporal schedule -----------------------------------------------


async def schedule(
    session: AsyncSession, temporal: Any, settings: Any, message: CampaignMessage
) -> None:
    """draft → scheduled (the caller has run the review), committed, then registered with
    Temporal (whose workflow reads the row). If Temporal refuses, the message is a draft again."""
    ensure_draft(message, "schedule")
    now = utcnow()
    message.status, message.scheduled_at, message.updated_at = S.scheduled, now, now
    message.status_reason = None
    await session.commit()
    try:
        await scheduling.schedule_message(
            temporal,
            settings,
            message.workspace_id,
            message.campaign_id,
            message.id,
            message.send_at,
        )
    except Exception as exc:
        log.exception("scheduling a campaign message failed", message_id=str(message.id))
        message.status, message.scheduled_at = S.draft, None
        await session.commit()
        raise ApiError(
            503, "scheduling_unavailable", "the message could not be scheduled; try again"
        ) from exc


async def revert(
    session: AsyncSession, temporal: Any, settings: Any, message: CampaignMessage
) -> None:
    """scheduled → draft: the schedule is removed; send settings unlock with the last one."""
    if message.status != S.scheduled:
        raise ApiError(
            409,
            "not_scheduled",
            f"only a scheduled message can be reverted; this one is {message.status}",
        )
    message.status, message.scheduled_at, message.updated_at = S.draft, None, utcnow()
    await session.flush()
    await _unschedule(temporal, settings, message)


async def cancel(
    session: AsyncSession,
    temporal: Any,
    settings: Any,
    message: CampaignMessage,
    reason: str | None,
) -> None:
    """draft/scheduled → cancelled; sending → cancelled_during_send (the rest is not sent)."""
    was = message.status
    if was in (S.sent, S.cancelled, S.cancelled_during_send):
        raise ApiError(409, "not_cancellable", f"a {was} message cannot be cancelled")
    now = utcnow()
    message.status = S.cancelled_during_send if was == S.sending else S.cancelled
    message.status_reason = reason or "cancelled by a user"
    message.updated_at = now
    if was == S.sending:
        message.finished_at = now
    await session.flush()
    if was in LIVE:
        await _unschedule(temporal, settings, message)


async def delete_message(
    session: AsyncSession, temporal: Any, settings: Any, message: CampaignMessage
) -> None:
    if message.status == S.sending:
        raise ApiError(409, "message_sending", "the message is being sent: cancel it first")
    was = message.status
    await session.delete(message)
    await session.flush()
    if was == S.scheduled:
        await _unschedule(temporal, settings, message)


async def _unschedule(temporal: Any, settings: Any, message: CampaignMessage) -> None:
    await scheduling.unschedule_message(temporal, settings, message.workspace_id, message.id)


async def mark_started(session: AsyncSession, message_id: uuid.UUID, at: datetime) -> None:
    """For the send workflow: scheduled → sending, and the campaign's settings lock for good."""
    message = await session.get(CampaignMessage, message_id)
    if message is None:
        return
    message.status, message.started_at = S.sending, at
    await session.execute(
        update(Campaign)
        .where(Campaign.id == message.campaign_id)
        .values(settings_locked_forever=True)
    )
    await session.flush()
