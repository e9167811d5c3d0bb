"""CSV import of profiles: the file streams through validation and `COPY`, chunk by chunk.

The CLI and the import activity both call `run_import`. Memory stays flat: the file is read in
chunks of `CHUNK_ROWS` rows; worker processes validate the next chunks (ingest.traits, per row)
while the database takes the current one (COPY into staging, then set-based upserts). Each chunk
commits with the job's counters, so a retried job resumes after the last committed chunk.
"""

from __future__ import annotations

import asyncio
import csv
import io
import multiprocessing
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog
from sqlalchemy import delete, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.db import session_scope
from ingest import csv_upsert
from ingest.csv_rows import (
    ImportFileError,
    ImportOptions,
    build_plan,
    type_variants,
    validate_chunk,
)
from ingest.traits import check_property_types, property_type
from models import ImportFileChunk, ImportJob, ImportRow, ImportStatus
from models.base import utcnow

CHUNK_ROWS = 20_000
# Chunks in the database at once, each on its own connection (see `_load_chunk`).
CONNECTIONS = 2
# Smaller files are validated in this process: starting worker processes costs more.
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
log = structlog.get_logger(__name__)


@dataclass
class ImportProgress:
    bytes_read: int
    total_bytes: int
    rows: int
    created: int
    updated: int
    unchanged: int
    failed: int


Progress = Callable[[ImportProgress], Awaitable[None] | None]


