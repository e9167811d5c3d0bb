"""Private API keys of the caller's workspace (admin scope)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import Admin, SessionDep
from api.errors import not_found
from core import tenancy
from models import ApiKey, Scope

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1, examples=[["read"]])


class KeyPublic(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The key itself. Shown only now: store it safely.")


class KeyList(BaseModel):
    data: list[KeyPublic]


@router.get("", response_model=KeyList)
async def list_keys(principal: Admin, session: SessionDep) -> KeyList:
    rows = await session.execute(
        select(ApiKey)
        .where(ApiKey.workspace_id == principal.workspace_id)
        .order_by(ApiKey.created_at)
    )
    return KeyList(data=[KeyPublic.model_validate(k, from_attributes=True) for k in rows.scalars()])


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyCreate, principal: Admin, session: SessionDep) -> KeyCreated:
    new = await tenancy.create_api_key(session, principal.workspace_id, body.name, body.scopes)
    await session.commit()
    public = KeyPublic.model_validate(new.key, from_attributes=True)
    return KeyCreated(**public.model_dump(), key=new.secret)


@router.get("/{key_id}", response_model=KeyPublic)
async def get_key(key_id: uuid.UUID, principal: Admin, session: SessionDep) -> KeyPublic:
    key = (
        await session.execute(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == principal.workspace_id)
        )
    ).scalar_one_or_none()
    if key is None:
        raise not_found("API key")
    return KeyPublic.model_validate(key, from_attributes=True)


@router.delete("/{key_id}", response_model=KeyPublic)
async def revoke_key(key_id: uuid.UUID, principal: Admin, session: SessionDep) -> KeyPublic:
    """Revoke a key: every later request with it gets 401. Revoking twice is harmless."""
    key = await tenancy.revoke_api_key(session, principal.workspace_id, key_id)
    if key is None:
        raise not_found("API key")
    await session.commit()
    return KeyPublic.model_validate(key, from_attributes=True)
