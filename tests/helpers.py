"""Helpers shared by tests of every package (importable by name, unlike a conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def until(predicate: Callable[[], Awaitable[Any]], *, deadline: float = 30.0) -> Any:
    """The predicate's first truthy answer, asked every 50 ms until `deadline` seconds (wall
    clock) have passed: how a test waits for work, never a fixed sleep."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not (answer := await predicate()):
        name = getattr(predicate, "__qualname__", "condition")
        assert loop.time() < end, f"{name} not met within {deadline:g} s"
        await asyncio.sleep(0.05)
    return answer
