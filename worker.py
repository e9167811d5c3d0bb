"""The Waymark worker: every workflow and activity on the task queue, and the outbox dispatcher.

`waymark worker` (or `python worker.py`). Stops gracefully on SIGTERM / SIGINT: it stops polling,
gives running activities `GRACEFUL_SHUTDOWN` to finish (then cancels them), and exits.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import build_activities
from core import temporal
from core.db import create_engine
from core.logging import configure_logging
from core.runtime import freeze_startup_objects
from core.settings import Settings, get_settings
from ingest.outbox import OutboxDispatcher
from ingest.routing import build_routers
from workflows.registry import ALL as WORKFLOWS
from workflows.schedules import ensure_schedules

GRACEFUL_SHUTDOWN = timedelta(seconds=20)
# How the worker is tuned; the journey benchmark's bare-Temporal baseline (bench/journeys.py)
# runs its worker with the same options, so the two are compared like for like.
# - `workflows` passed through the sandbox: the sandbox re-imported `workflows.journey` (and its
#   pydantic models) for every journey, about a quarter of the worker's CPU in
#   `python -m bench.journeys`. Each run still gets its own workflow object; what is lost is the
#   sandbox's check of non-deterministic calls (`datetime.now()`, I/O) in workflow modules in
#   this worker. `tests/flows/test_replay.py` replays histories under the full sandbox, and
#   workflow modules keep to the rules in docs/VERSIONING.md and STYLE (workflow.now(), ...).
WORKER_OPTIONS: dict[str, Any] = {
    "graceful_shutdown_timeout": GRACEFUL_SHUTDOWN,
    "workflow_runner": SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows")
    ),
}
log = structlog.get_logger(__name__)


def build_worker(
    client: Client,
    settings: Settings,
    engine: AsyncEngine,
    *,
    task_queue: str | None = None,
    **options: Any,
) -> Worker:
    """The worker for every workflow and activity; `options` go to `temporalio.worker.Worker`."""
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=build_activities(engine, settings),
        **(WORKER_OPTIONS | options),
    )


def build_dispatcher(client: Client, settings: Settings, engine: AsyncEngine) -> OutboxDispatcher:
    """The outbox dispatcher, with every router that acts on new events."""
    return OutboxDispatcher(engine, settings.database_url, build_routers(client, settings, engine))


async def run_worker(settings: Settings) -> None:
    engine = create_engine(settings)
    client = await temporal.connect(settings)
    await ensure_schedules(client, settings)
    worker = build_worker(client, settings, engine)
    dispatcher = build_dispatcher(client, settings, engine)
    freeze_startup_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started", task_queue=settings.task_queue)
    try:
        async with worker:
            dispatching = asyncio.create_task(dispatcher.run(stop))
            await stop.wait()
            log.info("worker stopping: finishing in-flight activities")
            await dispatching
    finally:
        await engine.dispose()
    log.info("worker stopped")


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
