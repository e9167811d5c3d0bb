"""The send path: ledger rows by key → gate → render → claim (`sending`, committed) → provider
→ `sent`/`failed` + a "Received <Channel>" profile event. One code path for one message
(journeys) and for a batch (campaigns), set-based: a batch of 1,000 recipients costs a handful
of SQL statements and, for email, one provider request per 1,000 recipients.

1. The rows of the batch's keys are read (one query). A settled key answers its outcome; a key
   in `sending` is the unknown window below; a `queued` key (held, or handed back) is sent
   again under its own row.
2. The gate decides for every recipient in one query (`channels.gate.check_many`).
3. Keys seen for the first time get their row only now, in its decided state: skips and holds
   in one INSERT, and each chunk's sends in one INSERT of `sending` rows with their content —
   the claim (`channels.ledger_new.insert_decided`). So a new message costs one INSERT and one
   UPDATE (its outcome), and no history entry: the row keeps those two steps (`sending_at`,
   `sent_at`; see `channels.ledger`).
4. Rendering and link signing happen per chunk (`channels.compose`): a template that reads
   nothing of the recipient renders once per send; emails of the same copy — or of the same
   copy but for the recipients' names — share a SendGrid request, what differs going as
   per-recipient `substitutions` (`channels.email_tags`); the ledger keeps the content as the
   recipient gets it. Chunk N+1 is rendered and claimed while chunk N is with the provider, and
   chunk N's answers are recorded while chunk N+1 is. SMS (one request per message) go in
   growing chunks (`_chunks`: 1/8 of `SMS_BATCH`, doubling): the provider gets its first
   messages once a small chunk is claimed, not a full one, and the last chunk's answers,
   recorded after every call, are few. Emails go in full chunks (one request per 1,000).

At most once, and the one unknown window
----------------------------------------
The row is claimed — written as `sending` under its unique key, or moved `queued → sending`
guarded by the status — and committed *before* the provider is called, and only rows this
attempt claimed are handed to the provider. So a retried or duplicated attempt never sends a
key twice:

- the provider answered and we recorded it: the row is `sent`/`failed` — returned as it is;
- the provider said "unavailable" (`ProviderUnavailable`: 429/5xx/network before acceptance):
  the row goes back to `queued` and the error is raised, so Temporal retries and sends it then;
- **the worker died (or the activity timed out) after the claim (the `sending` row, new or
  moved from `queued`, committed) and before the answer was recorded**, or **the request went
  out and no answer came back** (a read timeout, the connection dropped after sending:
  `OutcomeUnknown` — never retried, since the provider may have accepted it): the row stays
  `sending` and nobody knows whether the provider accepted it. This is the only
  unknown-outcome window. It is reconciled by the provider's own reports, which carry
  our message id: SendGrid events carry `custom_args.waymark_message_id`, Twilio status
  callbacks are posted to `/webhooks/twilio/{workspace}/status?wm=<message id>`. Any such event
  moves the row on (`processed`/`sent` → `sent`, `delivered`, `bounce`, ...), see
  `channels.ledger.record_provider_event`.

  Policy: a retry that finds a row in `sending` never resends it. While the claim is younger
  than `UNKNOWN_OUTCOME_AFTER` (10 min) it raises `OutcomePending` (the activity retries after a
  minute, giving webhooks time); after that the row is settled `failed` with error
  `outcome_unknown` — visible in the ledger and metrics, never silently dropped and never sent
  twice. A late delivery report still moves it to `delivered`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import null, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from activities.channels import (
    HeldRecipient,
    SendMessageInput,
    SendMessageResult,
    SendMessagesInput,
    SendMessagesResult,
    SendOutcome,
)
from channels import gate, ledger, ledger_new
from channels.base import OutcomeUnknown, ProviderUnavailable, SendResult, SendStatus
from channels.compose import Composer, Item, Prepared, unpack_content
from channels.metrics import RECEIVED
from channels.render import TemplateError, reads_properties
from channels.settings import ChannelSettings, channel_settings_of
from core.db import session_factory
from models import Channel, MessageStatus, Profile, PushSubscription, Workspace
from models.base import utcnow
from models.messages import SourceType
from models.templates import Template

__all__ = [
    "OutcomePending",
    "RecipientResult",
    "send_many",
    "send_many_outcomes",
    "send_one",
    "unpack_content",
]

log = structlog.get_logger(__name__)

UNKNOWN_OUTCOME_AFTER = timedelta(minutes=10)
EMAIL_BATCH = 1000  # SendGrid: at most 1,000 personalizations per request
SMS_BATCH = 500  # one provider call and one commit of outcomes per this many SMS
RAMP = 8  # the first chunk of a send is 1/RAMP of a full one (see `_chunks`)
RAMP_MIN = 32  # ... and never smaller than this
YIELD_EVERY = 32  # recipients rendered between two yields to the event loop
SETTLED = frozenset(MessageStatus) - {MessageStatus.queued, MessageStatus.sending}
_STATUS = {
    SendOutcome.sent: "sent",
    SendOutcome.failed: "failed",
    SendOutcome.skipped: "skipped",
    SendOutcome.held: "queued",
}

# The batch's profiles by primary key (ids as JSON text: json.dumps is C, psycopg's arrays are
# not); the workspace compared as text, so that its stale estimate offers no index path (see
# `channels.ledger`'s batch statements).
_BATCH_PROFILES = text(
    "profiles.id = ANY (ARRAY(SELECT CAST(jsonb_array_elements_text(CAST(:ids AS jsonb)) AS uuid)))"
    " AND CAST(profiles.workspace_id AS text) = CAST(:ws AS text)"
)
PROFILE_COLUMNS = [
    getattr(Profile, name)
    for name in (
        "id", "external_id", "email", "phone", "first_name", "last_name", "timezone", "locale",
        "country", "region", "city", "postal_code", "properties",
    )
]  # fmt: skip


def _chunks(total: int, size: int, ramp: int = RAMP) -> list[tuple[int, int]]:
    """The chunks of a send: `size` at most, but starting at `size // ramp` and doubling, so
    the provider gets its first messages after a small chunk is rendered and claimed (not a
    full one), and the chunks after it are rendered, claimed and recorded while an earlier one
    is with the provider. A send of a few recipients is one chunk."""
    chunks, start, step = [], 0, max(size // ramp, RAMP_MIN)
    while start < total:
        end = min(total, start + step)
        if total - end < RAMP_MIN:  # no tail chunk of a handful: it goes with this one
            end = total
        chunks.append((start, end))
        start, step = end, min(size, step * 2)
    return chunks


class OutcomePending(Exception):
    """A message of this call is in `sending` and still within the reconciliation grace."""


@dataclass
class _Spec:
    """What one call sends: shared by every recipient of the call."""

    workspace_id: uuid.UUID
    channel: Channel
    template_id: uuid.UUID
    transactional: bool
    smart_sending: bool
    utm: dict[str, str]
    from_email: str | None
    from_name: str | None
    reply_to: str | None
    source: ledger_new.Source
    now: datetime | None = None  # the caller's clock, when it runs ahead (see `_Sender._now`)


@dataclass(slots=True)
class _Recipient:
    key: str
    profile_id: uuid.UUID
    ref: str  # the profile id as text: made once, used by every statement and the provider
    event: dict[str, Any] | None = None


@dataclass(slots=True)
class _Result:
    """One key's outcome (a `SendMessageResult` without pydantic: built per recipient)."""

    outcome: SendOutcome
    message_id: uuid.UUID
    status: str
    skip_reason: str | None = None
    hold_until: datetime | None = None
    provider_message_id: str | None = None
    error: str | None = None
    replayed: bool = False

    def public(self) -> SendMessageResult:
        return SendMessageResult(
            outcome=self.outcome,
            message_id=self.message_id,
            status=self.status,
            skip_reason=self.skip_reason,
            hold_until=self.hold_until,
            provider_message_id=self.provider_message_id,
            error=self.error,
            replayed=self.replayed,
        )


