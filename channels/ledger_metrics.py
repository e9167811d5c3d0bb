"""Figures from the message ledger (`messages`), shared by flow and campaign metrics.

One definition of what each ledger figure counts, written once as SQLAlchemy expressions that a
caller groups by its own keys (flow version and step, campaign message):

- `sent`: handed to the provider (or the local outbox): `sent_at` is set;
- `skipped`: the gate said no (no consent, suppressed, Smart Sending, no address), by
  `skip_reason` (the `reason` column, null on every other row);
- `failed`: refused by the provider, a template error, or an outcome never confirmed;
- `delivered` / `opened` / `clicked` / `bounced`: messages for which that happened at least once
  (their first time is the ledger's `*_at` column);
- `unsubscribed`: messages whose recipient unsubscribed through them.

With a `Window`, each figure counts what happened in `[since, until)` by its own timestamp
(skips by `created_at`; unsubscribes, which have no column of their own, by their
`message_events` row). Without one, every figure counts the whole ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Label, and_, case, exists, func

from models import Message, MessageEvent
from models.messages import MessageStatus

UNKNOWN = "unknown"  # the reason of a count whose row has none
OUTCOMES = ("sent", "failed", "delivered", "opened", "clicked", "bounced", "unsubscribed")


class Reasons(BaseModel):
    total: int = 0
    reasons: dict[str, int] = Field(default_factory=dict, description="count per reason")

    def add(self, reason: str | None, count: int) -> None:
        if count:
            self.total += count
            key = reason or UNKNOWN
            self.reasons[key] = self.reasons.get(key, 0) + count


class MessageCounts(BaseModel):
    sent: int = Field(0, description="handed to the provider (or the local outbox)")
    skipped: Reasons = Field(
        default_factory=Reasons, description="not sent: no consent, suppressed, smart sending…"
    )
    failed: int = 0
    delivered: int = Field(0, description="delivery confirmed by the provider")
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    unsubscribed: int = Field(0, description="messages whose recipient unsubscribed through them")

    def add(self, other: MessageCounts) -> None:
        """Add another set of counts (a message's to its path's, a step's to its version's)."""
        for name in OUTCOMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.skipped.reasons.items():
            self.skipped.add(reason, n)

    def add_row(self, row: Any) -> None:
        """Add one group of `LedgerCounts` (a row with `reason` and the count columns)."""
        for name in OUTCOMES:
            setattr(self, name, getattr(self, name) + getattr(row, name))
        self.skipped.add(row.reason, row.skipped)


@dataclass(frozen=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def holds(self, column: Any) -> ColumnElement[bool]:
        """`column` is set and falls in the window."""
        terms = [column.is_not(None)]
        if self.since is not None:
            terms.append(column >= self.since)
        if self.until is not None:
            terms.append(column < self.until)
        return and_(*terms)


class LedgerCounts(NamedTuple):
    """`reason` (select and group by it) and the labelled count columns (`OUTCOMES` and
    `skipped`) over `messages`."""

    reason: Label
    counts: list[Label]


def ledger_counts(window: Window = Window()) -> LedgerCounts:
    """The ledger figures as aggregate columns over `messages`, for the caller to select with
    its own grouping keys and filters (which choose the index: the flow's or the campaign's)."""
    m = Message.__table__.c
    e = MessageEvent.__table__.c
    skipped = m.status == MessageStatus.skipped.value
    failed = m.status == MessageStatus.failed.value
    unsubscribed: ColumnElement[bool] = m.status == MessageStatus.unsubscribed.value
    if window.bounded:
        # A skip is decided when its row is written; a failure sets `failed_at`; an
        # unsubscribe has no column: when it happened is in the message's history (few rows:
        # only unsubscribed messages are looked up, through ix_message_events_message).
        skipped = and_(skipped, window.holds(m.created_at))
        failed = and_(failed, window.holds(m.failed_at))
        unsubscribed = and_(
            unsubscribed,
            exists().where(
                e.message_id == m.id,
                e.status == MessageStatus.unsubscribed.value,
                window.holds(e.occurred_at),
            ),
        )

    def count(condition: ColumnElement[bool], name: str) -> Label:
        return func.count().filter(condition).label(name)

    return LedgerCounts(
        reason=case((m.status == MessageStatus.skipped.value, m.skip_reason)).label("reason"),
        counts=[
            count(window.holds(m.sent_at), "sent"),
            count(skipped, "skipped"),
            count(failed, "failed"),
            count(window.holds(m.delivered_at), "delivered"),
            count(window.holds(m.opened_at), "opened"),
            count(window.holds(m.clicked_at), "clicked"),
            count(window.holds(m.bounced_at), "bounced"),
            count(unsubscribed, "unsubscribed"),
        ],
    )


__all__ = [
    "OUTCOMES",
    "UNKNOWN",
    "LedgerCounts",
    "MessageCounts",
    "Reasons",
    "Window",
    "ledger_counts",
]
