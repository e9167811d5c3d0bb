"""Applying Segment calls: profiles and aliases first (in order), then every event in one go.

Each call is stored whole or not at all: an identify or alias runs in its own savepoint, and the
events of all good track/page calls are written by one statement. Bad calls are reported by
their index; the good ones are stored. The caller commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ingest import identity
from ingest.events import NewEvent, store_events
from ingest.profiles import merge_profiles, write_profile
from ingest.segment import (
    PAGE_METRIC,
    AliasCall,
    Call,
    IdentifyCall,
    PageCall,
    Rejected,
    TrackCall,
    any_call,
    event_value,
    page_properties,
)
from ingest.traits import ProfileDataError


@dataclass
class Outcome:
    accepted: int
    rejected: list[Rejected]
    stored_event_ids: list[int]


def parse_calls(items: list[Any]) -> tuple[list[tuple[int, Call]], list[Rejected]]:
    """Validate each batch item on its own: bad items are rejected, not the batch."""
    calls, rejected = [], []
    for index, item in enumerate(items):
        try:
            calls.append((index, any_call.validate_python(item)))
        except ValidationError as exc:
            rejected.append(Rejected(index=index, reason=describe(exc)))
    return calls, rejected


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"] if not str(p).endswith("Call"))
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


async def apply_calls(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    calls: list[tuple[int, Call]],
    received_at: datetime,
    batch_sent_at: datetime | None = None,
) -> Outcome:
    rejected: list[Rejected] = []
    event_calls: list[tuple[int, TrackCall | PageCall]] = []
    for index, call in calls:
        if isinstance(call, TrackCall | PageCall):
            event_calls.append((index, call))
            continue
        try:
            async with session.begin_nested():
                if await _first_time(session, workspace_id, call):
                    if isinstance(call, IdentifyCall):
                        await _identify(session, workspace_id, call)
                    else:
                        await _alias(session, workspace_id, call)
        except ProfileDataError as exc:
            rejected.append(Rejected(index=index, reason=str(exc)))

    valid: list[tuple[TrackCall | PageCall, Decimal | None, datetime]] = []
    for index, call in event_calls:
        try:
            value = _decimal(event_value(call.properties)) if isinstance(call, TrackCall) else None
            occurred_at = call.occurred_at(received_at, batch_sent_at)
        except ValueError as exc:
            rejected.append(Rejected(index=index, reason=str(exc)))
            continue
        except OverflowError:
            rejected.append(Rejected(index=index, reason="timestamp: out of range"))
            continue
        valid.append((call, value, occurred_at))
    stored = await _store(session, workspace_id, valid)
    rejected.sort(key=lambda r: r.index)
    return Outcome(len(calls) - len(rejected), rejected, stored)


RESOLVE_ATTEMPTS = 3
_GONE = text(
    "SELECT x FROM unnest(CAST(:ids AS uuid[])) AS x"
    " WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.id = x)"
)


async def _store(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    valid: list[tuple[TrackCall | PageCall, Decimal | None, datetime]],
) -> list[int]:
    """Resolve the events' profiles and store the events. An event whose profile was merged
    away or erased in between is not stored (`store_events`); its identity is resolved again
    (now naming the merge's target, or a new profile) and it is stored then: an accepted event
    is never dropped."""
    stored: list[int] = []
    for _ in range(RESOLVE_ATTEMPTS):
        profiles = await identity.resolve(
            session, workspace_id, {_identity(call) for call, _, _ in valid}
        )
        events = [
            _event(call, value, profiles[_identity(call)], occurred_at)
            for call, value, occurred_at in valid
        ]
        new = await store_events(session, workspace_id, events)
        stored += new
        if len(new) == len(events):
            return stored
        # Fewer stored: replays, or events of a profile that is gone.
        ids = list({e.profile_id for e in events})
        gone = set((await session.execute(_GONE, {"ids": ids})).scalars())
        if not gone:
            return stored
        valid = [v for v, e in zip(valid, events, strict=True) if e.profile_id in gone]
    raise RuntimeError(f"profiles kept disappearing while storing events: {sorted(gone)}")


async def _first_time(session: AsyncSession, workspace_id: uuid.UUID, call: Call) -> bool:
    """Record an identify/alias message id; False when it was processed before (a replay)."""
    if call.messageId is None:
        return True
    inserted = await session.execute(
        text(
            "INSERT INTO processed_calls (workspace_id, message_id) VALUES (:ws, :mid) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"ws": workspace_id, "mid": f"{call.type}:{call.messageId}"},
    )
    return inserted.first() is not None


async def _identify(session: AsyncSession, workspace_id: uuid.UUID, call: IdentifyCall) -> None:
    profile_id = await identity.resolve_one(
        session, workspace_id, user_id=call.userId, anonymous_id=call.anonymousId
    )
    traits = dict(call.traits)
    # The browser's locale and time zone fill in what the traits do not say.
    for key in ("locale", "timezone"):
        if key not in traits and isinstance(call.context.get(key), str):
            traits[key] = call.context[key]
    traits.pop("id", None)  # Segment's alias of userId, not a property
    if traits:
        await write_profile(session, workspace_id, traits, profile_id=profile_id)


async def _alias(session: AsyncSession, workspace_id: uuid.UUID, call: AliasCall) -> None:
    """`previousId` (an anonymous id or an older user id) becomes part of `userId`'s profile."""
    target = (await identity.known_profiles(session, workspace_id, [call.userId]))[call.userId]
    source = (
        await session.execute(
            text(
                "SELECT profile_id FROM profile_aliases WHERE workspace_id = :ws "
                "AND anonymous_id = :prev UNION ALL SELECT id FROM profiles "
                "WHERE workspace_id = :ws AND external_id = :prev LIMIT 1"
            ),
            {"ws": workspace_id, "prev": call.previousId},
        )
    ).scalar_one_or_none()
    if source is None:
        await identity.link_anonymous(session, workspace_id, {call.previousId: target})
        return
    if source != target:
        # The previous profile's external id gives way to the new one.
        await session.execute(
            text("UPDATE profiles SET external_id = NULL WHERE id = :id"), {"id": source}
        )
        await merge_profiles(session, workspace_id, source=source, target=target)


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("properties.revenue/value must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("properties.revenue/value must be a number") from None
    if not number.is_finite() or abs(number) >= Decimal("1e14"):
        raise ValueError("properties.revenue/value is out of range")
    return number.quantize(Decimal("0.0001"))


def _identity(call: Call) -> identity.Identity:
    return identity.Identity(call.userId, call.anonymousId)


def _event(
    call: TrackCall | PageCall,
    value: Decimal | None,
    profile_id: uuid.UUID,
    occurred_at: datetime,
) -> NewEvent:
    if isinstance(call, TrackCall):
        metric, properties = call.event, call.properties
        currency = call.properties.get("currency")
    else:
        metric, properties, currency = PAGE_METRIC, page_properties(call), None
    return NewEvent(
        profile_id=profile_id,
        metric=metric,
        message_id=call.messageId or str(uuid.uuid4()),
        occurred_at=occurred_at,
        properties=properties,
        value=value,
        currency=currency.upper()[:3] if isinstance(currency, str) and currency else None,
        context=call.context,
    )
