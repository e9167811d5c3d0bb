"""The send path: ledger row by key → gate → render → claim (`sending`, committed) → provider →
`sent`/`failed` + a "Received <Channel>" profile event. One code path for one message
(journeys) and for a batch (campaigns), set-based: a batch of 1,000 recipients costs a handful
of SQL statements and one provider request per 1,000 emails.

Emails of the same copy share a request although each carries its own signed links: the
tracking URLs (clicks, open pixel, unsubscribe/preferences) go into the content as tags with
per-recipient `substitutions` (`channels.links.prepare_email_tagged`); the ledger keeps the
content as the recipient gets it. Recipients are gated in one query, then rendered and claimed
chunk by chunk: chunk N+1 is rendered and claimed while chunk N is with the provider, and
chunk N's answers are recorded while chunk N+1 is.

At most once, and the one unknown window
----------------------------------------
The row is claimed (`queued → sending`, guarded by the status, committed) *before* the provider
is called, and only rows this attempt claimed are handed to the provider. So a retried or
duplicated attempt never sends a key twice:

- the provider answered and we recorded it: the row is `sent`/`failed` — returned as it is;
- the provider said "unavailable" (`ProviderUnavailable`: 429/5xx/network before acceptance):
  the row goes back to `queued` and the error is raised, so Temporal retries and sends it then;
- **the worker died (or the activity timed out) after the claim and before the answer was
  recorded**: the row stays `sending` and nobody knows whether the provider accepted it. This is
  the only unknown-outcome window. It is reconciled by the provider's own reports, which carry
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
import hashlib
import json
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Uuid, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from activities.channels import (
    HeldRecipient,
    SendMessageInput,
    SendMessageResult,
    SendMessagesInput,
    SendMessagesResult,
    SendOutcome,
)
from channels import gate, ledger
from channels.base import (
    OutgoingEmail,
    OutgoingPush,
    OutgoingSms,
    ProviderUnavailable,
    SendResult,
    SendStatus,
)
from channels.metrics import RECEIVED
from channels.render import (
    PARTS,
    RenderContext,
    TemplateError,
    profile_context,
    render,
    workspace_context,
)
from channels.settings import ChannelSettings, load_channel_settings
from core.db import session_factory
from ingest.events import NewEvent, store_events
from models import Channel, MessageStatus, Profile, PushSubscription, Workspace
from models.base import utcnow
from models.messages import SourceType
from models.templates import Template

log = structlog.get_logger(__name__)

UNKNOWN_OUTCOME_AFTER = timedelta(minutes=10)
EMAIL_BATCH = 1000  # SendGrid: at most 1,000 personalizations per request
SMS_BATCH = 500  # one provider call and one commit of outcomes per this many SMS
YIELD_EVERY = 32  # recipients rendered between two yields to the event loop
SETTLED = frozenset(MessageStatus) - {MessageStatus.queued, MessageStatus.sending}


_PROFILE_COLUMNS = [
    getattr(Profile, name)
    for name in (
        "id", "external_id", "email", "phone", "first_name", "last_name", "timezone", "locale",
        "country", "region", "city", "postal_code", "properties",
    )
]  # fmt: skip


def _names_used(template: Template | None) -> frozenset[str]:
    """The per-recipient link variables a template's sources mention (by name: templates
    cannot build variable names). Those it does not mention are not signed for it."""
    if template is None:
        return frozenset()
    sources = [getattr(template, part) or "" for part in PARTS.get(Channel(template.channel), ())]
    names = ("unsubscribe_url", "preferences_url")
    return frozenset(n for n in names if any(n in source for source in sources))


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


@dataclass
class _Recipient:
    new: ledger.NewMessage
    event: dict[str, Any] | None = None


@dataclass
class _Prepared:
    key: str
    message_id: uuid.UUID
    profile: Any  # a row of _PROFILE_COLUMNS
    outgoing: list[OutgoingEmail | OutgoingSms | OutgoingPush]
    claim: ledger.Outgoing
    properties: dict[str, Any]


def _pack(parts: dict[str, Any]) -> tuple[bytes, str]:
    raw = json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode()
    # An 8 KB window and a small hash table: `zlib.compress`'s defaults allocate ~256 KB per
    # call (mmap'd), which costs more than compressing a message. Plain zlib all the same.
    packer = zlib.compressobj(1, zlib.DEFLATED, 13, 6)
    return packer.compress(raw) + packer.flush(), hashlib.sha256(raw).hexdigest()


def unpack_content(content: bytes) -> dict[str, Any]:
    """The rendered parts a message was sent with (`messages.content`)."""
    return json.loads(zlib.decompress(content))


def _provider_name(provider: Any) -> str:
    return str(getattr(provider, "name", None) or type(provider).__name__)[:32]


class _Sender:
    """One call of the send path over a list of recipients."""

    def __init__(self, engine: AsyncEngine, settings: Any, spec: _Spec, providers: Any) -> None:
        self.engine = engine
        self.settings = settings
        self.spec = spec
        self.providers = providers
        self.results: dict[str, SendMessageResult] = {}
        self.pending = 0

    # -- loading -----------------------------------------------------------------------

    async def _load(self, session: AsyncSession, profile_ids: Sequence[uuid.UUID]):
        ws = self.spec.workspace_id
        self.channel_settings: ChannelSettings = await load_channel_settings(session, ws)
        self.workspace = (
            await session.execute(select(Workspace).where(Workspace.id == ws))
        ).scalar_one()
        self.template = (
            await session.execute(
                select(Template).where(
                    Template.id == self.spec.template_id, Template.workspace_id == ws
                )
            )
        ).scalar_one_or_none()
        self._uses = _names_used(self.template)
        # Core rows (attributes, no ORM identity map): what the gate and templates read.
        rows = await session.execute(
            select(*_PROFILE_COLUMNS).where(
                Profile.workspace_id == ws,
                Profile.id == func.any(cast(list(profile_ids), ARRAY(Uuid))),
            )
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
        self.results[key] = SendMessageResult(
            outcome=outcome,
            message_id=row.id,
            status=status.value,
            skip_reason=row.skip_reason,
            provider_message_id=row.provider_message_id,
            error=row.error,
            replayed=replayed,
        )

    def _result(self, key: str, message_id: uuid.UUID, outcome: SendOutcome, **kw) -> None:
        status = {
            SendOutcome.sent: "sent",
            SendOutcome.failed: "failed",
            SendOutcome.skipped: "skipped",
            SendOutcome.held: "queued",
        }[outcome]
        # Built from values of the right types: no validation per recipient.
        self.results[key] = SendMessageResult.model_construct(
            outcome=outcome, message_id=message_id, status=status, **kw
        )

    # -- the path --------------------------------------------------------------------------

    async def run(
        self, recipients: Sequence[_Recipient], heartbeat: Callable[..., None] | None
    ) -> dict[str, SendMessageResult]:
        ws = self.spec.workspace_id
        now = utcnow()
        async with session_factory(self.engine)() as session:
            await self._load(session, [r.new.profile_id for r in recipients])
            rows = await ledger.open_many(session, ws, [r.new for r in recipients], now)
            by_key = {r.new.idempotency_key: r for r in recipients}
            open_rows = []
            unknown: list[ledger.Outcome] = []
            for key, row in rows.items():
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
                    open_rows.append(row)
            await ledger.mark_outcomes(session, ws, unknown, now)
            sendable = await self._gate(session, open_rows, now)
            await session.commit()
        await self._pipeline(sendable, by_key, heartbeat)
        if self.pending:
            raise OutcomePending(
                f"{self.pending} message(s) are in `sending` after an interrupted attempt; "
                "waiting for provider events to settle them"
            )
        return self.results

    async def _gate(self, session, open_rows, now) -> list:
        """Gate the batch (one query): skips and holds recorded; the rows to send returned."""
        ws, spec = self.spec.workspace_id, self.spec
        if self.template is None or self.template.channel != spec.channel:
            error = f"template {spec.template_id} not found for channel {spec.channel.value}"
            return await self._fail_queued(session, open_rows, error, now)
        provider_config = getattr(self.providers, "config", {}).get(Channel.email, {})
        spec.from_email = spec.from_email or self.channel_settings.from_email
        spec.from_email = spec.from_email or provider_config.get("from_email")
        spec.from_name = spec.from_name or self.channel_settings.from_name
        spec.from_name = spec.from_name or provider_config.get("from_name")
        spec.reply_to = spec.reply_to or self.channel_settings.reply_to
        spec.reply_to = spec.reply_to or provider_config.get("reply_to")
        if spec.channel == Channel.email and not spec.from_email:
            error = "no sender: set from_email in the channel settings, credentials or message"
            return await self._fail_queued(session, open_rows, error, now)
        profiles = [self.profiles[r.profile_id] for r in open_rows]
        decisions = await gate.check_many(
            session,
            workspace_id=ws,
            profiles=profiles,
            channel=spec.channel,
            transactional=spec.transactional,
            smart_sending=spec.smart_sending,
            now=now,
            settings=self.channel_settings,
        )
        skips, holds, sendable = [], [], []
        for row in open_rows:
            decision = decisions[row.profile_id]
            key = row.idempotency_key
            if decision.action == gate.GateAction.skip:
                skips.append((row.id, decision.reason))
                self._result(key, row.id, SendOutcome.skipped, skip_reason=decision.reason)
            elif decision.action == gate.GateAction.hold:
                holds.append((row.id, decision.hold_until))
                self._result(key, row.id, SendOutcome.held, hold_until=decision.hold_until)
            else:
                sendable.append(row)
        await ledger.mark_skipped(session, ws, skips, now)
        await ledger.mark_held(session, ws, holds, now)
        return sendable

    async def _render_and_claim(self, rows, by_key) -> list[_Prepared]:
        """Render a chunk and claim it (`queued → sending`, committed): what may go out."""
        ws, now = self.spec.workspace_id, utcnow()
        failures, prepared = [], []
        workspace = workspace_context(self.workspace)
        for i, row in enumerate(rows):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                # Let the provider call of the previous chunk (same event loop) move on.
                await asyncio.sleep(0)
            key = row.idempotency_key
            try:
                profile = self.profiles[row.profile_id]
                prepared.append(self._prepare(row, profile, by_key[key].event, workspace))
            except TemplateError as exc:
                error = f"template_error: {exc}"
                failures.append(ledger.Outcome(row.id, MessageStatus.failed, error=error))
                self._result(key, row.id, SendOutcome.failed, error=error)
        async with session_factory(self.engine)() as session:
            await ledger.mark_outcomes(session, ws, failures, now, expected=MessageStatus.queued)
            claims = [p.claim for p in prepared]
            claimed = await ledger.mark_sending(session, ws, claims, now)
            await session.commit()
        return [p for p in prepared if p.message_id in claimed]

    async def _fail_queued(self, session, rows, error: str, now) -> list[_Prepared]:
        outcomes = [ledger.Outcome(r.id, MessageStatus.failed, error=error) for r in rows]
        await ledger.mark_outcomes(
            session, self.spec.workspace_id, outcomes, now, expected=MessageStatus.queued
        )
        for row in rows:
            self._result(row.idempotency_key, row.id, SendOutcome.failed, error=error)
        return []

    def _prepare(self, row, profile, event, workspace) -> _Prepared:
        from channels import links

        spec, cs = self.spec, self.channel_settings
        channel, mid = spec.channel, row.id
        ids = {"settings": self.settings, "workspace_id": spec.workspace_id}
        ids |= {"profile_id": profile.id, "message_id": mid}
        # Signed per recipient: only when the message needs it (the email's footer and
        # headers) or the template names it.
        uses = self._uses
        unsubscribe = None
        if channel == Channel.email or "unsubscribe_url" in uses:
            unsubscribe = links.unsubscribe_url(**ids, channel=channel)
        preferences = None
        if "preferences_url" in uses:
            preferences = links.preferences_url(**ids, channel=channel)
        context = RenderContext(
            profile=profile_context(profile),
            event=event,
            workspace=workspace,
            unsubscribe_url=unsubscribe if "unsubscribe_url" in uses else None,
            preferences_url=preferences,
            message_id=str(mid),
        )
        rendered = render(self.template, context)
        utm = {**cs.utm, **spec.utm}
        props: dict[str, Any] = {"message_id": str(mid), "channel": channel.value}
        sources = {
            "flow_id": row.flow_id,
            "step_id": row.step_id,
            "campaign_id": row.campaign_id,
            "campaign_message_id": row.campaign_message_id,
            "template_id": row.template_id,
        }
        props |= {k: str(v) for k, v in sources.items() if v is not None}
        outgoing: list[Any]
        if channel == Channel.email:
            tagged = links.prepare_email_tagged(
                rendered.html or "",
                rendered.text or "",
                **ids,
                utm=utm,
                preheader=rendered.preheader,
                unsubscribe_url=None if spec.transactional else unsubscribe,
                personal_urls=tuple(u for u in (unsubscribe, preferences) if u),
            )
            headers = {} if spec.transactional else links.unsubscribe_headers(unsubscribe)
            email = OutgoingEmail(
                message_id=mid,
                to=profile.email,
                from_email=spec.from_email,
                from_name=spec.from_name,
                reply_to=spec.reply_to,
                subject=rendered.subject or "",
                html=tagged.html,
                text=tagged.text,
                headers=headers,
                categories=(row.source_type,),
                custom_args={
                    "waymark_message_id": str(mid),
                    "waymark_workspace_id": str(spec.workspace_id),
                    "waymark_profile_id": str(profile.id),
                },
                substitutions=tagged.substitutions,
            )
            outgoing, to = [email], profile.email
            # The ledger keeps the content as the recipient gets it (substitutions applied).
            parts = {"subject": email.subject, "preheader": rendered.preheader}
            parts |= {"html": tagged.real_html, "text": tagged.real_text}
            props["subject"] = email.subject
        elif channel in (Channel.sms, Channel.whatsapp):
            body = links.track_text_links(rendered.body or "", **ids, channel=channel, utm=utm)
            base = self.settings.public_url.rstrip("/")
            sms = OutgoingSms(
                message_id=mid,
                to=profile.phone,
                body=body,
                status_callback=f"{base}/webhooks/twilio/{spec.workspace_id}/status?wm={mid}",
                whatsapp=channel == Channel.whatsapp,
            )
            outgoing, to, parts = [sms], profile.phone, {"body": body}
        else:
            url = rendered.push_url
            if url:
                url = links.push_click_url(url, **ids, utm=utm)
            payload = {
                "title": rendered.push_title,
                "body": rendered.body,
                "url": url,
                "icon": rendered.push_icon,
                "message_id": str(mid),
            }
            subs = self.subscriptions.get(profile.id, [])
            outgoing = [
                OutgoingPush(mid, s.id, s.endpoint, s.p256dh, s.auth, payload) for s in subs
            ]
            to, parts = ",".join(str(s.id) for s in subs), payload
        content, digest = _pack(parts)
        provider = _provider_name(self._provider())
        claim = ledger.Outgoing(mid, to, parts.get("subject"), content, digest, provider)
        return _Prepared(row.idempotency_key, mid, profile, outgoing, claim, props)

    def _provider(self):
        return getattr(self.providers, self.spec.channel.value)

    async def _pipeline(self, sendable: list, by_key, heartbeat) -> None:
        """Render and claim chunk N+1 while chunk N is with the provider (one call in flight).

        A chunk is claimed (committed) before its provider call, as always. When a call stays
        unavailable, the chunk claimed meanwhile is handed back too, and later chunks were
        never claimed: all of them are `queued` for the retry."""
        size = EMAIL_BATCH if self.spec.channel == Channel.email else SMS_BATCH
        self.delivered = 0
        self.recording: list[asyncio.Task] = []
        in_flight: asyncio.Task | None = None
        try:
            for start in range(0, len(sendable), size):
                claimed = await self._render_and_claim(sendable[start : start + size], by_key)
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

    async def _deliver(self, chunk: list[_Prepared], heartbeat) -> None:
        try:
            answers = await self._call(chunk)
        except ProviderUnavailable as exc:
            # `PartlySent` carries what the provider did answer (accepted or refused): record
            # those, so they are never sent again; hand the rest back for the retry.
            answered = self._answers(getattr(exc, "results", None) or [])
            if answered:
                await self._record([p for p in chunk if p.message_id in answered], answered)
            await self._hand_back([p for p in chunk if p.message_id not in answered], str(exc))
            raise
        self.recording.append(asyncio.create_task(self._record_chunk(chunk, answers, heartbeat)))

    async def _record_chunk(self, chunk: list[_Prepared], answers, heartbeat) -> None:
        await self._record(chunk, answers)
        self.delivered += len(chunk)
        if heartbeat is not None:
            heartbeat(self.delivered)

    async def _call(self, chunk: list[_Prepared]) -> dict[uuid.UUID, list[SendResult]]:
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

    async def _hand_back(self, prepared: list[_Prepared], error: str) -> None:
        error = f"provider_unavailable: {error}"
        outcomes = [
            ledger.Outcome(p.message_id, MessageStatus.queued, error=error) for p in prepared
        ]
        async with session_factory(self.engine)() as session:
            await ledger.mark_outcomes(session, self.spec.workspace_id, outcomes, utcnow())
            await session.commit()

    async def _record(self, chunk: list[_Prepared], answers) -> None:
        now = utcnow()
        outcomes, events = [], []
        metric = RECEIVED[self.spec.channel]
        for p in chunk:
            results = answers.get(p.message_id, [])
            sent = [r for r in results if r.status == SendStatus.sent]
            key = p.key
            if sent:
                ids = [r.provider_message_id for r in sent if r.provider_message_id]
                provider_id = ",".join(ids) or None
                outcomes.append(ledger.Outcome(p.message_id, MessageStatus.sent, provider_id))
                events.append(
                    NewEvent(
                        profile_id=p.profile.id,
                        metric=metric,
                        message_id=f"waymark:{p.message_id}:received",
                        occurred_at=now,
                        properties=p.properties,
                    )
                )
                self._result(key, p.message_id, SendOutcome.sent, provider_message_id=provider_id)
            else:
                error = "; ".join(r.error or "refused" for r in results) or (
                    "no_push_subscription" if self.spec.channel == Channel.push else "no answer"
                )
                outcomes.append(ledger.Outcome(p.message_id, MessageStatus.failed, error=error))
                self._result(key, p.message_id, SendOutcome.failed, error=error)
        async with session_factory(self.engine)() as session:
            await ledger.mark_outcomes(session, self.spec.workspace_id, outcomes, now)
            await store_events(session, self.spec.workspace_id, events)
            await session.commit()


async def _run(
    engine: AsyncEngine,
    settings: Any,
    spec: _Spec,
    recipients: list[_Recipient],
    heartbeat: Callable[..., None] | None,
    providers: Any,
) -> dict[str, SendMessageResult]:
    if providers is None:
        from channels.credentials import providers_for

        providers = await providers_for(engine, settings, spec.workspace_id)
    return await _Sender(engine, settings, spec, providers).run(recipients, heartbeat)


def _sender_fields(input: SendMessageInput | SendMessagesInput) -> dict[str, Any]:
    return {
        "workspace_id": input.workspace_id,
        "channel": Channel(input.channel),
        "template_id": input.template_id,
        "transactional": input.transactional,
        "smart_sending": input.smart_sending,
        "utm": dict(input.utm),
        "from_email": input.sender.from_email,
        "from_name": input.sender.from_name,
        "reply_to": input.sender.reply_to,
    }


async def send_one(
    engine: AsyncEngine, settings: Any, input: SendMessageInput, *, providers: Any = None
) -> SendMessageResult:
    """Send one message (safe to call again with the same key: see the module docstring)."""
    new = _new_message(input, input.idempotency_key, input.profile_id)
    spec = _Spec(**_sender_fields(input))
    results = await _run(engine, settings, spec, [_Recipient(new, input.event)], None, providers)
    result = results.get(input.idempotency_key)
    if result is None:  # the profile is gone (erased): nothing to send, nothing to record
        return SendMessageResult(outcome=SendOutcome.skipped, skip_reason="no_profile")
    return result


def _new_message(input: Any, key: str, profile_id: uuid.UUID) -> ledger.NewMessage:
    """The ledger row a send input asks for (single and batch inputs share these fields)."""
    return ledger.NewMessage(
        idempotency_key=key,
        profile_id=profile_id,
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
    )


async def send_many(
    engine: AsyncEngine,
    settings: Any,
    input: SendMessagesInput,
    *,
    heartbeat: Callable[..., None] | None = None,
    providers: Any = None,
) -> SendMessagesResult:
    """One template to many profiles; one key per profile (`{prefix}:{profile_id}`)."""
    recipients = [
        _Recipient(_new_message(input, f"{input.idempotency_prefix}:{profile_id}", profile_id))
        for profile_id in dict.fromkeys(input.profile_ids)
    ]
    spec = _Spec(**_sender_fields(input))
    results = await _run(engine, settings, spec, recipients, heartbeat, providers)
    summary = SendMessagesResult(missing=len(recipients) - len(results))
    skipped: Counter[str] = Counter()
    by_key = {r.new.idempotency_key: r.new.profile_id for r in recipients}
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
    return summary
