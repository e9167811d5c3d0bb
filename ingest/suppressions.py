"""Suppressing and lifting addresses (email lower-cased, phone E.164): the one place that does,
so segments reading "can receive" stay current whoever suppresses — the API, a bounce, a spam
report or an invalid number reported by a provider."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.profiles import profiles_changed
from models import Channel, Profile, Suppression


async def suppress(
    session: AsyncSession, workspace_id: uuid.UUID, channel: Channel, address: str, reason: str
) -> bool:
    """Suppress an address; False when it already was (the first reason is kept)."""
    inserted = (
        await session.execute(
            insert(Suppression)
            .values(workspace_id=workspace_id, channel=channel, address=address, reason=reason)
            .on_conflict_do_nothing()
            .returning(Suppression.address)
        )
    ).first()
    if inserted is not None:
        await _address_changed(session, workspace_id, address)
    return inserted is not None


async def unsuppress(
    session: AsyncSession, workspace_id: uuid.UUID, channel: Channel, address: str
) -> bool:
    """Lift a suppression; False when there was none."""
    result = await session.execute(
        delete(Suppression).where(
            Suppression.workspace_id == workspace_id,
            Suppression.channel == channel,
            Suppression.address == address,
        )
    )
    if result.rowcount:
        await _address_changed(session, workspace_id, address)
    return bool(result.rowcount)


async def _address_changed(session: AsyncSession, workspace_id: uuid.UUID, address: str) -> None:
    owners = await session.execute(
        select(Profile.id).where(
            Profile.workspace_id == workspace_id,
            or_(func.lower(Profile.email) == address, Profile.phone == address),
        )
    )
    await profiles_changed(session, workspace_id, list(owners.scalars()), changed={"consents"})
