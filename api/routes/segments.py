"""Segments: dynamic groups of profiles defined by a condition, kept current.

CRUD, a preview that saves nothing, the members, the entry/exit log, daily member counts, a
manual refresh, and the condition language's JSON Schema. A definition is checked with
`validate_condition` (unknown lists or segments, cycles, bad values): each problem is one 422
detail located at `body.definition.<path>`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Reader, SessionDep, Writer
from api.errors import ApiError, not_found
from api.pagination import created_page, encode_cursor, id_cursor, time_cursor
from models import Profile, Segment, SegmentMember, SegmentMembershipChange
from segments import (
    Condition,
    condition_adapter,
    condition_json_schema,
    members_query,
    validate_condition,
)
from segments.membership import load_definitions, refresh_segments, with_dependents

router = APIRouter(prefix="/v1/segments", tags=["segments"])

SAMPLE = 20
Limit = Query(50, ge=1, le=500, description="Items per page")
Cursor = Query(None, description="`next_cursor` of the previous page")
DEFINITION = Field(
    description="A condition: groups `{all: [...]}`, `{any: [...]}`, `{not: {...}}` and typed "
    "leaves; the full JSON Schema is at `GET /v1/segments/schema`",
)


class SegmentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any] = DEFINITION


class SegmentUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any] | None = Field(default=None, description=DEFINITION.description)


class SegmentPublic(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    definition: dict[str, Any]
    member_count: int
    created_at: datetime
    updated_at: datetime = Field(
        description="When the definition last changed (a new name or description leaves it): "
        "the first computation after it is a baseline whose entries start no flow"
    )
    last_refreshed_at: datetime | None


class SegmentPage(BaseModel):
    data: list[SegmentPublic]
    next_cursor: str | None


class PreviewRequest(BaseModel):
    definition: dict[str, Any] = DEFINITION


class ProfileSummary(BaseModel):
    profile_id: uuid.UUID
    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None


class Preview(BaseModel):
    count: int
    sample: list[ProfileSummary] = Field(description=f"Up to {SAMPLE} matching profiles")


class Member(ProfileSummary):
    entered_at: datetime


class MemberPage(BaseModel):
    data: list[Member]
    next_cursor: str | None


class Change(BaseModel):
    profile_id: uuid.UUID
    action: str = Field(description="entered or exited")
    occurred_at: datetime


class ChangePage(BaseModel):
    data: list[Change]
    next_cursor: str | None


class Day(BaseModel):
    day: str = Field(description="Date in the workspace's timezone, YYYY-MM-DD")
    members: int = Field(description="Members at the end of the day")
    entered: int
    exited: int


class History(BaseModel):
    segment_id: uuid.UUID
    timezone: str
    days: list[Day]


class Refreshed(BaseModel):
    entered: int
    exited: int
    member_count: int


def _loc(path: str) -> str:
    """`all[1].count` -> `body.definition.all[1].count`; the root -> `body.definition`."""
    return "body.definition" + (f".{path}" if path else "")


def _invalid(details: list[dict[str, Any]]) -> ApiError:
    summary = "; ".join(f"{d['loc']}: {d['message']}" for d in details[:5])
    return ApiError(422, "invalid_definition", f"the definition is invalid — {summary}", details)


async def _condition(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    definition: dict[str, Any],
    segment_id: uuid.UUID | None = None,
) -> Condition:
    """The parsed, checked condition, or a 422 naming every problem (shape and references)."""
    errors = await validate_condition(session, workspace_id, definition, segment_id=segment_id)
    if errors:
        raise _invalid([{"loc": _loc(e.path), "message": e.message} for e in errors])
    return condition_adapter.validate_python(definition)


def _public(segment: Segment) -> SegmentPublic:
    return SegmentPublic.model_validate(segment, from_attributes=True)


async def _get(session: AsyncSession, workspace_id: uuid.UUID, segment_id: uuid.UUID) -> Segment:
    segment = await session.get(Segment, segment_id)
    if segment is None or segment.workspace_id != workspace_id:
        raise not_found("segment")
    return segment


def _same_condition(stored: dict[str, Any], condition: Condition) -> bool:
    """Whether a saved definition parses to the same condition tree as `condition`."""
    try:
        return condition_adapter.validate_python(stored) == condition
    except ValueError:  # a definition saved under an older condition language
        return False


def _name_taken(name: str) -> ApiError:
    return ApiError(409, "conflict", f"a segment named {name!r} already exists in this workspace")


async def _refresh_with_dependents(
    session: AsyncSession, workspace_id: uuid.UUID, segment_id: uuid.UUID
) -> tuple[int, int]:
    definitions = await load_definitions(session, workspace_id)
    chosen = with_dependents(definitions, [segment_id])
    results = await refresh_segments(
        session, workspace_id, definitions, chosen, now=datetime.now(UTC)
    )
    own = results[segment_id]
    return len(own.entered), len(own.exited)


@router.get("/schema", response_model=dict[str, Any])
async def condition_schema(_: Reader) -> dict[str, Any]:
    """The JSON Schema of the condition language (segments, flow filters and splits)."""
    return condition_json_schema()


@router.post("/preview", response_model=Preview)
async def preview(body: PreviewRequest, principal: Reader, session: SessionDep) -> Preview:
    """How many profiles match a definition now, and a sample of them. Nothing is saved."""
    condition = await _condition(session, principal.workspace_id, body.definition)
    matching = members_query(principal.workspace_id, condition, now=datetime.now(UTC)).subquery()
    member = next(iter(matching.c))
    count = (await session.execute(select(func.count()).select_from(matching))).scalar_one()
    rows = (
        await session.execute(
            select(Profile)
            .where(Profile.id.in_(select(member)))
            .order_by(Profile.created_at, Profile.id)
            .limit(SAMPLE)
        )
    ).scalars()
    return Preview(count=count, sample=[_summary(p) for p in rows])


def _summary(profile: Profile) -> ProfileSummary:
    return ProfileSummary(
        profile_id=profile.id,
        external_id=profile.external_id,
        email=profile.email,
        phone=profile.phone,
        first_name=profile.first_name,
        last_name=profile.last_name,
    )


@router.post("", response_model=SegmentPublic, status_code=status.HTTP_201_CREATED)
async def create_segment(
    body: SegmentCreate, principal: Writer, session: SessionDep
) -> SegmentPublic:
    """Save a segment and compute its members at once."""
    ws = principal.workspace_id
    await _condition(session, ws, body.definition)
    segment = Segment(workspace_id=ws, **body.model_dump())
    session.add(segment)
    try:
        await session.flush()
    except IntegrityError:
        raise _name_taken(body.name) from None
    await _refresh_with_dependents(session, ws, segment.id)
    await session.commit()
    await session.refresh(segment)
    return _public(segment)


@router.get("", response_model=SegmentPage)
async def list_segments(
    principal: Reader, session: SessionDep, limit: int = Limit, cursor: str | None = Cursor
) -> SegmentPage:
    query = select(Segment).where(Segment.workspace_id == principal.workspace_id)
    rows, next_cursor = await created_page(session, query, Segment, limit, cursor)
    return SegmentPage(
        data=[_public(s) for s in rows],
        next_cursor=next_cursor,
    )


@router.get("/{segment_id}", response_model=SegmentPublic)
async def get_segment(segment_id: uuid.UUID, principal: Reader, session: SessionDep):
    return _public(await _get(session, principal.workspace_id, segment_id))


@router.patch("/{segment_id}", response_model=SegmentPublic)
async def update_segment(
    segment_id: uuid.UUID, body: SegmentUpdate, principal: Writer, session: SessionDep
) -> SegmentPublic:
    """Rename, describe or redefine. A new definition recomputes the members (entries and exits
    are logged) and those of the segments that read this one, as a baseline: those entries
    start no "entered segment" flow. A new name or description is not a new definition: it
    moves no timestamp, so the next refresh's entries start flows as before."""
    ws = principal.workspace_id
    segment = await _get(session, ws, segment_id)
    changes = body.model_dump(exclude_unset=True)
    for key in ("name", "definition"):
        if key in changes and changes[key] is None:
            raise ApiError(422, "validation_error", f"{key} cannot be null")
    redefined = False
    if "definition" in changes:
        condition = await _condition(session, ws, changes["definition"], segment_id)
        redefined = not _same_condition(segment.definition, condition)
    for key, value in changes.items():
        setattr(segment, key, value)
    if redefined:
        # What marks a baseline (segments.membership): last_refreshed_at before updated_at.
        segment.updated_at = datetime.now(UTC)
    session.add(segment)
    try:
        await session.flush()
    except IntegrityError:
        raise _name_taken(body.name or "") from None
    if redefined:
        await _refresh_with_dependents(session, ws, segment_id)
    await session.commit()
    await session.refresh(segment)
    return _public(segment)


