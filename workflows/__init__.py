"""Temporal workflows. Names and the task queue are constants here; the worker registers `ALL`."""

from workflows.constants import TASK_QUEUE

ALL: list[type] = []

__all__ = ["ALL", "TASK_QUEUE"]
