"""`waymark workspaces …` and `waymark keys …`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import tenancy
from core.db import create_engine, session_scope
from core.settings import get_settings
from models import ApiKey, Scope, Workspace

workspaces = typer.Typer(no_args_is_help=True, help="Workspaces (tenants: one shop each).")
keys = typer.Typer(no_args_is_help=True, help="Private API keys of a workspace.")
console = Console()
T = TypeVar("T")

WorkspaceOpt = Annotated[uuid.UUID, typer.Option("--workspace", "-w", help="Workspace id")]


def run_in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(get_settings())
        try:
            async with session_scope(engine) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def _workspace(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        console.print(f"[red]no workspace {workspace_id}[/red]")
        raise typer.Exit(1)
    return workspace


@workspaces.command("create")
def create_workspace(
    name: str, timezone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC"
) -> None:
    """Create a workspace; prints its public write key and a first admin key (shown once)."""
    workspace, admin = run_in_session(
        lambda s: tenancy.create_workspace(s, name, timezone=timezone)
    )
    console.print(f"workspace  {workspace.id}  {workspace.name}")
    console.print(f"write key  {workspace.public_key}   (public: tracking snippets, HTTP Basic)")
    console.print(f"admin key  {admin.secret}   (private: shown once, store it now)")


@workspaces.command("list")
def list_workspaces() -> None:
    rows = (
        run_in_session(lambda s: s.execute(select(Workspace).order_by(Workspace.created_at)))
        .scalars()
        .all()
    )
    table = Table("id", "name", "timezone", "created")
    for w in rows:
        table.add_row(str(w.id), w.name, w.timezone, w.created_at.isoformat(timespec="seconds"))
    console.print(table)


@keys.command("create")
def create_key(
    workspace: WorkspaceOpt,
    name: Annotated[str, typer.Option(help="What the key is for")],
    scope: Annotated[list[Scope], typer.Option(help="read, write or admin")] = [Scope.read],  # noqa: B006
) -> None:
    """Create a private key (shown once)."""

    async def work(session: AsyncSession) -> tenancy.NewKey:
        await _workspace(session, workspace)
        return await tenancy.create_api_key(session, workspace, name, scope)

    new = run_in_session(work)
    console.print(f"key {new.key.id}: {new.secret}   (shown once, store it now)")


@keys.command("list")
def list_keys(workspace: WorkspaceOpt) -> None:
    async def work(session: AsyncSession) -> list[ApiKey]:
        await _workspace(session, workspace)
        result = await session.execute(
            select(ApiKey).where(ApiKey.workspace_id == workspace).order_by(ApiKey.created_at)
        )
        return list(result.scalars())

    table = Table("id", "name", "prefix", "scopes", "created", "revoked")
    for k in run_in_session(work):
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else ""
        table.add_row(
            str(k.id), k.name, k.prefix + "…", ",".join(k.scopes),
            k.created_at.isoformat(timespec="seconds"), revoked,
        )  # fmt: skip
    console.print(table)


@keys.command("revoke")
def revoke_key(workspace: WorkspaceOpt, key_id: uuid.UUID) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    key = run_in_session(lambda s: tenancy.revoke_api_key(s, workspace, key_id))
    if key is None:
        console.print(f"[red]workspace {workspace} has no key {key_id}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {key.id} ({key.name})")
