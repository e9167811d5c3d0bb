"""Import a CSV file of profiles uploaded through the API: one activity does the work."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.imports import (
        FailImportInput,
        ImportActivities,
        ProcessImportInput,
    )


def import_workflow_id(job_id: uuid.UUID) -> str:
    """One workflow per import job: starting it twice is refused."""
    return f"import-profiles-{job_id}"


class ImportProfilesInput(BaseModel):
    job_id: uuid.UUID
    workspace_id: uuid.UUID


class ImportProfilesResult(BaseModel):
    status: str
    total_rows: int = 0
    created_rows: int = 0
    updated_rows: int = 0
    unchanged_rows: int = 0
    failed_rows: int = 0
    error: str | None = None


@workflow.defn
class ImportProfilesWorkflow:
    @workflow.run
    async def run(self, input: ImportProfilesInput) -> ImportProfilesResult:
        try:
            done = await workflow.execute_activity_method(
                ImportActivities.process_import,
                ProcessImportInput(job_id=input.job_id),
                start_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
        except ActivityError as exc:
            error = f"the import stopped: {exc.cause or exc}"
            await workflow.execute_activity_method(
                ImportActivities.fail_import,
                FailImportInput(job_id=input.job_id, error=error),
                start_to_close_timeout=timedelta(minutes=1),
            )
            return ImportProfilesResult(status="failed", error=error)
        return ImportProfilesResult(**done.model_dump())
