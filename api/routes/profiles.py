"""Profiles: create, read, update, list, look up, consents, erasure and export.

Every route is scoped to the caller's workspace: a profile of another workspace answers 404
exactly as one that does not exist.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exists, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import EngineDep, Reader, SessionDep, TemporalDep, Writer
from api.errors import ApiError, not_found
from api.pagination import encode_cursor, time_cursor
from ingest import erasure
from ingest.consents import ConsentUpdate, apply_consents
from ingest.export import export_profile
from ingest.profiles import write_profile
from ingest.traits import (
    ALIASES,
    RESERVED,
    FieldError,
    ProfileConflictError,
    ProfileDataError,
    normalize_email,
    normalize_phone,
)
from models import (
    Channel,
    ConsentSource,
    ConsentState,
    ListMember,
    Profile,
    ProfileAlias,
)

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/profiles", tags=["profiles"])

IDENTIFIERS = ("external_id", *RESERVED)  # the top-level fields of a profile body
# Names a custom property may not take: write_profile would read them as profile fields.
_NOT_PROPERTIES = frozenset(IDENTIFIERS) | frozenset(ALIASES)

Settable = Literal["subscribed", "unsubscribed"]
ApiConsentSource = Literal["api", "form", "import", "keyword", "unsubscribe_link", "bounce"]


class ProfileCreate(BaseModel):
    """A new profile: reserved fields at the top level, custom ones under `properties`."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = Field(default=None, min_length=1, max_length=255)
    email: str | None = None
    phone: str | None = Field(default=None, description="E.164, or national with `country`")
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = Field(default=None, description="IANA, e.g. Europe/Warsaw")
    locale: str | None = Field(default=None, description="e.g. pl-PL")
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2, e.g. PL")
    region: str | None = None
    city: str | None = None
    postal_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="Custom properties; each one's type is fixed by its first value",
    )
    consents: dict[Channel, Settable] | None = Field(
        default=None, examples=[{"email": "subscribed"}], description="Applied with source `api`"
    )


class ProfileUpdate(ProfileCreate):
    """A partial update: only the fields sent change. Properties merge into the stored ones;
    a property set to null is removed; a reserved field set to null is cleared."""


