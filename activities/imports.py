"""Import activities: process an uploaded CSV file (staged in PostgreSQL) and end failed jobs."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from models import ImportFileChunk


class ProcessImportInput(BaseModel):
    job_id: uuid.UUID


class ProcessImportResult(BaseModel):
    status: str
    total_rows: int = 0
    created_rows: int = 0
    updated_rows: int = 0
    unchanged_rows: int = 0
    failed_rows: int = 0
    error: str | None = None


class FailImportInput(BaseModel):
    job_id: uuid.UUID
    error: str


class ImportActivities:
    """`ingest.imports` is imported when an activity runs: the workflow module imports this one
    for its method references, and `core.settings` imports the workflows package."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _download(self, job_id: uuid.UUID, target: Path) -> None:
        """The uploaded file, chunk by chunk, into a local temporary file (flat memory)."""
        query = (
            select(ImportFileChunk.data)
            .where(ImportFileChunk.job_id == job_id)
            .order_by(ImportFileChunk.seq)
        )
        async with self.engine.connect() as conn:
            result = await conn.stream(query.execution_options(yield_per=8))
            with target.open("wb") as out:
                async for (data,) in result:
                    out.write(data)
                    activity.heartbeat("downloading")

    @activity.defn
    async def process_import(self, input: ProcessImportInput) -> ProcessImportResult:
        """Run the job. Safe to retry: a finished job is returned as it is, an interrupted one
        resumes after its last committed chunk."""
        from ingest.imports import ImportProgress, run_import

        def beat(progress: ImportProgress) -> None:
            activity.heartbeat(progress.rows)

        with tempfile.TemporaryDirectory(prefix="waymark-import-") as tmp:
            path = Path(tmp) / "upload.csv"
            await self._download(input.job_id, path)
            job = await run_import(self.engine, input.job_id, path, progress=beat)
        return ProcessImportResult(
            status=job.status,
            total_rows=job.total_rows,
            created_rows=job.created_rows,
            updated_rows=job.updated_rows,
            unchanged_rows=job.unchanged_rows,
            failed_rows=job.failed_rows,
            error=job.error,
        )

    @activity.defn
    async def fail_import(self, input: FailImportInput) -> None:
        """Mark a job failed after its processing gave up, and drop its staging data."""
        from ingest.imports import finish

        await finish(self.engine, input.job_id, error=input.error)