RecipientResult = _Result  # one recipient's outcome, as `send_many_outcomes` reports it


def _provider_name(provider: Any) -> str:
    return str(getattr(provider, "name", None) or type(provider).__name__)[:32]


class _Sender:
    """One call of the send path over a list of recipients. `providers`: the channel providers
    to send with; None: the workspace's own (`channels.credentials.providers_for`)."""

    def __init__(self, engine: AsyncEngine, settings: Any, spec: _Spec, providers: Any) -> None:
        self.engine = engine
        self.settings = settings
        self.spec = spec
        self.providers = providers
        self.results: dict[str, _Result] = {}
        self.pending = 0

    # -- loading -----------------------------------------------------------------------

    async def _load(self, session: AsyncSession, profile_refs: Sequence[str]):
        ws = self.spec.workspace_id
        self.workspace = (
            await session.execute(select(Workspace).where(Workspace.id == ws))
        ).scalar_one()
        self.channel_settings: ChannelSettings = channel_settings_of(
            self.workspace.timezone, (self.workspace.settings or {}).get("channels")
        )
        self.template = (
            await session.execute(
                select(Template).where(
                    Template.id == self.spec.template_id, Template.workspace_id == ws
                )
            )
        ).scalar_one_or_none()
        # Core rows (attributes, no ORM identity map): what the gate and templates read; the
        # profiles' properties (JSON, as large as a shop makes them) only when the template may
        # read them.
        columns = PROFILE_COLUMNS
        if self.template is not None and not reads_properties(self.template):
            columns = [*PROFILE_COLUMNS[:-1], null().label("properties")]
        ids = json.dumps(profile_refs)
        rows = await session.execute(
            select(*columns).where(_BATCH_PROFILES.bindparams(ids=ids, ws=str(ws)))
        )
        self.profiles = {p.id: p for p in rows}
        self.subscriptions: dict[uuid.UUID, list[PushSubscription]] = {}
        if self.spec.channel == Channel.push:
            subs = await session.execute(
                select(PushSubscription).where(
                    PushSubscription.workspace_id == ws,
                    PushSubscription.profile_id.in_(list(self.profiles)),  # type: ignore[union-attr]
                )
            )
            for sub in subs.scalars():
                self.subscriptions.setdefault(sub.profile_id, []).append(sub)

    # -- outcomes ----------------------------------------------------------------------

    def _settled(self, key: str, row, *, replayed: bool) -> None:
        status = MessageStatus(row.status)
        if status == MessageStatus.skipped:
            outcome = SendOutcome.skipped
        elif status == MessageStatus.failed and row.sent_at is None:
            outcome = SendOutcome.failed
        else:
            outcome = SendOutcome.sent
        self.results[key] = _Result(
            outcome,
            row.id,
            status.value,
            skip_reason=row.skip_reason,
            provider_message_id=row.provider_message_id,
            error=row.error,
            replayed=replayed,
        )

    def _result(self, key: str, message_id: uuid.UUID, outcome: SendOutcome, **kw) -> None:
        self.results[key] = _Result(outcome, message_id, _STATUS[outcome], **kw)

    def _existing(self, key: str, row, now: datetime, unknown: list) -> bool:
        """Answer a key that has a row; True when it is `queued` (to be sent again)."""
        if row.status in SETTLED:
            self._settled(key, row, replayed=True)
        elif row.status == MessageStatus.sending:
            if row.sending_at and now - row.sending_at >= UNKNOWN_OUTCOME_AFTER:
                error = (
                    "outcome_unknown: the provider call was interrupted and no "
                    f"provider event arrived within {UNKNOWN_OUTCOME_AFTER}; not resent"
                )
                unknown.append(ledger.Outcome(row.id, MessageStatus.failed, error=error))
                self._result(key, row.id, SendOutcome.failed, error=error)
            else:
                self.pending += 1
        else:
            return True
        return False

    async def _written_elsewhere(self, session, items: list[Item]) -> None:
        """Keys whose row another attempt wrote while this one decided: answered from it
        (settled), or left to the retry (`OutcomePending`); never sent by this attempt."""
        if not items:
            return
        rows = await ledger_new.find_many(session, self.spec.workspace_id, [i.key for i in items])
        for item in items:
            row = rows.get(item.key)
            if row is None:  # the profile was erased meanwhile
                continue
            if row.status in SETTLED:
                self._settled(item.key, row, replayed=True)
            else:
                self.pending += 1

    async def _write(self, session, items: list[Item], decided: list[ledger_new.Decided], now):
        """Write new keys' rows (`insert_decided`); returns the ids written."""
        ws, source = self.spec.workspace_id, self.spec.source
        written = await ledger_new.insert_decided(session, ws, source, decided, now)
        if len(written) < len(decided):
            await self._written_elsewhere(
                session, [i for i in items if i.message_id not in written]
            )
        return written

    def _now(self) -> datetime:
        """The wall clock, or the caller's time when that runs ahead of it (a campaign on
        Temporal's time-skipping test server): the gate and the ledger's stamps use it."""
        now = utcnow()
        return max(now, self.spec.now) if self.spec.now else now

    # -- the path --------------------------------------------------------------------------

    async def run(
        self, recipients: Sequence[_Recipient], heartbeat: Callable[..., None] | None
    ) -> dict[str, _Result]:
        ws = self.spec.workspace_id
        now = self._now()
        owned = self.providers is None
        async with session_factory(self.engine)() as session:
            if owned:  # the workspace's own: read with the batch, not in a session of their own
                from channels.credentials import providers_for

                self.providers = await providers_for(session, self.settings, ws)
            await self._load(session, [r.ref for r in recipients])
            rows = await ledger_new.find_many(session, ws, [r.key for r in recipients])
            reopened: list[Item] = []
            fresh: list[Item] = []
            unknown: list[ledger.Outcome] = []
            for r in recipients:
                profile = self.profiles.get(r.profile_id)
                row = rows.get(r.key)
                if row is not None:
                    if self._existing(r.key, row, now, unknown) and profile is not None:
                        reopened.append(Item(r.key, row.id, profile, r.event, True, r.ref))
                elif profile is not None:  # else erased: nothing to send, nothing to record
                    fresh.append(Item(r.key, uuid.uuid4(), profile, r.event, False, r.ref))
            await ledger.mark_outcomes(session, ws, unknown, now)
            sendable = await self._gate(session, reopened, fresh, now)
            await session.commit()
        # Providers that hold connections (Twilio's HTTP client) keep them for the whole call.
        provider = self._provider()
        held = provider if owned and hasattr(provider, "__aenter__") else nullcontext()
        async with held:
            await self._pipeline(sendable, heartbeat)
        if self.pending:
            raise OutcomePending(
                f"{self.pending} message(s) are in `sending` after an interrupted attempt; "
                "waiting for provider events to settle them"
            )
        return self.results

    def _composer(self) -> Composer:
        spec = self.spec
        return Composer(
            settings=self.settings,
            workspace=self.workspace,
            template=self.template,
            channel=spec.channel,
            transactional=spec.transactional,
            utm={**self.channel_settings.utm, **spec.utm},
            sender={
                "from_email": spec.from_email,
                "from_name": spec.from_name,
                "reply_to": spec.reply_to,
            },
            source_type=SourceType(spec.source.source_type).value,
            provider=_provider_name(self._provider()),
            subscriptions=self.subscriptions,
        )

    async def _gate(self, session, reopened: list[Item], fresh: list[Item], now) -> list[Item]:
        """Gate the batch (one query): skips and holds recorded; the items to send returned."""
        ws, spec = self.spec.workspace_id, self.spec
        if self.template is None or self.template.channel != spec.channel:
            error = f"template {spec.template_id} not found for channel {spec.channel.value}"
            return await self._fail_all(session, reopened, fresh, error, now)
        provider_config = getattr(self.providers, "config", {}).get(Channel.email, {})
        spec.from_email = spec.from_email or self.channel_settings.from_email
        spec.from_email = spec.from_email or provider_config.get("from_email")
        spec.from_name = spec.from_name or self.channel_settings.from_name
        spec.from_name = spec.from_name or provider_config.get("from_name")
        spec.reply_to = spec.reply_to or self.channel_settings.reply_to
        spec.reply_to = spec.reply_to or provider_config.get("reply_to")
        if spec.channel == Channel.email and not spec.from_email:
            error = "no sender: set from_email in the channel settings, credentials or message"
            return await self._fail_all(session, reopened, fresh, error, now)
        items = reopened + fresh
        decisions = await gate.check_many(
            session,
            workspace_id=ws,
            profiles=[i.profile for i in items],
            channel=spec.channel,
            transactional=spec.transactional,
            smart_sending=spec.smart_sending,
            now=now,
            settings=self.channel_settings,
            refs=[i.profile_ref for i in items],
        )
        skips, holds, sendable = [], [], []
        decided: list[ledger_new.Decided] = []
        undecided: list[tuple[Item, gate.GateDecision]] = []
        for item in items:
            decision = decisions[item.profile.id]
            action = decision.action
            if action == gate.GateAction.send:
                sendable.append(item)
            elif not item.existing:
                undecided.append((item, decision))
                decided.append(
                    ledger_new.Decided(
                        item.message_id,
                        item.key,
                        item.profile.id,
                        MessageStatus.skipped
                        if action == gate.GateAction.skip
                        else MessageStatus.queued,
                        skip_reason=decision.reason,
                        hold_until=decision.hold_until,
                        profile_ref=item.profile_ref,
                    )
                )
            else:
                self._decided(item, decision)
                if action == gate.GateAction.skip:
                    skips.append((item.message_id, decision.reason))
                else:
                    holds.append((item.message_id, decision.hold_until))
        await ledger.mark_skipped(session, ws, skips, now)
        await ledger.mark_held(session, ws, holds, now)
        written = await self._write(session, [i for i, _ in undecided], decided, now)
        for item, decision in undecided:
            if item.message_id in written:
                self._decided(item, decision)
        return sendable

    def _decided(self, item: Item, decision: gate.GateDecision) -> None:
        if decision.action == gate.GateAction.skip:
            self._result(
                item.key, item.message_id, SendOutcome.skipped, skip_reason=decision.reason
            )
        else:
            self._result(
                item.key, item.message_id, SendOutcome.held, hold_until=decision.hold_until
            )

    async def _fail_all(self, session, reopened, fresh, error: str, now) -> list[Item]:
        outcomes = [
            ledger.Outcome(i.message_id, MessageStatus.failed, error=error) for i in reopened
        ]
        await ledger.mark_outcomes(
            session, self.spec.workspace_id, outcomes, now, expected=MessageStatus.queued
        )
        decided = [
            ledger_new.Decided(i.message_id, i.key, i.profile.id, MessageStatus.failed, error=error)
            for i in fresh
        ]
        written = await self._write(session, fresh, decided, now)
        for item in reopened + [i for i in fresh if i.message_id in written]:
            self._result(item.key, item.message_id, SendOutcome.failed, error=error)
        return []

    # -- per chunk -----------------------------------------------------------------------------

    async def _render_and_claim(self, items: list[Item]) -> list[Prepared]:
        """Render a chunk and claim it (committed): what may go out. A new key's row is
        written here, as `sending` with its content (or `failed`, when it does not render)."""
        composer = self.composer
        prepared: list[Prepared] = []
        failed: list[tuple[Item, str]] = []
        for i, item in enumerate(items):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                # Let the provider call of the previous chunk (same event loop) move on.
                await asyncio.sleep(0)
            try:
                prepared.append(composer.prepare(item))
            except TemplateError as exc:
                failed.append((item, f"template_error: {exc}"))
        return await self._claim(prepared, failed)

    async def _claim(
        self, prepared: list[Prepared], failed: list[tuple[Item, str]]
    ) -> list[Prepared]:
        ws, now = self.spec.workspace_id, utcnow()
        sending = MessageStatus.sending
        decided = [
            ledger_new.Decided(
                p.item.message_id,
                p.item.key,
                p.item.profile.id,
                sending,
                outgoing=p.claim,
                ref=p.ref,
                profile_ref=p.item.profile_ref,
            )
            for p in prepared
            if not p.item.existing
        ]
        decided += [
            ledger_new.Decided(i.message_id, i.key, i.profile.id, MessageStatus.failed, error=error)
            for i, error in failed
            if not i.existing
        ]
        async with session_factory(self.engine)() as session:
            # Shared content first: the rows below reference it.
            await ledger.store_contents(session, ws, self.composer.contents, now)
            failures = [
                ledger.Outcome(i.message_id, MessageStatus.failed, error=error)
                for i, error in failed
                if i.existing
            ]
            await ledger.mark_outcomes(session, ws, failures, now, expected=MessageStatus.queued)
            claims = [p.claim for p in prepared if p.item.existing]
            claimed = await ledger.mark_sending(session, ws, claims, now)
            new = [p.item for p in prepared if not p.item.existing]
            new += [i for i, _ in failed if not i.existing]
            claimed |= await self._write(session, new, decided, now)
            await session.commit()
        for item, error in failed:
            if item.existing or item.message_id in claimed:
                self._result(item.key, item.message_id, SendOutcome.failed, error=error)
        return [p for p in prepared if p.item.message_id in claimed]

    def _provider(self):
        return getattr(self.providers, self.spec.channel.value)

    async def _pipeline(self, sendable: list[Item], heartbeat) -> None:
        """Render and claim chunk N+1 while chunk N is with the provider (one call in flight).

        A chunk is claimed (committed) before its provider call, as always. When a call stays
        unavailable, the chunk claimed meanwhile is handed back too, and later chunks were
        never claimed: all of them are `queued` for the retry (new keys of later chunks have
        no row yet)."""
        size = EMAIL_BATCH if self.spec.channel == Channel.email else SMS_BATCH
        self.delivered = 0
        self.recording: list[asyncio.Task] = []
        if not sendable:
            return
        self.composer = self._composer()
        in_flight: asyncio.Task | None = None
        try:
            # Emails go in full chunks (one SendGrid request per 1,000): splitting them did
            # not pay off in `bench.send` (rendering, not waiting, is their cost).
            ramp = RAMP if self.spec.channel != Channel.email else 1
            for start, end in _chunks(len(sendable), size, ramp):
                claimed = await self._render_and_claim(sendable[start:end])
                if in_flight is not None:
                    task, in_flight = in_flight, None
                    try:
                        await task
                    except ProviderUnavailable as exc:
                        await self._hand_back(claimed, str(exc))
                        raise
                if claimed:
                    in_flight = asyncio.create_task(self._deliver(claimed, heartbeat))
            if in_flight is not None:
                task, in_flight = in_flight, None
                await task
        finally:
            if in_flight is not None:  # preparing the next chunk failed: let this call finish
                await asyncio.wait([in_flight])
                if not in_flight.cancelled():
                    in_flight.exception()  # retrieved; the preparing error is the one raised
            # Answers are recorded while the next chunk is with the provider; all of them are
            # recorded before this returns (or raises).
            recorded = await asyncio.gather(*self.recording, return_exceptions=True)
        for outcome in recorded:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _deliver(self, chunk: list[Prepared], heartbeat) -> None:
        try:
            answers = await self._call(chunk)
        except ProviderUnavailable as exc:
            # `PartlySent` carries what the provider did answer (accepted or refused): record
            # those, so they are never sent again; hand the rest back for the retry.
            answered = self._answers(getattr(exc, "results", None) or [])
            if answered:
                await self._record([p for p in chunk if p.item.message_id in answered], answered)
            await self._hand_back([p for p in chunk if p.item.message_id not in answered], str(exc))
            raise
        except OutcomeUnknown as exc:
            # Sent without an answer: the unanswered stay `sending` (never resent) and this call
            # ends in OutcomePending, like a retry that finds an interrupted attempt.
            answered = self._answers(exc.results)
            if answered:
                await self._record([p for p in chunk if p.item.message_id in answered], answered)
            self.pending += sum(1 for p in chunk if p.item.message_id not in answered)
            log.warning("provider outcome unknown", reason=str(exc), messages=len(chunk))
            return
        self.recording.append(asyncio.create_task(self._record_chunk(chunk, answers, heartbeat)))

    async def _record_chunk(self, chunk: list[Prepared], answers, heartbeat) -> None:
        await self._record(chunk, answers)
        self.delivered += len(chunk)
        if heartbeat is not None:
            heartbeat(self.delivered)

    async def _call(self, chunk: list[Prepared]) -> dict[uuid.UUID, list[SendResult]]:
        provider = self._provider()
        outgoing = [o for p in chunk for o in p.outgoing]
        if self.spec.channel == Channel.email:
            results = await provider.send_emails(outgoing)
        elif self.spec.channel == Channel.push:
            results = await provider.send_push(outgoing) if outgoing else []
        else:
            results = await provider.send_sms(outgoing)
        return self._answers(results)

    @staticmethod
    def _answers(results: list[SendResult]) -> dict[uuid.UUID, list[SendResult]]:
        answers: dict[uuid.UUID, list[SendResult]] = {}
        for result in results:
            answers.setdefault(result.message_id, []).append(result)
        return answers

    async def _hand_back(self, prepared: list[Prepared], error: str) -> None:
        error = f"provider_unavailable: {error}"
        outcomes = [
            ledger.Outcome(p.item.message_id, MessageStatus.queued, error=error) for p in prepared
        ]
        async with session_factory(self.engine)() as session:
            await ledger.mark_outcomes(session, self.spec.workspace_id, outcomes, self._now())
            await session.commit()

    async def _record(self, chunk: list[Prepared], answers) -> None:
        """The provider's answers: `sent` (with the provider's ids) or `failed`, and a
        "Received <Channel>" event for each message sent, in one statement."""
        now = self._now()
        outcomes = []
        record, results_of = self.results.__setitem__, answers.get
        sent_outcome, sent_status, failed_status = SendOutcome.sent, "sent", MessageStatus.failed
        for p in chunk:
            mid = p.item.message_id
            results = results_of(mid, ())
            ids = [r.provider_message_id for r in results if r.status == SendStatus.sent]
            if ids:
                provider_id = ",".join(filter(None, ids)) or None
                outcomes.append(ledger.Outcome(p.ref, MessageStatus.sent, provider_id))
                record(p.item.key, _Result(sent_outcome, mid, sent_status, None, None, provider_id))
            else:
                error = "; ".join(r.error or "refused" for r in results) or (
                    "no_push_subscription" if self.spec.channel == Channel.push else "no answer"
                )
                outcomes.append(ledger.Outcome(mid, failed_status, error=error))
                self._result(p.item.key, mid, SendOutcome.failed, error=error)
        async with session_factory(self.engine)() as session:
            await ledger.mark_outcomes(
                session,
                self.spec.workspace_id,
                outcomes,
                now,
                received_metric=RECEIVED[self.spec.channel],
            )
            await session.commit()


