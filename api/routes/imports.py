"""CSV imports of profiles: upload (staged in PostgreSQL), a background job, its error report."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, File, Form, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy import select
from temporalio.common import WorkflowIDReusePolicy

from api.deps import EngineDep, Reader, SessionDep, SettingsDep, TemporalDep, Writer
from api.errors import ApiError, not_found
from ingest.csv_rows import ImportOptions
from ingest.imports import REPORT_HEADER, create_job, finish, report_rows
from models import ImportJob, ProfileList
from workflows.import_profiles import (
    ImportProfilesInput,
    ImportProfilesWorkflow,
    import_workflow_id,
)

router = APIRouter(prefix="/v1/imports", tags=["imports"])
log = structlog.get_logger(__name__)
UPLOAD_PIECE = 1 << 20
_MAPPING = TypeAdapter(dict[str, str])
_SKIP = TypeAdapter(list[str])


class ImportPublic(BaseModel):
    id: uuid.UUID
    status: str = Field(description="queued, running, succeeded or failed")
    filename: str
    list_id: uuid.UUID | None
    total_rows: int
    processed_rows: int
    created_rows: int
    updated_rows: int
    unchanged_rows: int
    failed_rows: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _form_json(name: str, raw: str | None, adapter: TypeAdapter):
    if not raw:
        return adapter.validate_python({} if adapter is _MAPPING else [])
    try:
        return adapter.validate_python(json.loads(raw))
    except (ValueError, ValidationError):
        example = '{"CSV Header": "email"}' if adapter is _MAPPING else '["Notes"]'
        raise ApiError(422, "validation_error", f"{name} must be JSON like {example}") from None


@router.post("", response_model=ImportPublic, status_code=status.HTTP_202_ACCEPTED)
async def create_import(
    principal: Writer,
    session: SessionDep,
    engine: EngineDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A UTF-8 CSV file with a header row")],
    list_id: Annotated[uuid.UUID | None, Form(description="Add imported profiles to it")] = None,
    mapping: Annotated[str | None, Form(description='JSON {"CSV Header": "field"}')] = None,
    skip: Annotated[str | None, Form(description='JSON ["Column to ignore"]')] = None,
    default_country: Annotated[str | None, Form(max_length=2)] = None,
) -> ImportJob:
    """Upload a CSV file; it is imported in the background. Poll `GET /v1/imports/{id}`."""
    options = ImportOptions(
        _form_json("mapping", mapping, _MAPPING), _form_json("skip", skip, _SKIP), default_country
    )
    if list_id is not None:
        owner = await session.scalar(
            select(ProfileList.workspace_id).where(ProfileList.id == list_id)
        )
        if owner != principal.workspace_id:
            raise not_found("list")
    job = await create_job(
        session, principal.workspace_id, file.filename or "upload.csv", options, list_id
    )
    raw = await (await session.connection()).get_raw_connection()
    async with raw.driver_connection.cursor() as cursor:
        sql = "COPY import_file_chunks (job_id, seq, data) FROM STDIN"
        async with cursor.copy(sql) as copy:
            seq = 0
            while piece := await file.read(UPLOAD_PIECE):
                await copy.write_row((job.id, seq, piece))
                seq += 1
    await session.commit()
    try:
        await temporal.start_workflow(
            ImportProfilesWorkflow.run,
            ImportProfilesInput(job_id=job.id, workspace_id=principal.workspace_id),
            id=import_workflow_id(job.id),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except Exception as exc:
        log.exception("could not start the import workflow", job_id=str(job.id))
        await finish(engine, job.id, error="the import could not be started")
        raise ApiError(
            503, "unavailable", "the job runner is unavailable; upload the file again later"
        ) from exc
    return job


async def _job(session, workspace_id: uuid.UUID, import_id: uuid.UUID) -> ImportJob:
    job = await session.get(ImportJob, import_id)
    if job is None or job.workspace_id != workspace_id:
        raise not_found("import")
    return job


@router.get("/{import_id}", response_model=ImportPublic)
async def get_import(import_id: uuid.UUID, principal: Reader, session: SessionDep) -> ImportJob:
    """Status and counts; `processed_rows` grows while the job runs."""
    return await _job(session, principal.workspace_id, import_id)


@router.get(
    "/{import_id}/errors",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "row,column,value,reason"}},
)
async def get_import_errors(
    import_id: uuid.UUID, principal: Reader, session: SessionDep, engine: EngineDep
) -> StreamingResponse:
    """The rows that were not imported, and why (row 2 is the file's first data row)."""
    job = await _job(session, principal.workspace_id, import_id)

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(REPORT_HEADER)
        async for row in report_rows(engine, job.id):
            writer.writerow(row)
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", job.filename.rsplit(".", 1)[0])
    name = f"{stem or 'import'}.errors.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
