"""What every provider adapter shares: retry with backoff, bounded concurrency, partial results."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import structlog

from channels.base import OutcomeUnknown, ProviderUnavailable, SendResult

log = structlog.get_logger(__name__)
T = TypeVar("T")

RETRY_DELAYS: tuple[float, ...] = (0.5, 2.0, 5.0)  # then ProviderUnavailable: Temporal retries
MAX_RETRY_AFTER = 30.0
CONCURRENCY = 8


class Retryable(Exception):
    """A 429, 5xx or network failure of one request: worth another try soon."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PartlySent(ProviderUnavailable):
    """Some requests of a call stayed unavailable after retries. `results` holds what the
    provider did accept or refuse, so the caller can record those before Temporal retries."""

    def __init__(self, message: str, results: list[SendResult]) -> None:
        super().__init__(message)
        self.results = results


def retry_after_seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


async def with_retries(
    call: Callable[[], Awaitable[T]], delays: tuple[float, ...] = RETRY_DELAYS, *, what: str
) -> T:
    """`call()`, again after each delay while it raises Retryable; then ProviderUnavailable."""
    for attempt in range(len(delays) + 1):
        try:
            return await call()
        except Retryable as exc:
            if attempt == len(delays):
                raise ProviderUnavailable(f"{what}: {exc} (after {attempt + 1} tries)") from exc
            delay = max(delays[attempt], min(exc.retry_after or 0.0, MAX_RETRY_AFTER))
            log.warning("provider request retried", provider=what, reason=str(exc), delay=delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def run_bounded(
    jobs: Iterable[Callable[[], Awaitable[list[SendResult]]]], limit: int = CONCURRENCY
) -> list[SendResult]:
    """Run request jobs at most `limit` at a time; results in job order.

    When some jobs stay unavailable, raises PartlySent with the others' results; when some
    got no answer after sending, OutcomeUnknown (with the others' results), never a retry."""
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[list[SendResult]]]) -> list[SendResult]:
        async with semaphore:
            return await job()

    outcomes = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
    results: list[SendResult] = []
    unavailable: list[ProviderUnavailable] = []
    unknown: list[OutcomeUnknown] = []
    for outcome in outcomes:
        if isinstance(outcome, ProviderUnavailable):
            unavailable.append(outcome)
        elif isinstance(outcome, OutcomeUnknown):
            unknown.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results.extend(outcome)
    if unknown:  # takes precedence: those messages must not be handed back for a resend
        raise OutcomeUnknown(str(unknown[0]), results)
    if unavailable:
        raise PartlySent(str(unavailable[0]), results)
    return results
