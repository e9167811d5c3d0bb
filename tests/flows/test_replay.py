"""Recorded journey histories must replay on today's code: a non-deterministic change to
`workflows.journey` fails here (see docs/VERSIONING.md for the patching procedure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.journey import JourneyWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def _read(path: Path) -> str:
    return path.read_text()


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_journeys_replay(path: Path):
    history = WorkflowHistory.from_json(path.stem, _read(path))
    replayer = Replayer(workflows=[JourneyWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