def _spec(input: SendMessageInput | SendMessagesInput) -> _Spec:
    return _Spec(
        workspace_id=input.workspace_id,
        channel=Channel(input.channel),
        template_id=input.template_id,
        transactional=input.transactional,
        smart_sending=input.smart_sending,
        utm=dict(input.utm),
        from_email=input.sender.from_email,
        from_name=input.sender.from_name,
        reply_to=input.sender.reply_to,
        source=ledger_new.Source(
            channel=Channel(input.channel),
            source_type=SourceType(input.source_type),
            transactional=input.transactional,
            template_id=input.template_id,
            flow_id=input.flow_id,
            flow_version=input.flow_version,
            step_id=input.step_id,
            journey_id=getattr(input, "journey_id", None),
            campaign_id=input.campaign_id,
            campaign_message_id=input.campaign_message_id,
        ),
        now=getattr(input, "now", None),
    )


async def send_one(
    engine: AsyncEngine, settings: Any, input: SendMessageInput, *, providers: Any = None
) -> SendMessageResult:
    """Send one message (safe to call again with the same key: see the module docstring)."""
    recipient = _Recipient(
        input.idempotency_key, input.profile_id, str(input.profile_id), input.event
    )
    results = await _Sender(engine, settings, _spec(input), providers).run([recipient], None)
    result = results.get(input.idempotency_key)
    if result is None:  # the profile is gone (erased): nothing to send, nothing to record
        return SendMessageResult(outcome=SendOutcome.skipped, skip_reason="no_profile")
    return result.public()


