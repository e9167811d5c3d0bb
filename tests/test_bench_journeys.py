"""`bench/journeys.py` at a tiny size, so that it cannot rot: every journey completes, the
figures print, and the latencies include the flow's delay (a send before it would be a bug)."""

from __future__ import annotations

import pytest

from bench import journeys


@pytest.mark.timeout(600)
def test_journeys_benchmark_completes_every_journey(capsys):
    figures = journeys.main(["--journeys", "20", "--batch", "5"])

    out = capsys.readouterr().out
    for phase in (figures.bare, figures.burst, figures.steady):
        assert phase.journeys == 20 and len(phase.latencies) == 20, phase.name
        assert phase.rate > 0
    # Event accepted → email sent spans the 1 s delay, never less.
    assert min(figures.burst.latencies + figures.steady.latencies) >= 1.0
    for line in (
        "bare Temporal, burst",
        "Waymark, burst",
        "Waymark, steady",
        "rate Waymark / bare Temporal:",
        "p99 event-to-send at",
        "load average",
    ):
        assert line in out, line
