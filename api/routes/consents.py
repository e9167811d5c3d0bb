"""A profile's consent per channel: current state (with suppression), history, and changes.

Every change goes through `ingest.consents.apply_consents`, so the history is never skipped.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Reader, SessionDep, Writer
from api.routes.profiles import ApiConsentSource, Settable, require_profile
from ingest.consents import ConsentUpdate, apply_consents
from models import (
    Channel,
    Consent,
    ConsentChange,
    ConsentSource,
    ConsentState,
    Profile,
    PushSubscription,
    Suppression,
)

router = APIRouter(prefix="/v1/profiles", tags=["consents"])


class ChannelConsent(BaseModel):
    channel: Channel
    state: ConsentState
    source: ConsentSource | None
    updated_at: datetime | None
    address: str | None = Field(description="The email or phone the channel sends to")
    suppressed: bool = Field(description="The address is suppressed: nothing is sent to it")
    suppression_reason: str | None
    can_receive_marketing: bool = Field(
        description="Subscribed, with an address (or a push subscription) that is not suppressed"
    )


class ConsentStatus(BaseModel):
    profile_id: uuid.UUID
    channels: dict[Channel, ChannelConsent]


class ConsentPut(BaseModel):
    state: Settable
    source: ApiConsentSource = "api"


class ConsentChangePublic(BaseModel):
    channel: Channel
    state: ConsentState
    source: ConsentSource
    occurred_at: datetime


class ConsentHistory(BaseModel):
    data: list[ConsentChangePublic] = Field(description="Newest first")


async def _consent_status(session: AsyncSession, profile: Profile) -> ConsentStatus:
    consents = {
        c.channel: c
        for c in (
            await session.execute(select(Consent).where(Consent.profile_id == profile.id))
        ).scalars()
    }
    addresses = {
        Channel.email: profile.email.lower() if profile.email else None,
        Channel.sms: profile.phone,
        Channel.whatsapp: profile.phone,
        Channel.push: None,
    }
    wanted = [(ch, a) for ch, a in addresses.items() if a is not None]
    suppressed: dict[str, str] = {}
    if wanted:
        rows = await session.execute(
            select(Suppression.channel, Suppression.reason).where(
                Suppression.workspace_id == profile.workspace_id,
                tuple_(Suppression.channel, Suppression.address).in_(wanted),
            )
        )
        suppressed = {channel: reason for channel, reason in rows}
    has_push = (
        await session.execute(select(exists().where(PushSubscription.profile_id == profile.id)))
    ).scalar_one()
    channels = {}
    for channel in Channel:
        consent = consents.get(channel)
        state = ConsentState(consent.state) if consent else ConsentState.never
        reachable = has_push if channel == Channel.push else addresses[channel] is not None
        channels[channel] = ChannelConsent(
            channel=channel,
            state=state,
            source=consent.source if consent else None,
            updated_at=consent.updated_at if consent else None,
            address=addresses[channel] if channel != Channel.email else profile.email,
            suppressed=channel in suppressed,
            suppression_reason=suppressed.get(channel),
            can_receive_marketing=state == ConsentState.subscribed
            and reachable
            and channel not in suppressed,
        )
    return ConsentStatus(profile_id=profile.id, channels=channels)


@router.get("/{profile_id}/consents", response_model=ConsentStatus)
async def get_consents(
    profile_id: uuid.UUID, principal: Reader, session: SessionDep
) -> ConsentStatus:
    """The consent on every channel (`never` when never asked), and whether it can be used."""
    profile = await require_profile(session, principal.workspace_id, profile_id)
    return await _consent_status(session, profile)


@router.get("/{profile_id}/consents/history", response_model=ConsentHistory)
async def consent_history(
    profile_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    channel: Channel | None = None,
) -> ConsentHistory:
    await require_profile(session, principal.workspace_id, profile_id)
    query = select(ConsentChange).where(
        ConsentChange.profile_id == profile_id,
        ConsentChange.workspace_id == principal.workspace_id,
    )
    if channel is not None:
        query = query.where(ConsentChange.channel == channel)
    rows = await session.execute(
        query.order_by(ConsentChange.occurred_at.desc(), ConsentChange.id.desc())
    )
    return ConsentHistory(
        data=[ConsentChangePublic.model_validate(c, from_attributes=True) for c in rows.scalars()]
    )


@router.put("/{profile_id}/consents/{channel}", response_model=ChannelConsent)
async def set_consent(
    profile_id: uuid.UUID,
    channel: Channel,
    body: ConsentPut,
    principal: Writer,
    session: SessionDep,
) -> ChannelConsent:
    """Subscribe or unsubscribe the profile on a channel; a change is recorded in the history."""
    profile = await require_profile(session, principal.workspace_id, profile_id)
    update_ = ConsentUpdate(
        profile_id, channel, ConsentState(body.state), ConsentSource(body.source)
    )
    await apply_consents(session, principal.workspace_id, [update_])
    result = (await _consent_status(session, profile)).channels[channel]
    await session.commit()
    return result
