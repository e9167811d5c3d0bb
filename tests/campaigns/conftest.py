"""Fixtures of the campaign tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.temporal import installed_binary

SUGGEST_AFTER_EVENTS = 10  # the dev server's continue-as-new suggestion


@pytest.fixture
async def suggesting_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new from 10 history events (not about 4,000):
    continue-as-new paths run in a short test."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(installed_binary("temporal")),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER_EVENTS}",
        ],
    )
    yield env
    await env.shutdown()
