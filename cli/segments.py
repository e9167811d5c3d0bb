"""`waymark segments apply DIR --workspace ID` — segments kept as YAML files, applied by name.

Each file holds one segment: `name`, optional `description`, and `definition` in the condition
language (see `GET /v1/segments/schema`). A segment of that name is created, or updated when its
description or definition differ; a changed definition recomputes its members. Every file is
checked before anything is written: one invalid file applies nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.db import create_engine, session_scope
from core.settings import get_settings
from models import Segment, Workspace

app = typer.Typer(no_args_is_help=True, help="Segments kept as YAML files.")
console = Console()


class SegmentFile(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any]


@dataclass
class Applied:
    name: str
    action: str  # created, updated, unchanged
    member_count: int


class SegmentFileError(ValueError):
    pass


def read_files(path: Path) -> list[tuple[Path, SegmentFile]]:
    files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    out = []
    for file in files:
        try:
            out.append((file, SegmentFile.model_validate(yaml.safe_load(file.read_text()))))
        except (yaml.YAMLError, ValidationError) as exc:
            raise SegmentFileError(f"{file}: {exc}") from None
    names = [s.name for _, s in out]
    if dupes := {n for n in names if names.count(n) > 1}:
        raise SegmentFileError(f"more than one file defines segment {sorted(dupes)}")
    return out


async def _check(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    file: Path,
    seg: SegmentFile,
    segment_id: uuid.UUID | None,
) -> None:
    from segments import validate_condition

    errors = await validate_condition(session, workspace_id, seg.definition, segment_id=segment_id)
    if errors:
        problems = "; ".join(f"definition.{e.path}: {e.message}" for e in errors)
        raise SegmentFileError(f"{file}: {problems}")


async def apply_segments(engine: AsyncEngine, workspace_id: uuid.UUID, path: Path) -> list[Applied]:
    """Create or update every segment under `path`, in one transaction."""
    from segments.membership import load_definitions, refresh_segments, with_dependents

    files = read_files(path)
    async with session_scope(engine) as session:
        if await session.get(Workspace, workspace_id) is None:
            raise LookupError(f"no workspace {workspace_id}")
        existing = {
            s.name: s
            for s in (
                await session.execute(select(Segment).where(Segment.workspace_id == workspace_id))
            ).scalars()
        }
        for file, seg in files:
            current = existing.get(seg.name)
            await _check(session, workspace_id, file, seg, current.id if current else None)
        now = datetime.now(UTC)
        actions, redefined = {}, []
        for _, seg in files:
            row = existing.get(seg.name)
            if row is None:
                row = Segment(workspace_id=workspace_id, **seg.model_dump())
                session.add(row)
                actions[seg.name] = "created"
            elif row.definition != seg.definition or row.description != seg.description:
                if row.definition != seg.definition:
                    redefined.append(row)
                    row.updated_at = now  # a new baseline (segments.membership): not for text
                row.definition, row.description = seg.definition, seg.description
                actions[seg.name] = "updated"
            else:
                actions[seg.name] = "unchanged"
            existing[seg.name] = row
        await session.flush()
        changed = [existing[n].id for n, a in actions.items() if a == "created"]
        changed += [r.id for r in redefined]
        if changed:
            definitions = await load_definitions(session, workspace_id)
            await refresh_segments(
                session, workspace_id, definitions, with_dependents(definitions, changed), now=now
            )
        counts = dict(
            (
                await session.execute(
                    select(Segment.name, Segment.member_count).where(
                        Segment.workspace_id == workspace_id
                    )
                )
            ).all()
        )
    return [Applied(name, action, counts.get(name, 0)) for name, action in actions.items()]


@app.command("apply")
def apply(
    path: Annotated[Path, typer.Argument(exists=True, help="A YAML file or a folder of them")],
    workspace: Annotated[uuid.UUID, typer.Option("--workspace", "-w", help="Workspace id")],
) -> None:
    """Create or update segments from YAML files, matched by name."""

    async def main() -> list[Applied]:
        engine = create_engine(get_settings())
        try:
            return await apply_segments(engine, workspace, path)
        finally:
            await engine.dispose()

    try:
        applied = asyncio.run(main())
    except (SegmentFileError, LookupError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for a in applied:
        console.print(f"{a.action:<9}  {a.name}  ({a.member_count:,} members)")
