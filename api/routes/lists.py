"""Static lists: CRUD, bulk membership by id, email, phone or external id, the join/leave log."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import Reader, SessionDep, Writer
from api.errors import ApiError, not_found
from api.pagination import created_page, encode_cursor, id_cursor, time_cursor
from ingest import lists as members
from ingest.traits import normalize_email, normalize_phone
from models import ListMember, ListMembershipChange, Profile, ProfileList

router = APIRouter(prefix="/v1/lists", tags=["lists"])

MAX_IDENTIFIERS = 10_000
SOURCE_API = "api"
Limit = Query(50, ge=1, le=500, description="Items per page")
Cursor = Query(None, description="`next_cursor` of the previous page")


class ListCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=2000)


class ListUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=2000)


class ListPublic(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    created_at: datetime
    member_count: int


class ListPage(BaseModel):
    data: list[ListPublic]
    next_cursor: str | None


class MembersChange(BaseModel):
    """Profiles to add or remove, named by any identifier. At most 10,000 identifiers in all."""

    profile_ids: list[uuid.UUID] = []
    emails: list[str] = []
    phones: list[str] = Field(default=[], description="E.164, e.g. +48600100200")
    external_ids: list[str] = []

    @model_validator(mode="after")
    def _bounded(self) -> MembersChange:
        total = len(self.profile_ids) + len(self.emails) + len(self.phones)
        total += len(self.external_ids)
        if total == 0:
            raise ValueError("give at least one of profile_ids, emails, phones, external_ids")
        if total > MAX_IDENTIFIERS:
            raise ValueError(f"at most {MAX_IDENTIFIERS} identifiers per request, got {total}")
        return self


class Rejected(BaseModel):
    type: str = Field(description="profile_id, email, phone or external_id")
    identifier: str
    reason: str


class MembersAdded(BaseModel):
    joined: int = Field(description="Profiles that joined the list now")
    already_members: int
    created_profiles: int = Field(description="New profiles made for unknown emails/phones/ids")
    rejected: list[Rejected]


class MembersRemoved(BaseModel):
    left: int
    not_members: int
    rejected: list[Rejected]


class Member(BaseModel):
    profile_id: uuid.UUID
    external_id: str | None
    email: str | None
    phone: str | None
    source: str
    joined_at: datetime


class MemberPage(BaseModel):
    data: list[Member]
    next_cursor: str | None


class Change(BaseModel):
    profile_id: uuid.UUID
    action: str = Field(description="joined or left")
    source: str
    occurred_at: datetime


class ChangePage(BaseModel):
    data: list[Change]
    next_cursor: str | None


def _member_count():
    return (
        select(func.count())
        .where(ListMember.list_id == ProfileList.id)
        .correlate(ProfileList)
        .scalar_subquery()
    )


async def _get_list(session: AsyncSession, workspace_id: uuid.UUID, list_id: uuid.UUID):
    row = (
        await session.execute(
            select(ProfileList, _member_count()).where(
                ProfileList.id == list_id, ProfileList.workspace_id == workspace_id
            )
        )
    ).one_or_none()
    if row is None:
        raise not_found("list")
    return row


def _public(lst: ProfileList, count: int) -> ListPublic:
    return ListPublic(
        id=lst.id,
        name=lst.name,
        description=lst.description,
        created_at=lst.created_at,
        member_count=count,
    )


def _name_taken(name: str) -> ApiError:
    return ApiError(409, "conflict", f"a list named {name!r} already exists in this workspace")


@router.post("", response_model=ListPublic, status_code=status.HTTP_201_CREATED)
async def create_list(body: ListCreate, principal: Writer, session: SessionDep) -> ListPublic:
    lst = ProfileList(workspace_id=principal.workspace_id, **body.model_dump())
    session.add(lst)
    try:
        await session.commit()
    except IntegrityError:
        raise _name_taken(body.name) from None
    return _public(lst, 0)


@router.get("", response_model=ListPage)
async def list_lists(
    principal: Reader, session: SessionDep, limit: int = Limit, cursor: str | None = Cursor
) -> ListPage:
    query = select(ProfileList, _member_count()).where(
        ProfileList.workspace_id == principal.workspace_id
    )
    rows, next_cursor = await created_page(session, query, ProfileList, limit, cursor)
    return ListPage(data=[_public(lst, count) for lst, count in rows], next_cursor=next_cursor)


@router.get("/{list_id}", response_model=ListPublic)
async def get_list(list_id: uuid.UUID, principal: Reader, session: SessionDep) -> ListPublic:
    return _public(*await _get_list(session, principal.workspace_id, list_id))


@router.patch("/{list_id}", response_model=ListPublic)
async def update_list(
    list_id: uuid.UUID, body: ListUpdate, principal: Writer, session: SessionDep
) -> ListPublic:
    lst, count = await _get_list(session, principal.workspace_id, list_id)
    for key, value in body.model_dump(exclude_unset=True).items():
        if key == "name" and value is None:
            raise ApiError(422, "validation_error", "name cannot be null")
        setattr(lst, key, value)
    session.add(lst)
    try:
        await session.commit()
    except IntegrityError:
        raise _name_taken(body.name or "") from None
    return _public(lst, count)


@router.delete("/{list_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_list(list_id: uuid.UUID, principal: Writer, session: SessionDep) -> Response:
    """Delete the list with its memberships and their log."""
    lst, _ = await _get_list(session, principal.workspace_id, list_id)
    await session.delete(lst)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _normalized(body: MembersChange) -> tuple[members.Identifiers, list[Rejected]]:
    ids, rejected = members.Identifiers(profile_ids=list(dict.fromkeys(body.profile_ids))), []
    for kind, values, check, target in (
        ("email", body.emails, normalize_email, ids.emails),
        ("phone", body.phones, normalize_phone, ids.phones),
        ("external_id", body.external_ids, _external_id, ids.external_ids),
    ):
        for value in values:
            try:
                target.append(check(value))
            except ValueError as exc:
                rejected.append(Rejected(type=kind, identifier=value, reason=str(exc)))
    for target in (ids.emails, ids.phones, ids.external_ids):
        target[:] = dict.fromkeys(target)
    return ids, rejected


def _external_id(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 255:
        raise ValueError("external ids are 1-255 characters")
    return value


@router.post("/{list_id}/members", response_model=MembersAdded)
async def add_members(
    list_id: uuid.UUID, body: MembersChange, principal: Writer, session: SessionDep
) -> MembersAdded:
    """Add profiles; an email, phone or external id with no profile yet creates one."""
    await _get_list(session, principal.workspace_id, list_id)
    ids, rejected = _normalized(body)
    found = await members.find_profiles(session, principal.workspace_id, ids, create=True)
    rejected += [Rejected(type=k, identifier=v, reason="no such profile") for k, v in found.missing]
    profile_ids = set(found.found.values())
    joined = await members.add_members(
        session, principal.workspace_id, list_id, list(profile_ids), SOURCE_API
    )
    await session.commit()
    return MembersAdded(
        joined=len(joined),
        already_members=len(profile_ids) - len(joined),
        created_profiles=found.created,
        rejected=rejected,
    )


@router.delete("/{list_id}/members", response_model=MembersRemoved)
async def remove_members(
    list_id: uuid.UUID, body: MembersChange, principal: Writer, session: SessionDep
) -> MembersRemoved:
    await _get_list(session, principal.workspace_id, list_id)
    ids, rejected = _normalized(body)
    found = await members.find_profiles(session, principal.workspace_id, ids)
    rejected += [Rejected(type=k, identifier=v, reason="no such profile") for k, v in found.missing]
    profile_ids = set(found.found.values())
    left = await members.remove_members(
        session, principal.workspace_id, list_id, list(profile_ids), SOURCE_API
    )
    await session.commit()
    return MembersRemoved(
        left=len(left), not_members=len(profile_ids) - len(left), rejected=rejected
    )


@router.get("/{list_id}/members", response_model=MemberPage)
async def list_members(
    list_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    limit: int = Limit,
    cursor: str | None = Cursor,
) -> MemberPage:
    await _get_list(session, principal.workspace_id, list_id)
    query = (
        select(ListMember, Profile.external_id, Profile.email, Profile.phone)
        .join(Profile, Profile.id == ListMember.profile_id)
        .where(ListMember.list_id == list_id)
    )
    if cursor:
        query = query.where(
            tuple_(ListMember.joined_at, ListMember.profile_id) > tuple_(*time_cursor(cursor))
        )
    query = query.order_by(ListMember.joined_at, ListMember.profile_id).limit(limit + 1)
    rows = (await session.execute(query)).all()
    more, rows = len(rows) > limit, rows[:limit]
    data = [
        Member(
            profile_id=m.profile_id,
            external_id=ext,
            email=email,
            phone=phone,
            source=m.source,
            joined_at=m.joined_at,
        )
        for m, ext, email, phone in rows
    ]
    last = rows[-1][0] if more else None
    return MemberPage(
        data=data,
        next_cursor=encode_cursor(last.joined_at.isoformat(), last.profile_id) if last else None,
    )


@router.get("/{list_id}/changes", response_model=ChangePage)
async def list_changes(
    list_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    limit: int = Limit,
    cursor: str | None = Cursor,
) -> ChangePage:
    """Every join and leave, oldest first."""
    await _get_list(session, principal.workspace_id, list_id)
    query = select(ListMembershipChange).where(ListMembershipChange.list_id == list_id)
    if cursor:
        query = query.where(ListMembershipChange.id > id_cursor(cursor))
    query = query.order_by(ListMembershipChange.id).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    more, rows = len(rows) > limit, rows[:limit]
    return ChangePage(
        data=[Change.model_validate(c, from_attributes=True) for c in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )
