"""Workflow names, ids and the default task queue, in one place."""

TASK_QUEUE = "waymark"
