"""A worker SIGKILLed in the middle of a campaign send, then restarted: every recipient reaches
the provider exactly once.

The whole production shape, at a smaller size than `bench.campaign` (which runs the same code
with 100,000 recipients): the campaign is made and scheduled through the API, the worker is
`python worker.py` in its own process, SendGrid is a local sink that counts each recipient it
is handed, and SendGrid's Event Webhook (`processed` events, signed) is played back to the API,
which is how the batches that were in flight when the worker died are settled.
"""

from __future__ import annotations

import pytest

from bench import sink
from bench.campaign import Bench, api_client

RECIPIENTS = 6_000  # six batches of 1,000: some done, some in flight, some not started


@pytest.mark.timeout(900)  # a dead worker's batches wait out their heartbeat timeout and retry
async def test_a_killed_worker_sends_every_recipient_exactly_once(settings, engine, tmp_path):
    with sink.running() as sink_url:
        worker_settings = settings.model_copy(
            update={"sendgrid_base_url": sink_url, "public_url": "https://wm.example.com"}
        )
        async with api_client(worker_settings) as api:
            bench = Bench(worker_settings, sink_url, tmp_path, api)
            # The sink answers the first batch to reach it (1,000 < 1,500), then holds every
            # answer: the next batch starts in its place, and the batches in flight wait.
            result = await bench.run("killed mid-send", RECIPIENTS, kill=True, kill_at=0.25)

    assert result.killed_with is not None and 0 < result.killed_with < RECIPIENTS
    sink_saw = {k: result.sink[k] for k in ("recipients", "deliveries", "duplicates")}
    assert sink_saw == {"recipients": RECIPIENTS, "deliveries": RECIPIENTS, "duplicates": 0}
    assert (result.sent, result.unknown) == (RECIPIENTS, 0)
