"""Temporal workflows, one per module. The task queue and other names are constants in
`workflows.constants`; the worker registers `workflows.registry.ALL`."""

from workflows.constants import TASK_QUEUE

__all__ = ["TASK_QUEUE"]