class ProfilePublic(BaseModel):
    id: uuid.UUID
    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    locale: str | None
    country: str | None
    region: str | None
    city: str | None
    postal_code: str | None
    latitude: float | None
    longitude: float | None
    properties: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ProfilePage(BaseModel):
    data: list[ProfilePublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


async def require_profile(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> Profile:
    """The profile, if it belongs to this workspace; else 404."""
    profile = (
        await session.execute(
            select(Profile)
            .where(Profile.id == profile_id, Profile.workspace_id == workspace_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if profile is None:
        raise not_found("profile")
    return profile


def _public(profile: Profile) -> ProfilePublic:
    return ProfilePublic.model_validate(profile, from_attributes=True)


def _invalid(loc: str, message: str) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        f"invalid request — {loc}: {message}",
        [{"loc": loc, "message": message, "type": "value_error"}],
    )


def _field_loc(name: str) -> str:
    if name in IDENTIFIERS or name == "properties" or name.startswith("properties."):
        return f"body.{name}"
    return f"body.properties.{name}"


def _data_error(exc: ProfileDataError) -> ApiError:
    """422 naming each bad field, or 409 when an identifier belongs to another profile."""
    status_code, code = (
        (409, "conflict") if isinstance(exc, ProfileConflictError) else (422, "validation_error")
    )
    details = [{"loc": _field_loc(e.field), "message": e.message, "type": code} for e in exc.errors]
    summary = "; ".join(f"{d['loc']}: {d['message']}" for d in details[:5])
    return ApiError(status_code, code, summary, details)


def _profile_data(body: ProfileCreate) -> dict[str, Any]:
    """What write_profile takes: the reserved fields sent, and the custom properties."""
    bad = [
        FieldError(f"properties.{name}", "is a profile field: send it at the top level instead")
        for name, value in body.properties.items()
        if name in _NOT_PROPERTIES or (name == "address" and isinstance(value, dict))
    ]
    if bad:
        raise _data_error(ProfileDataError(bad))
    sent = body.model_dump(include=body.model_fields_set & set(RESERVED))
    return {**sent, **body.properties}


async def _write(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    body: ProfileCreate,
    profile_id: uuid.UUID | None = None,
) -> uuid.UUID:
    data = _profile_data(body)
    try:
        profile_id = await write_profile(
            session, workspace_id, data, profile_id=profile_id, external_id=body.external_id
        )
    except ProfileDataError as exc:
        raise _data_error(exc) from None
    except LookupError:
        raise not_found("profile") from None
    if "external_id" in body.model_fields_set and body.external_id is None:
        # write_profile only ever sets an external id; clearing one is this route's own.
        await session.execute(
            update(Profile).where(Profile.id == profile_id).values(external_id=None)
        )
    if body.consents:
        await apply_consents(
            session,
            workspace_id,
            [
                ConsentUpdate(profile_id, channel, ConsentState(state), ConsentSource.api)
                for channel, state in body.consents.items()
            ],
        )
    return profile_id


@router.post("", response_model=ProfilePublic, status_code=status.HTTP_201_CREATED)
async def create_profile(
    body: ProfileCreate, principal: Writer, session: SessionDep
) -> ProfilePublic:
    profile_id = await _write(session, principal.workspace_id, body)
    profile = await require_profile(session, principal.workspace_id, profile_id)
    await session.commit()
    return _public(profile)


def _encode_cursor(profile: Profile) -> str:
    return encode_cursor(profile.created_at.isoformat(), profile.id)


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        return time_cursor(cursor)
    except ApiError:  # this listing answers a bad cursor as a 422 on query.cursor
        raise _invalid("query.cursor", "not a cursor this API returned") from None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _email(value: str, loc: str) -> str:
    try:
        return normalize_email(value).lower()
    except ValueError as exc:
        raise _invalid(loc, str(exc)) from None


def _phone(value: str, loc: str) -> str:
    try:
        return normalize_phone(value)
    except ValueError as exc:
        raise _invalid(loc, str(exc)) from None


@router.get("", response_model=ProfilePage)
async def list_profiles(
    principal: Reader,
    session: SessionDep,
    email: str | None = None,
    phone: str | None = Query(default=None, description="E.164, e.g. +48601234567"),
    external_id: str | None = None,
    updated_since: datetime | None = None,
    created_since: datetime | None = None,
    list_id: uuid.UUID | None = Query(default=None, description="Members of this list only"),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page"),
) -> ProfilePage:
    """Profiles oldest first, a page at a time (keyset pagination on (created_at, id))."""
    query = select(Profile).where(Profile.workspace_id == principal.workspace_id)
    if email is not None:
        query = query.where(func.lower(Profile.email) == _email(email, "query.email"))
    if phone is not None:
        query = query.where(Profile.phone == _phone(phone, "query.phone"))
    if external_id is not None:
        query = query.where(Profile.external_id == external_id)
    if updated_since is not None:
        query = query.where(Profile.updated_at >= _aware(updated_since))
    if created_since is not None:
        query = query.where(Profile.created_at >= _aware(created_since))
    if list_id is not None:
        query = query.where(
            exists().where(ListMember.list_id == list_id, ListMember.profile_id == Profile.id)
        )
    if cursor is not None:
        query = query.where(tuple_(Profile.created_at, Profile.id) > _decode_cursor(cursor))
    rows = (
        (await session.execute(query.order_by(Profile.created_at, Profile.id).limit(limit + 1)))
        .scalars()
        .all()
    )
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
    return ProfilePage(data=[_public(p) for p in page], next_cursor=next_cursor)


@router.get("/lookup", response_model=ProfilePublic)
async def lookup_profile(
    principal: Reader,
    session: SessionDep,
    email: str | None = Query(default=None, description="Case-insensitive"),
    phone: str | None = Query(default=None, description="Any format with a +country code"),
    external_id: str | None = None,
    anonymous_id: str | None = None,
) -> ProfilePublic:
    """The one profile with this identifier (give exactly one), or 404."""
    given = {
        k: v
        for k, v in {
            "email": email,
            "phone": phone,
            "external_id": external_id,
            "anonymous_id": anonymous_id,
        }.items()
        if v is not None
    }
    if len(given) != 1:
        raise _invalid("query", "give exactly one of email, phone, external_id, anonymous_id")
    query = select(Profile).where(Profile.workspace_id == principal.workspace_id)
    if email is not None:
        query = query.where(func.lower(Profile.email) == _email(email, "query.email"))
    elif phone is not None:
        query = query.where(Profile.phone == _phone(phone, "query.phone"))
    elif external_id is not None:
        query = query.where(Profile.external_id == external_id)
    else:
        query = query.join(ProfileAlias, ProfileAlias.profile_id == Profile.id).where(
            ProfileAlias.workspace_id == principal.workspace_id,
            ProfileAlias.anonymous_id == anonymous_id,
        )
    profile = (await session.execute(query)).scalar_one_or_none()
    if profile is None:
        raise not_found("profile")
    return _public(profile)


@router.get("/{profile_id}", response_model=ProfilePublic)
async def get_profile(profile_id: uuid.UUID, principal: Reader, session: SessionDep):
    return _public(await require_profile(session, principal.workspace_id, profile_id))


@router.patch("/{profile_id}", response_model=ProfilePublic)
async def update_profile(
    profile_id: uuid.UUID, body: ProfileUpdate, principal: Writer, session: SessionDep
) -> ProfilePublic:
    await require_profile(session, principal.workspace_id, profile_id)
    await _write(session, principal.workspace_id, body, profile_id)
    profile = await require_profile(session, principal.workspace_id, profile_id)
    await session.commit()
    return _public(profile)


@router.delete("/{profile_id}", status_code=status.HTTP_204_NO_CONTENT)
async def erase_profile(
    profile_id: uuid.UUID, principal: Writer, session: SessionDep, temporal: TemporalDep
) -> Response:
    """Erase a profile (GDPR): all its personal data, then its running journeys.

    The data is deleted and committed first, so it is gone even while Temporal is unreachable;
    a journey that could not be terminated finds no profile when it wakes, and ends.
    """
    if not await erasure.erase_profile(session, principal.workspace_id, profile_id):
        raise not_found("profile")
    await session.commit()
    try:
        await erasure.terminate_journeys(temporal, principal.workspace_id, profile_id)
    except Exception as exc:  # the erasure is committed: the answer stays 204
        log.error(
            "erased profile's journeys not terminated", profile_id=str(profile_id), exc_info=exc
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{profile_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {}}}},
)
async def export(
    profile_id: uuid.UUID, principal: Reader, session: SessionDep, engine: EngineDep
) -> StreamingResponse:
    """Everything stored about the profile, as one JSON document (GDPR access request):
    profile fields and properties, aliases, consents and their history, suppressions of its
    addresses, list memberships and changes, push subscriptions and all its events."""
    await require_profile(session, principal.workspace_id, profile_id)
    return StreamingResponse(
        export_profile(engine, principal.workspace_id, profile_id),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="profile-{profile_id}.json"'},
    )
