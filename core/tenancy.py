"""Workspaces and API keys: creation, hashing, authentication, revocation.

Private keys look like `wm_sk_<random>`; only their SHA-256 is stored (they are 256-bit random
strings, so a fast hash is the right one — there is nothing to brute-force). Public write keys
look like `wm_pk_<random>` and are stored as they are: they ship in storefront snippets.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import ApiKey, Scope, Workspace
from models.base import utcnow

PRIVATE_PREFIX = "wm_sk_"
PUBLIC_PREFIX = "wm_pk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_public_key() -> str:
    return PUBLIC_PREFIX + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class NewKey:
    """A freshly created private key: the only moment its secret is known."""

    key: ApiKey
    secret: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: a workspace, and what the key may do there."""

    workspace_id: uuid.UUID
    scopes: frozenset[Scope]
    key_id: uuid.UUID | None = None  # None for the public write key

    @property
    def is_public(self) -> bool:
        return self.key_id is None

    def allows(self, needed: Scope) -> bool:
        return any(scope.includes(needed) for scope in self.scopes)


async def create_workspace(
    session: AsyncSession, name: str, *, timezone: str = "UTC"
) -> tuple[Workspace, NewKey]:
    """A workspace with its public write key and a first private admin key."""
    workspace = Workspace(name=name, public_key=new_public_key(), timezone=timezone)
    session.add(workspace)
    await session.flush()
    admin = await create_api_key(session, workspace.id, "admin", [Scope.admin])
    return workspace, admin


async def create_api_key(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, scopes: list[Scope]
) -> NewKey:
    secret = PRIVATE_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        workspace_id=workspace_id,
        name=name,
        prefix=secret[: len(PRIVATE_PREFIX) + 6],
        key_hash=hash_key(secret),
        scopes=sorted({s.value for s in scopes}),
    )
    session.add(key)
    await session.flush()
    return NewKey(key=key, secret=secret)


async def revoke_api_key(
    session: AsyncSession, workspace_id: uuid.UUID, key_id: uuid.UUID
) -> ApiKey | None:
    """Revoke a key of this workspace; None when the workspace has no such key."""
    key = (
        await session.execute(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id)
        )
    ).scalar_one_or_none()
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        await session.flush()
    return key


async def authenticate_private(session: AsyncSession, secret: str) -> Principal | None:
    if not secret.startswith(PRIVATE_PREFIX):
        return None
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.workspace_id, ApiKey.scopes, ApiKey.last_used_at).where(
                ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None)
            )
        )
    ).one_or_none()
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        # Written at most once a minute per key, so busy keys cost no write per request.
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return Principal(
        workspace_id=row.workspace_id,
        scopes=frozenset(Scope(s) for s in row.scopes),
        key_id=row.id,
    )


async def authenticate_public(session: AsyncSession, public_key: str) -> Principal | None:
    if not public_key.startswith(PUBLIC_PREFIX):
        return None
    workspace_id = (
        await session.execute(select(Workspace.id).where(Workspace.public_key == public_key))
    ).scalar_one_or_none()
    if workspace_id is None:
        return None
    return Principal(workspace_id=workspace_id, scopes=frozenset())
