"""Campaign metrics: what a campaign's messages did, and how far a send has got.

`GET /v1/campaigns/{campaign_id}/metrics` answers the campaign's totals, each path's and each
message's (recipients, sent, skipped by reason, failed, delivered, opened, clicked, bounced,
unsubscribed, and the progress of every message); the path and message forms narrow it.
`.../messages/{message_id}/progress` is the one-query form a progress display polls.
How each figure is counted: `campaigns.metrics`.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import Reader, SessionDep
from campaigns import service
from campaigns.metrics import (
    CampaignMetrics,
    MessageMetrics,
    PathMetrics,
    Progress,
    campaign_metrics,
    progress,
)
from models.campaigns import CampaignMessageStatus

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


class MessageProgress(Progress):
    message_id: uuid.UUID
    status: CampaignMessageStatus


@router.get("/{campaign_id}/metrics", response_model=CampaignMetrics)
async def get_campaign_metrics(
    campaign_id: uuid.UUID, principal: Reader, session: SessionDep
) -> CampaignMetrics:
    """Totals for the campaign, and the same figures per path (in path order) and per message
    (by send time), each message with its progress."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    paths = await service.paths_of(session, campaign.id)
    messages = await service.messages_of(session, campaign.id)
    return await campaign_metrics(session, campaign.id, campaign.workspace_id, paths, messages)


@router.get("/{campaign_id}/paths/{path_id}/metrics", response_model=PathMetrics)
async def get_path_metrics(
    campaign_id: uuid.UUID, path_id: uuid.UUID, principal: Reader, session: SessionDep
) -> PathMetrics:
    """The path's totals (recipients: distinct profiles) and its messages' figures."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    path = await service.get_path(session, campaign, path_id)
    messages = await service.messages_of(session, campaign.id, path.id)
    figures = await campaign_metrics(session, campaign.id, campaign.workspace_id, [path], messages)
    return figures.paths[0]


@router.get("/{campaign_id}/messages/{message_id}/metrics", response_model=MessageMetrics)
async def get_message_metrics(
    campaign_id: uuid.UUID, message_id: uuid.UUID, principal: Reader, session: SessionDep
) -> MessageMetrics:
    """One message's figures and progress."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    message = await service.get_message(session, campaign, message_id)
    path = await service.get_path(session, campaign, message.path_id)
    figures = await campaign_metrics(session, campaign.id, campaign.workspace_id, [path], [message])
    return figures.paths[0].messages[0]


@router.get("/{campaign_id}/messages/{message_id}/progress", response_model=MessageProgress)
async def get_message_progress(
    campaign_id: uuid.UUID, message_id: uuid.UUID, principal: Reader, session: SessionDep
) -> MessageProgress:
    """How far the send has got — recipients, done, remaining (held), percent, current wave of
    all waves and when the next is due — for a progress bar to poll."""
    campaign = await service.get_campaign(session, principal.workspace_id, campaign_id)
    message = await service.get_message(session, campaign, message_id)
    figures = await progress(session, message)
    return MessageProgress(
        **figures.model_dump(), message_id=message.id, status=CampaignMessageStatus(message.status)
    )
