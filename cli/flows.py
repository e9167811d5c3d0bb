"""`waymark flows validate|diff|apply DIR` — flows kept as YAML files, one flow per file.

Files are matched to flows by `name`; templates, lists and segments may be named
(`template: "Abandoned cart 1"`, see `flows.library`). `apply` checks every file first and
writes nothing when any has errors; then it creates missing flows and publishes a new version
only for files that changed, printing each diff. Exit codes: 0 ok, 1 validation errors (or a
missing workspace), 2 usage — so it fits a deploy pipeline.

Like the API, `apply` then tells the running journeys of each changed flow (`flows.hooks`,
through `TEMPORAL_ADDRESS`): they move to the new version at the step with the same id. When
Temporal is not configured or unreachable it says so and still exits 0 (the versions are
saved); those journeys follow the new version from their next step, but a delay they already
sleep in is not re-timed.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.db import create_engine, session_scope
from core.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, help="Flows kept as YAML files (flows as code).")
console = Console()

Dir = Annotated[Path, typer.Argument(exists=True, help="A YAML file or a folder of them")]
WorkspaceOpt = Annotated[
    uuid.UUID | None,
    typer.Option("--workspace", "-w", help="Workspace id (default: the only workspace)"),
]


@dataclass
class FilePlan:
    file: Path
    name: str | None = None
    flow_id: uuid.UUID | None = None
    definition: object | None = None  # FlowDefinition once parsed
    errors: list = field(default_factory=list)  # flows.validate.Issue
    warnings: list = field(default_factory=list)
    diff: object | None = None  # flows.diff.FlowDiff
    action: str = "unchanged"  # created, updated, unchanged, invalid
    version: int | None = None
    signalled: int | None = None  # running journeys told of the new version


async def _workspace(session: AsyncSession, workspace: uuid.UUID | None) -> uuid.UUID:
    from models import Workspace

    if workspace is not None:
        if await session.get(Workspace, workspace) is None:
            raise LookupError(f"no workspace {workspace}")
        return workspace
    ids = list((await session.execute(select(Workspace.id).limit(2))).scalars())
    if len(ids) != 1:
        raise LookupError("give --workspace: there is not exactly one workspace")
    return ids[0]


async def plan_flows(session: AsyncSession, workspace_id: uuid.UUID, path: Path) -> list[FilePlan]:
    """Read, resolve, validate and diff every file against the flow of the same name."""
    from flows import service
    from flows.definition import FlowDefinition
    from flows.diff import diff_definitions
    from flows.library import FlowFileError, flow_files, read_yaml, resolve_names
    from flows.validate import Issue, pydantic_issues, validate_flow
    from models import Flow

    plans: list[FilePlan] = []
    for file in flow_files(path):
        plan = FilePlan(file)
        plans.append(plan)
        try:
            data = read_yaml(file)
        except FlowFileError as exc:
            plan.errors.append(Issue(None, "", str(exc)))
            continue
        plan.name = data.get("name") if isinstance(data.get("name"), str) else None
        data, plan.errors = await resolve_names(session, workspace_id, data)
        if plan.errors:
            continue
        try:
            plan.definition = FlowDefinition.model_validate(data)
        except ValidationError as exc:
            plan.errors = pydantic_issues(exc)
            continue
        report = await validate_flow(session, workspace_id, plan.definition)
        plan.errors, plan.warnings = report.errors, report.warnings
        flow = await session.scalar(
            select(Flow).where(Flow.workspace_id == workspace_id, Flow.name == plan.name)
        )
        live = None
        if flow is not None:
            plan.flow_id = flow.id
            live = await service.live_definition(session, flow)
        plan.diff = diff_definitions(live, plan.definition)
        if flow is None:
            plan.action = "created"
        elif live is None or not plan.diff.empty:
            plan.action = "updated"
    names = [p.name for p in plans if p.name]
    for plan in plans:
        if plan.name and names.count(plan.name) > 1:
            plan.errors.append(Issue(None, "name", f"more than one file defines {plan.name!r}"))
    for plan in plans:
        if plan.errors:
            plan.action = "invalid"
    return plans


async def apply_flows(
    session: AsyncSession, workspace_id: uuid.UUID, path: Path, *, dry_run: bool = False
) -> list[FilePlan]:
    """Plan, then (unless `dry_run` or any file has errors) create and publish what changed."""
    from flows import service
    from models import Flow

    plans = await plan_flows(session, workspace_id, path)
    if dry_run or any(p.errors for p in plans):
        return plans
    for plan in plans:
        if plan.action == "unchanged":
            continue
        if plan.flow_id is None:
            flow = await service.create_flow(session, workspace_id, plan.definition, "cli")
            plan.flow_id = flow.id
        else:
            flow = await session.get(Flow, plan.flow_id)
            await service.update_draft(session, flow, plan.definition)
        version, _ = await service.publish(
            session, flow, author="cli", message=f"waymark flows apply {plan.file.name}"
        )
        plan.version = version.version if version else None
    return plans


async def notify_journeys(
    engine: AsyncEngine, settings: Settings, workspace_id: uuid.UUID, plans: list[FilePlan]
) -> list[str]:
    """After `apply` committed: signal the running journeys of every flow that got a new
    version, as the API does. Returns warnings (nothing is raised: the versions are saved)."""
    from flows import hooks

    changed = [p for p in plans if p.version and p.flow_id and p.action == "updated"]
    if not changed:
        return []
    if not settings.temporal_address:
        return [
            "running journeys not told of the new versions: TEMPORAL_ADDRESS is not set "
            "(they follow them from their next step)"
        ]
    from core import temporal

    try:
        client = await temporal.connect(settings)
    except Exception as exc:  # unreachable: the versions are saved all the same
        return [f"running journeys not told of the new versions: Temporal unreachable ({exc})"]
    async with session_scope(engine) as session:
        for plan in changed:
            plan.signalled = await hooks.on_published(
                client, session, workspace_id, plan.flow_id, plan.version
            )
    return []


def _print(plans: list[FilePlan], *, show_diff: bool) -> None:
    from flows.diff import format_diff

    for plan in plans:
        title = plan.name or plan.file.name
        suffix = f"  (version {plan.version})" if plan.version else ""
        if plan.signalled is not None:
            suffix += f"  {plan.signalled} running journeys moved to it"
        console.print(f"{plan.action:<9}  {title}  [{plan.file.name}]{suffix}", markup=False)
        for label, issues in (("error", plan.errors), ("warning", plan.warnings)):
            for i in issues:
                where = ".".join(p for p in (f"step {i.step_id}" if i.step_id else "", i.path) if p)
                console.print(f"    {label}: {where or 'flow'}: {i.message}", markup=False)
        if show_diff and plan.diff is not None and plan.action != "unchanged":
            for line in format_diff(plan.diff):
                console.print(f"    {line}", markup=False)


def _run(path: Path, workspace: uuid.UUID | None, *, write: bool, dry_run: bool, show_diff: bool):
    warnings: list[str] = []

    async def main() -> list[FilePlan]:
        settings = get_settings()
        engine: AsyncEngine = create_engine(settings)
        try:
            async with session_scope(engine) as session:
                ws = await _workspace(session, workspace)
                if not write:
                    return await plan_flows(session, ws, path)
                plans = await apply_flows(session, ws, path, dry_run=dry_run)
            # Committed: now the running journeys may be told.
            warnings.extend(await notify_journeys(engine, settings, ws, plans))
            return plans
        finally:
            await engine.dispose()

    try:
        plans = asyncio.run(main())
    except LookupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    _print(plans, show_diff=show_diff)
    for warning in warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False)
    if any(p.errors for p in plans):
        console.print("[red]validation errors: nothing applied[/red]" if write else "")
        raise typer.Exit(1)


@app.command("validate")
def validate(path: Dir, workspace: WorkspaceOpt = None) -> None:
    """Check flow files against the workspace; exit 1 on any error."""
    _run(path, workspace, write=False, dry_run=False, show_diff=False)


@app.command("diff")
def diff(path: Dir, workspace: WorkspaceOpt = None) -> None:
    """Show what `apply` would change, flow by flow and step by step."""
    _run(path, workspace, write=False, dry_run=False, show_diff=True)


@app.command("apply")
def apply(
    path: Dir,
    workspace: WorkspaceOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing")
    ] = False,
) -> None:
    """Create missing flows and publish a new version of each changed one."""
    _run(path, workspace, write=True, dry_run=dry_run, show_diff=True)