class _Counting(io.RawIOBase):
    """A binary file that counts the bytes read through it (for progress over bytes)."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self.raw, self.count = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n


async def create_job(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    filename: str,
    options: ImportOptions,
    list_id: uuid.UUID | None = None,
) -> ImportJob:
    job = ImportJob(
        workspace_id=workspace_id, filename=filename[:255], list_id=list_id, options=asdict(options)
    )
    session.add(job)
    await session.flush()
    return job


def default_workers() -> int:
    return min(2, os.cpu_count() or 1)


async def run_import(
    engine: AsyncEngine,
    job_id: uuid.UUID,
    path: Path,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
) -> ImportJob:
    """Import the file of job `job_id`; returns the finished job. Idempotent: a job that
    succeeded is returned as it is, a job interrupted midway resumes after its last chunk."""
    async with session_scope(engine) as session:
        job = await session.get(ImportJob, job_id, with_for_update=True)
        if job is None:
            raise LookupError(f"no import job {job_id}")
        if job.status in (ImportStatus.succeeded, ImportStatus.failed):
            return job
        job.status, job.started_at = ImportStatus.running, job.started_at or utcnow()
        # Rows staged by an interrupted attempt were never committed past `processed_rows`.
        await session.execute(delete(ImportRow).where(ImportRow.job_id == job_id))
    size = os.path.getsize(path)  # noqa: ASYNC240 (a stat, not I/O worth a thread)
    if workers is None:
        workers = default_workers() if size >= PARALLEL_MIN_BYTES else 0
    try:
        with path.open("rb", buffering=0) as raw:
            counting = _Counting(raw)
            lines = io.TextIOWrapper(
                io.BufferedReader(counting, 1 << 20), encoding="utf-8-sig", newline=""
            )
            job = await _stream(engine, job, csv.reader(lines), counting, size, progress, workers)
    except ImportFileError as exc:
        return await finish(engine, job_id, error=str(exc))
    return await finish(engine, job_id)


async def _stream(engine, job, reader, counting, size, progress, workers) -> ImportJob:
    def read(n: int) -> list[list[str]]:
        try:
            return [row for _, row in zip(range(n), reader, strict=False)]
        except UnicodeDecodeError:
            raise ImportFileError("the file is not UTF-8 text") from None
        except csv.Error as exc:
            raise ImportFileError(
                f"the file is not valid CSV near row {reader.line_num}: {exc}"
            ) from None

    header = read(1)
    if not header:
        raise ImportFileError("the file is empty: it needs a header row")
    plan = build_plan(job.id, header[0], ImportOptions(**job.options))
    done = job.processed_rows
    while done and (skipped := read(min(done, CHUNK_ROWS))):
        done -= len(skipped)
    pool = None
    if workers:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    loop = asyncio.get_running_loop()
    in_flight: deque[asyncio.Future] = deque()  # chunks being validated, in file order
    loads: deque[asyncio.Task] = deque()  # chunks in the database, in file order
    checked: asyncio.Future | None = None  # the last chunk's property types are checked
    next_row = 2 + job.processed_rows
    try:
        while True:
            while len(in_flight) < workers + CONNECTIONS and (rows := read(CHUNK_ROWS)):
                if pool is None:
                    in_flight.append(
                        asyncio.ensure_future(
                            asyncio.to_thread(validate_chunk, plan, next_row, rows)
                        )
                    )
                else:
                    in_flight.append(
                        loop.run_in_executor(pool, validate_chunk, plan, next_row, rows)
                    )
                next_row += len(rows)
            if in_flight and len(loads) < CONNECTIONS:
                chunk = await in_flight.popleft()
                after = loads[-1] if loads else None
                typed, checked = checked, loop.create_future()
                loads.append(
                    asyncio.create_task(_load_chunk(engine, job, chunk, after, typed, checked))
                )
                continue
            if not loads:
                return job
            job = await loads.popleft()
            if progress is not None:
                report = ImportProgress(
                    counting.count,
                    size,
                    job.processed_rows,
                    job.created_rows,
                    job.updated_rows,
                    job.unchanged_rows,
                    job.failed_rows,
                )
                if (waited := progress(report)) is not None:
                    await waited
    finally:
        for future in (*in_flight, *loads):
            future.cancel()
        if loads:
            await asyncio.gather(*loads, return_exceptions=True)
        if pool is not None:
            pool.shutdown(cancel_futures=True)


_COUNTERS = text(
    """
    UPDATE import_jobs SET processed_rows = :processed, created_rows = created_rows + :created,
        updated_rows = updated_rows + :updated, unchanged_rows = unchanged_rows + :unchanged,
        failed_rows = failed_rows + :failed
    WHERE id = :job
    """
)


# Chunk transactions commit in file order, so `processed_rows` always counts a prefix of the
# file: each chunk holds an advisory lock keyed by its last row, and takes the previous
# chunk's lock before it commits. All waits are PostgreSQL lock waits, so when two chunks
# need each other's rows (the same new email, say) the deadlock detector ends one of them,
# and that chunk is done again once the previous one has committed.
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(CAST(:job AS text)), CAST(:row AS int))")
# The staging table is filled and emptied chunk by chunk, and the planner only knows the row
# numbers of the rows it sampled: without fresh statistics it takes the chunk for a row or two
# and joins it to itself in a nested loop (quadratic: minutes per chunk). A small sample of the
# few columns the plans filter on is enough, and costs a few milliseconds.
_ANALYZE_SAMPLE = text("SET LOCAL default_statistics_target = 10")
_ANALYZE = text("ANALYZE import_rows (job_id, row_no, status)")
_COMMITTED = text("SELECT processed_rows FROM import_jobs WHERE id = :job")
_RETRY_SQLSTATES = frozenset({"40P01", "40001", "23505"})  # deadlock, serialization, unique
MAX_ATTEMPTS = 10


class _Retry(Exception):
    """The previous chunk has not committed: this one is done again after it."""


async def _load_chunk(
    engine: AsyncEngine,
    job: ImportJob,
    chunk,
    after: asyncio.Task | None,
    typed: asyncio.Future | None,
    checked: asyncio.Future,
) -> ImportJob:
    """One chunk: staged (COPY), its property types checked, then in one transaction upserted
    and counted."""
    # Staged in a transaction of its own (unlogged, rebuilt on a retry).
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        with csv_upsert.phase("stage rows (COPY)"):
            await csv_upsert.stage_rows(conn, chunk.copy_data)
    with csv_upsert.phase("ANALYZE staging"):
        async with engine.begin() as conn:
            await conn.execute(_ANALYZE_SAMPLE)
            await conn.execute(_ANALYZE)
    # Property types are fixed chunk after chunk, in file order, each in a short transaction:
    # a new property takes the type most rows of the first chunk holding it have, as it did
    # when chunks were imported one by one (a resumed chunk finds the same definitions).
    try:
        if typed is not None:
            await asyncio.wait([typed])
        with csv_upsert.phase("property types"):
            async with session_scope(engine) as session:
                bad_rows, type_errors = await _check_types(session, job, chunk)
    finally:
        if not checked.done():
            checked.set_result(None)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return await _upsert_chunk(engine, job, chunk, after, bad_rows, type_errors)
        except (_Retry, DBAPIError) as exc:
            sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
            if isinstance(exc, DBAPIError) and (
                sqlstate not in _RETRY_SQLSTATES or attempt == MAX_ATTEMPTS
            ):
                raise
            log.info(
                "import chunk retried",
                first_row=chunk.first_row,
                reason=sqlstate,
                detail=str(getattr(exc, "orig", "") or "previous chunk not committed")[:500],
            )
            if after is not None:
                await asyncio.wait([after])  # then this chunk runs after the previous one
                if after.cancelled() or after.exception() is not None:
                    raise RuntimeError("the previous chunk of the import failed") from exc
    raise RuntimeError(f"the chunk at row {chunk.first_row} did not commit")


async def _check_types(session: AsyncSession, job: ImportJob, chunk) -> tuple[set[int], list]:
    """Rows whose property values have another type than the workspace's, and their errors."""
    bad_rows: set[int] = set()
    type_errors = []
    for sample in type_variants(chunk.property_types):
        for err in await check_property_types(session, job.workspace_id, sample):
            kind = property_type(sample[err.field]).value
            rows = chunk.property_types[err.field][kind][1]
            bad_rows.update(rows)
            type_errors += [(job.id, r, err.field, None, err.message) for r in rows]
    return bad_rows, type_errors


