"""`waymark examples install` — the ready flows of `examples/flows/` with what they need.

Creates the example templates (`examples/templates/`) and the lists the flows name, when the
workspace has none of that name, then applies the flows as `waymark flows apply` does.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cli.flows import WorkspaceOpt, _print, _workspace, apply_flows, notify_journeys
from core.db import create_engine, session_scope
from core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Ready-made flows to start from.")
console = Console()


async def install_examples(session: AsyncSession, workspace_id: uuid.UUID) -> list[str]:
    """Create the missing templates and lists the example flows use; what was created."""
    from flows.library import example_templates, library, referenced_names
    from models import Channel, ProfileList, Template

    created = []
    have = set(
        (
            await session.execute(
                select(Template.name).where(Template.workspace_id == workspace_id)
            )
        ).scalars()
    )
    for doc in example_templates():
        if doc["name"] not in have:
            session.add(
                Template(workspace_id=workspace_id, **{**doc, "channel": Channel(doc["channel"])})
            )
            created.append(f"template {doc['name']}")
    lists = set(
        (
            await session.execute(
                select(ProfileList.name).where(ProfileList.workspace_id == workspace_id)
            )
        ).scalars()
    )
    needed = set().union(*(referenced_names(d)["list"] for d in library()))
    for name in sorted(needed - lists):
        session.add(ProfileList(workspace_id=workspace_id, name=name))
        created.append(f"list {name}")
    await session.flush()
    return created


@app.command("install")
def install(
    workspace: WorkspaceOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Change nothing")] = False,
) -> None:
    """Create the example templates and lists, then apply the example flows."""
    from flows.library import FLOW_EXAMPLES

    class _Undo(Exception):  # rolls the session back, carrying the result out
        pass

    warnings: list[str] = []

    async def main():
        settings = get_settings()
        engine = create_engine(settings)
        try:
            async with session_scope(engine) as session:
                ws = await _workspace(session, workspace)
                created = await install_examples(session, ws)
                plans = await apply_flows(session, ws, FLOW_EXAMPLES, dry_run=dry_run)
                if dry_run or any(p.errors for p in plans):
                    raise _Undo(created, plans)
            # Committed: tell running journeys of example flows that changed (as `flows apply`).
            warnings.extend(await notify_journeys(engine, settings, ws, plans))
            return created, plans
        except _Undo as undo:
            return undo.args
        finally:
            await engine.dispose()

    try:
        created, plans = asyncio.run(main())
    except LookupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for line in created:
        console.print(f"created    {line}", markup=False)
    _print(plans, show_diff=False)
    for warning in warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False)
    if any(p.errors for p in plans):
        raise typer.Exit(1)
