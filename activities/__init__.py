"""Temporal activities: methods on classes that hold their dependencies (engine, providers)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from core.settings import Settings


def build_activities(engine: AsyncEngine, settings: Settings) -> list[Callable]:
    """Every activity the worker registers, bound to this process's engine and settings."""
    return []