async def _upsert_chunk(
    engine, job: ImportJob, chunk, after: asyncio.Task | None, bad_rows: set[int], type_errors
) -> ImportJob:
    async with session_scope(engine) as session:
        await session.execute(_LOCK, {"job": str(job.id), "row": chunk.last_row})
        with csv_upsert.phase("row errors"):
            await csv_upsert.copy_errors(session, [(job.id, *e) for e in chunk.errors])
            if bad_rows:
                await csv_upsert.drop_rows(session, job.id, sorted(bad_rows))
                await csv_upsert.copy_errors(session, type_errors)

        async def earlier() -> None:
            await session.execute(_LOCK, {"job": str(job.id), "row": chunk.first_row - 1})
            committed = (await session.execute(_COMMITTED, {"job": job.id})).scalar_one()
            if committed < chunk.first_row - 2:
                raise _Retry

        counts = await csv_upsert.upsert_chunk(
            session,
            job.workspace_id,
            job.id,
            chunk.first_row,
            chunk.last_row,
            job.list_id,
            earlier if after is not None else None,
        )
        await session.execute(
            _COUNTERS,
            {
                "job": job.id,
                "processed": chunk.last_row - 1,
                "created": counts.created,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "failed": counts.failed + chunk.failed + len(bad_rows),
            },
        )
        job = await session.get(ImportJob, job.id, populate_existing=True)
    return job


async def finish(engine: AsyncEngine, job_id: uuid.UUID, *, error: str | None = None) -> ImportJob:
    """End a job: its status, and its staging data (file and rows) deleted. Errors stay."""
    async with session_scope(engine) as session:
        job = await session.get(ImportJob, job_id, with_for_update=True)
        if job.status in (ImportStatus.queued, ImportStatus.running):
            job.status = ImportStatus.failed if error else ImportStatus.succeeded
            job.error, job.total_rows, job.finished_at = error, job.processed_rows, utcnow()
        await session.execute(delete(ImportRow).where(ImportRow.job_id == job_id))
        await session.execute(delete(ImportFileChunk).where(ImportFileChunk.job_id == job_id))
    log.info("import finished", job_id=str(job_id), status=job.status, error=error)
    return job


REPORT_HEADER = ("row", "column", "value", "reason")
_REPORT = text(
    'SELECT row_no, "column", value, reason FROM import_row_errors '
    "WHERE job_id = :job ORDER BY row_no, id"
)


async def report_rows(engine: AsyncEngine, job_id: uuid.UUID) -> AsyncIterator[tuple]:
    """The job's error report, row by row (streamed: any number of errors)."""
    async with engine.connect() as conn:
        result = await conn.stream(_REPORT, {"job": job_id})
        async for row in result:
            yield tuple(row)
