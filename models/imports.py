"""CSV import jobs, their per-row errors, and the staging tables the import streams through.

`import_file_chunks` holds an uploaded file (API imports) until a worker processes it;
`import_rows` holds validated rows between `COPY` and the set-based upsert. Both are emptied
for a job when it ends; `import_row_errors` stays, it is the job's report.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from models.base import created_at_field, id_field, jsonb_field, tz_field, workspace_fk


class ImportStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


def job_fk(*, primary_key: bool = False, index: bool = False) -> object:
    return Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("import_jobs.id", ondelete="CASCADE"),
            nullable=False,
            primary_key=primary_key,
            index=index,
        )
    )


class ImportJob(SQLModel, table=True):
    __tablename__ = "import_jobs"
    __table_args__ = (Index("ix_import_jobs_workspace_created", "workspace_id", "created_at"),)

    id: uuid.UUID = id_field()
    workspace_id: uuid.UUID = workspace_fk(index=False)
    status: ImportStatus = Field(default=ImportStatus.queued, sa_type=String(16))
    filename: str = Field(max_length=255)
    list_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(UUID(as_uuid=True), ForeignKey("lists.id", ondelete="SET NULL")),
    )
    # Column mapping, skipped columns, default country: see ingest.csv_rows.ImportOptions.
    options: dict = jsonb_field()
    total_rows: int = 0
    # Rows committed so far: a retried job resumes after them.
    processed_rows: int = 0
    created_rows: int = 0
    updated_rows: int = 0
    unchanged_rows: int = 0
    failed_rows: int = 0
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_at_field()
    started_at: datetime | None = tz_field()
    finished_at: datetime | None = tz_field()


class ImportRowError(SQLModel, table=True):
    """Why a row of an import was not imported: the job's error report."""

    __tablename__ = "import_row_errors"
    __table_args__ = (Index("ix_import_row_errors_job_row", "job_id", "row_no"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    job_id: uuid.UUID = job_fk()
    row_no: int
    column: str = Field(sa_type=Text)
    value: str | None = Field(default=None, sa_type=Text)
    reason: str = Field(sa_type=Text)


class ImportFileChunk(SQLModel, table=True):
    """An uploaded CSV file, in order, until a worker has imported it."""

    __tablename__ = "import_file_chunks"

    job_id: uuid.UUID = job_fk(primary_key=True)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ImportRow(SQLModel, table=True):
    """A validated row between `COPY` and the upsert. Unlogged: it is rebuilt on a retry."""

    __tablename__ = "import_rows"
    __table_args__ = ({"prefixes": ["UNLOGGED"]},)

    job_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    row_no: int = Field(primary_key=True)
    external_id: str | None = Field(default=None, sa_type=Text)
    email: str | None = Field(default=None, sa_type=Text)
    phone: str | None = Field(default=None, sa_type=Text)
    first_name: str | None = Field(default=None, sa_type=Text)
    last_name: str | None = Field(default=None, sa_type=Text)
    timezone: str | None = Field(default=None, sa_type=Text)
    locale: str | None = Field(default=None, sa_type=Text)
    country: str | None = Field(default=None, sa_type=Text)
    region: str | None = Field(default=None, sa_type=Text)
    city: str | None = Field(default=None, sa_type=Text)
    postal_code: str | None = Field(default=None, sa_type=Text)
    latitude: float | None = None
    longitude: float | None = None
    properties: dict = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    email_consent: str | None = Field(default=None, sa_type=Text)
    sms_consent: str | None = Field(default=None, sa_type=Text)
    whatsapp_consent: str | None = Field(default=None, sa_type=Text)
    push_consent: str | None = Field(default=None, sa_type=Text)
    # pending → new / matched → created / updated / unchanged, or failed.
    status: str = Field(
        default="pending", sa_type=Text, sa_column_kwargs={"server_default": "pending"}
    )
    profile_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))


__all__ = ["ImportFileChunk", "ImportJob", "ImportRow", "ImportRowError", "ImportStatus"]
