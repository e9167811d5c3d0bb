"""The baseline of `bench.journeys`: a bare Temporal workflow of a journey's shape.

One timer (the delay), then one activity that does nothing (the send). No database, no
outbox, no router: what Temporal alone costs for the same trip on the same server.

    python -m bench.bare_journey --task-queue Q

runs a worker for it with the options `waymark worker` uses (`worker.WORKER_OPTIONS`), against
TEMPORAL_ADDRESS, until SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def bare_send(journey: str) -> None:
    """Does nothing: stands in for the send."""


@workflow.defn
class BareJourneyWorkflow:
    @workflow.run
    async def run(self, delay_seconds: float) -> None:
        await workflow.sleep(delay_seconds)
        await workflow.execute_activity(
            bare_send, workflow.info().workflow_id, start_to_close_timeout=timedelta(seconds=30)
        )


async def _serve(task_queue: str) -> None:
    from temporalio.worker import Worker

    from core import temporal
    from core.settings import get_settings
    from worker import WORKER_OPTIONS

    client = await temporal.connect(get_settings())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BareJourneyWorkflow],
        activities=[bare_send],
        **WORKER_OPTIONS,
    ):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-queue", required=True)
    asyncio.run(_serve(parser.parse_args().task_queue))


if __name__ == "__main__":
    main()