@router.delete("/{segment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_segment(segment_id: uuid.UUID, principal: Writer, session: SessionDep):
    """Delete the segment, its members and its log. Refused while another segment reads it."""
    ws = principal.workspace_id
    segment = await _get(session, ws, segment_id)
    definitions = await load_definitions(session, ws)
    readers = sorted(sid for sid, d in definitions.items() if segment_id in d.deps.segments)
    if readers:
        names = (
            await session.execute(select(Segment.name).where(Segment.id.in_(readers)))
        ).scalars()
        quoted = ", ".join(repr(n) for n in sorted(names))
        raise ApiError(
            409,
            "segment_in_use",
            f"segment {segment.name!r} is used by segment {quoted}: remove it from there first",
        )
    await session.delete(segment)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{segment_id}/refresh", response_model=Refreshed)
async def refresh(segment_id: uuid.UUID, principal: Writer, session: SessionDep) -> Refreshed:
    """Recompute the members now (and those of the segments that read this one)."""
    segment = await _get(session, principal.workspace_id, segment_id)
    entered, exited = await _refresh_with_dependents(session, principal.workspace_id, segment_id)
    await session.commit()
    await session.refresh(segment)
    return Refreshed(entered=entered, exited=exited, member_count=segment.member_count)


@router.get("/{segment_id}/members", response_model=MemberPage)
async def list_members(
    segment_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    limit: int = Limit,
    cursor: str | None = Cursor,
) -> MemberPage:
    """Current members, in the order they entered."""
    await _get(session, principal.workspace_id, segment_id)
    query = (
        select(SegmentMember.entered_at, Profile)
        .join(Profile, Profile.id == SegmentMember.profile_id)
        .where(SegmentMember.segment_id == segment_id)
    )
    if cursor:
        query = query.where(
            tuple_(SegmentMember.entered_at, SegmentMember.profile_id)
            > tuple_(*time_cursor(cursor))
        )
    query = query.order_by(SegmentMember.entered_at, SegmentMember.profile_id).limit(limit + 1)
    rows = (await session.execute(query)).all()
    more, rows = len(rows) > limit, rows[:limit]
    data = [Member(entered_at=at, **_summary(p).model_dump()) for at, p in rows]
    last = data[-1] if more else None
    return MemberPage(
        data=data,
        next_cursor=encode_cursor(last.entered_at.isoformat(), last.profile_id) if last else None,
    )


@router.get("/{segment_id}/changes", response_model=ChangePage)
async def list_changes(
    segment_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    action: Literal["entered", "exited"] | None = Query(None, description="Only this action"),
    since: datetime | None = Query(None, description="Only changes at or after this time"),
    limit: int = Limit,
    cursor: str | None = Cursor,
) -> ChangePage:
    """Every entry and exit, oldest first."""
    await _get(session, principal.workspace_id, segment_id)
    query = select(SegmentMembershipChange).where(SegmentMembershipChange.segment_id == segment_id)
    if action:
        query = query.where(SegmentMembershipChange.action == action)
    if since:
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        query = query.where(SegmentMembershipChange.occurred_at >= since)
    if cursor:
        query = query.where(SegmentMembershipChange.id > id_cursor(cursor))
    rows = list(
        (
            await session.execute(query.order_by(SegmentMembershipChange.id).limit(limit + 1))
        ).scalars()
    )
    more, rows = len(rows) > limit, rows[:limit]
    return ChangePage(
        data=[Change.model_validate(c, from_attributes=True) for c in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


_HISTORY = text(
    """
    WITH bounds AS (
        SELECT w.timezone AS tz, (now() AT TIME ZONE w.timezone)::date AS today
        FROM workspaces w WHERE w.id = :workspace
    ), days AS (
        SELECT d::date AS day
        FROM bounds, generate_series(today - (:days - 1), today, interval '1 day') AS d
    ), per_day AS (
        SELECT (c.occurred_at AT TIME ZONE bounds.tz)::date AS day,
               count(*) FILTER (WHERE c.action = 'entered') AS entered,
               count(*) FILTER (WHERE c.action = 'exited') AS exited
        FROM segment_membership_changes c, bounds
        WHERE c.segment_id = :segment
          AND c.occurred_at >= ((bounds.today - (:days - 1))::timestamp AT TIME ZONE bounds.tz)
        GROUP BY 1
    )
    SELECT d.day,
           coalesce(p.entered, 0) AS entered,
           coalesce(p.exited, 0) AS exited,
           (SELECT count(*) FROM segment_members WHERE segment_id = :segment)
             - coalesce(sum(coalesce(p.entered, 0) - coalesce(p.exited, 0)) OVER (
                   ORDER BY d.day DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
             AS members,
           (SELECT tz FROM bounds) AS tz
    FROM days d LEFT JOIN per_day p USING (day)
    ORDER BY d.day
    """
)


@router.get("/{segment_id}/history", response_model=History)
async def history(
    segment_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    days: int = Query(30, ge=1, le=366, description="How many days back, today included"),
) -> History:
    """Members at the end of each day, with the day's entries and exits (from the change log)."""
    await _get(session, principal.workspace_id, segment_id)
    params = {"workspace": principal.workspace_id, "days": days, "segment": segment_id}
    rows = (await session.execute(_HISTORY, params)).all()
    return History(
        segment_id=segment_id,
        timezone=rows[0].tz if rows else "UTC",
        days=[
            Day(day=r.day.isoformat(), members=r.members, entered=r.entered, exited=r.exited)
            for r in rows
        ],
    )
