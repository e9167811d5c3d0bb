"""Dependencies every route takes: settings, database session, Temporal client, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import Client

from api.errors import ApiError
from core import tenancy
from core.db import session_factory, session_scope
from core.settings import Settings
from core.tenancy import Principal
from models import Scope

_bearer = HTTPBearer(auto_error=False, description="A private API key: `Bearer wm_sk_…`")
_basic = HTTPBasic(
    auto_error=False,
    description="Tracking only: the workspace's public write key as the username (Segment-style)",
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


def get_temporal(request: Request) -> Client:
    return request.app.state.temporal


async def get_session(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
) -> AsyncIterator[AsyncSession]:
    """A session for the route. Writes commit explicitly before answering (a 2xx means durable)."""
    async with session_factory(engine)() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def _private_principal(
    engine: AsyncEngine, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None:
        raise _unauthorized("missing API key: send `Authorization: Bearer <private key>`")
    async with session_scope(engine) as session:
        principal = await tenancy.authenticate_private(session, credentials.credentials)
    if principal is None:
        raise _unauthorized("invalid or revoked API key")
    return principal


def _bind(principal: Principal) -> Principal:
    structlog.contextvars.bind_contextvars(workspace_id=str(principal.workspace_id))
    return principal


def require(scope: Scope):
    """A dependency: the caller's private key, which must carry `scope` (or a wider one)."""

    async def dependency(
        engine: EngineDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal = await _private_principal(engine, credentials)
        if not principal.allows(scope):
            raise ApiError(403, "forbidden", f"this API key lacks the `{scope.value}` scope")
        return _bind(principal)

    dependency.waymark_auth = "private"  # type: ignore[attr-defined]  # see api.guards
    return dependency


async def tracking_principal(
    engine: EngineDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> Principal:
    """Tracking endpoints: the public write key as HTTP Basic username, or a private write key."""
    if basic is not None:
        async with session_scope(engine) as session:
            principal = await tenancy.authenticate_public(session, basic.username)
        if principal is None:
            raise _unauthorized("invalid write key")
        return _bind(principal)
    if bearer is None:
        raise _unauthorized("missing write key: HTTP Basic with the write key as username")
    principal = await _private_principal(engine, bearer)
    if not principal.allows(Scope.write):
        raise ApiError(403, "forbidden", "this API key lacks the `write` scope")
    return _bind(principal)


tracking_principal.waymark_auth = "tracking"  # type: ignore[attr-defined]  # see api.guards

Reader = Annotated[Principal, Depends(require(Scope.read))]
Writer = Annotated[Principal, Depends(require(Scope.write))]
Admin = Annotated[Principal, Depends(require(Scope.admin))]
Tracker = Annotated[Principal, Depends(tracking_principal)]
