"""Temporal workflows. Names and the task queue are constants here; the worker registers `ALL`."""

from workflows.constants import TASK_QUEUE
from workflows.import_profiles import ImportProfilesWorkflow

ALL: list[type] = [ImportProfilesWorkflow]

__all__ = ["ALL", "TASK_QUEUE"]
