"""`waymark import profiles FILE.csv` — bulk import in this process, straight into the database."""

from __future__ import annotations

import asyncio
import csv
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import create_engine, session_scope
from core.settings import get_settings
from ingest.csv_rows import ImportOptions
from ingest.imports import REPORT_HEADER, ImportProgress, create_job, report_rows, run_import
from models import ImportJob, ProfileList, Workspace

app = typer.Typer(no_args_is_help=True, help="Bulk imports from CSV files.")
console = Console()


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        header, sep, target = pair.rpartition("=")
        if not sep or not header.strip() or not target.strip():
            raise typer.BadParameter(f"{pair!r}: use --map 'CSV Header=field'")
        mapping[header.strip()] = target.strip()
    return mapping


async def list_by_name(engine: AsyncEngine, workspace_id: uuid.UUID, name: str) -> uuid.UUID:
    """The workspace's list of that name, created when there is none."""
    async with session_scope(engine) as session:
        await session.execute(
            text(
                "INSERT INTO lists (id, workspace_id, name) VALUES (gen_random_uuid(), :ws, :name) "
                "ON CONFLICT (workspace_id, name) DO NOTHING"
            ),
            {"ws": workspace_id, "name": name},
        )
        query = select(ProfileList.id).where(
            ProfileList.workspace_id == workspace_id, ProfileList.name == name
        )
        return (await session.execute(query)).scalar_one()


async def import_file(
    engine: AsyncEngine,
    workspace_id: uuid.UUID,
    path: Path,
    options: ImportOptions,
    *,
    list_name: str | None = None,
    progress=None,
    workers: int | None = None,
) -> ImportJob:
    """The CLI's whole import (the benchmark calls this too): a job, run in this process."""
    list_id = await list_by_name(engine, workspace_id, list_name) if list_name else None
    async with session_scope(engine) as session:
        if await session.get(Workspace, workspace_id) is None:
            raise LookupError(f"no workspace {workspace_id}")
        job = await create_job(session, workspace_id, path.name, options, list_id)
    return await run_import(engine, job.id, path, progress=progress, workers=workers)


async def write_report(engine: AsyncEngine, job_id: uuid.UUID, report: Path) -> int:
    """Write the job's rejected rows (row, column, value, reason) to `report`; returns how many."""
    n = 0
    with report.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(REPORT_HEADER)
        async for row in report_rows(engine, job_id):
            writer.writerow(row)
            n += 1
    return n


@app.command("profiles")
def profiles(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A UTF-8 CSV file")],
    workspace: Annotated[uuid.UUID, typer.Option("--workspace", "-w", help="Workspace id")],
    list_name: Annotated[
        str | None, typer.Option("--list", help="Add every imported profile to this list")
    ] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="'CSV Header=field' (repeatable)")
    ] = None,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="Ignore a column")] = None,
    country: Annotated[
        str | None, typer.Option("--country", help="Default country for phones (e.g. PL)")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Where to write rejected rows (CSV)")
    ] = None,
) -> None:
    """Import profiles: create or update by external_id, email or phone; consents; list."""
    options = ImportOptions(parse_mapping(mapping or []), skip or [], country)
    report = report or file.with_name(file.stem + ".errors.csv")

    async def main() -> ImportJob:
        engine = create_engine(get_settings())
        try:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[rows]:,} rows"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("importing", total=file.stat().st_size, rows=0)

                def show(p: ImportProgress) -> None:
                    bar.update(task, completed=p.bytes_read, rows=p.rows)

                job = await import_file(
                    engine, workspace, file, options, list_name=list_name, progress=show
                )
                bar.update(task, completed=file.stat().st_size)
            if job.failed_rows:
                await write_report(engine, job.id, report)
            return job
        finally:
            await engine.dispose()

    try:
        job = asyncio.run(main())
    except LookupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if job.error:
        console.print(f"[red]import failed: {job.error}[/red]")
        raise typer.Exit(1)
    console.print(
        f"{job.total_rows:,} rows: [green]{job.created_rows:,} created[/green], "
        f"{job.updated_rows:,} updated, {job.unchanged_rows:,} unchanged, "
        f"[red]{job.failed_rows:,} failed[/red]"
    )
    if job.failed_rows:
        console.print(f"rejected rows and why: {report}")
