"""Test data factories."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from core import tenancy
from core.db import session_scope
from models import Scope


@dataclass
class TestWorkspace:
    id: uuid.UUID
    public_key: str
    admin_key: str
    engine: AsyncEngine

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.admin_key)

    @property
    def tracking(self) -> dict[str, str]:
        """HTTP Basic with the public write key as the username, as Segment's libraries send."""
        token = base64.b64encode(f"{self.public_key}:".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def key(self, *scopes: Scope, name: str = "test") -> str:
        async with session_scope(self.engine) as session:
            new = await tenancy.create_api_key(session, self.id, name, list(scopes))
        return new.secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class WorkspaceFactory:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, name: str = "Test shop", timezone: str = "UTC") -> TestWorkspace:
        async with session_scope(self.engine) as session:
            workspace, admin = await tenancy.create_workspace(session, name, timezone=timezone)
        return TestWorkspace(workspace.id, workspace.public_key, admin.secret, self.engine)