async def send_many(
    engine: AsyncEngine,
    settings: Any,
    input: SendMessagesInput,
    *,
    heartbeat: Callable[..., None] | None = None,
    providers: Any = None,
) -> SendMessagesResult:
    """One template to many profiles; one key per profile (`{prefix}:{profile_id}`)."""
    summary, _ = await send_many_outcomes(
        engine, settings, input, heartbeat=heartbeat, providers=providers
    )
    return summary


async def send_many_outcomes(
    engine: AsyncEngine,
    settings: Any,
    input: SendMessagesInput,
    *,
    heartbeat: Callable[..., None] | None = None,
    providers: Any = None,
) -> tuple[SendMessagesResult, dict[uuid.UUID, RecipientResult]]:
    """`send_many`, and each profile's own outcome (a profile erased meanwhile has none):
    what a campaign records per recipient, without reading the ledger back."""
    prefix = input.idempotency_prefix
    recipients = [
        _Recipient(f"{prefix}:{ref}", profile_id, ref)
        for profile_id in dict.fromkeys(input.profile_ids)
        for ref in (str(profile_id),)
    ]
    results = await _Sender(engine, settings, _spec(input), providers).run(recipients, heartbeat)
    summary = SendMessagesResult(missing=len(recipients) - len(results))
    skipped: Counter[str] = Counter()
    by_key = {r.key: r.profile_id for r in recipients}
    for key, result in results.items():
        summary.replayed += result.replayed
        if result.outcome == SendOutcome.sent:
            summary.sent += 1
        elif result.outcome == SendOutcome.failed:
            summary.failed += 1
        elif result.outcome == SendOutcome.skipped:
            skipped[result.skip_reason or "unknown"] += 1
        else:
            summary.held.append(HeldRecipient(profile_id=by_key[key], hold_until=result.hold_until))
    summary.skipped = dict(skipped)
    return summary, {by_key[key]: result for key, result in results.items()}
