"""The caller's own workspace."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import available_timezones

from fastapi import APIRouter
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from api.deps import Admin, Reader, SessionDep
from core import tenancy
from models import Workspace

router = APIRouter(prefix="/v1/workspace", tags=["workspace"])

_TIMEZONES = frozenset(available_timezones())


class WorkspacePublic(BaseModel):
    id: uuid.UUID
    name: str
    public_key: str = Field(description="The write key for tracking (HTTP Basic username)")
    timezone: str
    created_at: datetime


class WorkspaceUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, description="IANA time zone, e.g. Europe/Warsaw")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _TIMEZONES:
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value


async def _load(session, workspace_id: uuid.UUID) -> Workspace:
    return (
        await session.execute(select(Workspace).where(Workspace.id == workspace_id))
    ).scalar_one()


@router.get("", response_model=WorkspacePublic)
async def get_workspace(principal: Reader, session: SessionDep) -> Workspace:
    return await _load(session, principal.workspace_id)


@router.patch("", response_model=WorkspacePublic)
async def update_workspace(
    body: WorkspaceUpdate, principal: Admin, session: SessionDep
) -> Workspace:
    workspace = await _load(session, principal.workspace_id)
    for field, value in body.model_dump(exclude_unset=True, exclude_none=True).items():
        setattr(workspace, field, value)
    session.add(workspace)
    await session.commit()
    return workspace


@router.post("/public-key/rotate", response_model=WorkspacePublic)
async def rotate_public_key(principal: Admin, session: SessionDep) -> Workspace:
    """A new public write key; the old one stops working at once."""
    workspace = await _load(session, principal.workspace_id)
    workspace.public_key = tenancy.new_public_key()
    session.add(workspace)
    await session.commit()
    return workspace
