"""One message as it leaves: rendered, its links signed, its content packed for the ledger.

A `Composer` serves one send (one template, one workspace, up to thousands of recipients) and
does once what is the same for all of them: the workspace's render data, the signing key, the
sender, UTM, the status-callback base; and the rendering itself when the template reads nothing
of the recipient (`channels.render.recipient_independent`: "the same copy"). Per recipient it
signs the links (one HMAC each; an email of the same copy: its recipient links and one
message token, `channels.links`) and, for email, puts what differs per recipient — the signed
URLs and the values of the profile the template printed — into SendGrid substitutions
(`channels.email_tags`), so recipients of the same copy, or of the same copy but for their
names, share one request.

An email of the same copy is also tagged once per send (`email_tags.SharedEmail`), and the
ledger keeps that content once (`message_contents`, see `models.messages`) instead of each
recipient's: a recipient's message then costs its signatures and nothing else.
`message_content` gives any message's content back as its recipient got it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from dataclasses import dataclass, fields
from typing import Any

from channels import email_tags, links
from channels.base import OutgoingEmail, OutgoingPush, OutgoingSms
from channels.email_tags import SharedEmail, substitute
from channels.ledger import Outgoing
from channels.links import LinkKind
from channels.render import (
    LINK_NAMES,
    PARTS,
    RenderContext,
    Rendered,
    TemplateError,
    TemplateParts,
    needs_text,
    profile_context,
    profile_fields_used,
    render,
    shared_links,
    workspace_context,
)
from models import Channel, MessageContent


@dataclass(slots=True)
class Item:
    """A recipient about to be prepared: its key, message id and profile. `existing`: the key
    has a `queued` row already (claimed by UPDATE), else its row is written at the claim."""

    key: str
    message_id: uuid.UUID
    profile: Any  # a row of `channels.send.PROFILE_COLUMNS`
    event: dict[str, Any] | None
    existing: bool
    profile_ref: str = ""  # the profile id as text, when the caller has it (else made here)


@dataclass(slots=True)
class Prepared:
    item: Item
    outgoing: list[OutgoingEmail | OutgoingSms | OutgoingPush]
    claim: Outgoing
    ref: str  # the message id as text (custom args, callbacks)


_LINK_KINDS = {"unsubscribe_url": LinkKind.unsubscribe, "preferences_url": LinkKind.preferences}
STORE_BELOW = 512  # bytes of JSON kept as a stored zlib block: too small to gain by deflate


def pack(parts: dict[str, Any]) -> tuple[bytes, str]:
    """`messages.content` (zlib of the parts' JSON) and its SHA-256."""
    raw = json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) < STORE_BELOW:
        # A zlib stream of one stored block (RFC 1950/1951): what `zlib.compress(raw, 0)`
        # writes, without allocating a compressor for an SMS-sized body.
        size = len(raw)
        block = bytes((1, size & 0xFF, size >> 8, ~size & 0xFF, (~size >> 8) & 0xFF))
        return b"\x78\x01" + block + raw + zlib.adler32(raw).to_bytes(4, "big"), digest
    # An 8 KB window and a small hash table: `zlib.compress`'s defaults allocate ~256 KB per
    # call (mmap'd), which costs more than compressing a message. Plain zlib all the same.
    packer = zlib.compressobj(1, zlib.DEFLATED, 13, 6)
    return packer.compress(raw) + packer.flush(), digest


def unpack_content(content: bytes) -> dict[str, Any]:
    """The rendered parts a message was sent with (`messages.content`)."""
    return json.loads(zlib.decompress(content))


def _shared_parts(shared: SharedEmail, subject: str, preheader: str | None) -> dict[str, Any]:
    """What `message_contents` keeps of a shared email: its parts, tagged, and the tags."""
    return {
        "subject": subject,
        "preheader": preheader,
        "html": shared.html,
        "text": shared.text,
        "links": [[tag, int(kind)] for tag, kind in shared.links],
        "message_tag": shared.message_tag,
        "copy": shared.copy.hex(),
        "grants": shared.grants,
    }


async def message_content(session: Any, settings: Any, message: Any) -> dict[str, Any] | None:
    """The rendered parts `message` (a `models.Message`) was sent with, as its recipient got
    them; None when it has none (skipped, or never rendered). Shared content gets the
    message's own signed URLs back (signed with the workspace's key: the same URLs as sent
    while `secret_key` is unchanged)."""
    if message.content_id is None:
        return None if message.content is None else unpack_content(message.content)
    stored = await session.get(MessageContent, message.content_id)
    parts = unpack_content(stored.content)
    shared = SharedEmail(
        parts.pop("html"),
        parts.pop("text"),
        tuple((tag, LinkKind(kind)) for tag, kind in parts.pop("links")),
        tuple((tag, tuple(slot)) for tag, *slot in parts.pop("slots", ())),  # stored before
        parts.pop("message_tag", None),
        bytes.fromhex(parts.pop("copy", "")),
        parts.pop("grants", 0),
    )
    signer = links.signer(settings, message.workspace_id)
    subs = shared.values(signer, message.profile_id, message.id)
    return parts | {"html": substitute(shared.html, subs), "text": substitute(shared.text, subs)}


def _names_used(template: Any) -> frozenset[str]:
    """The per-recipient link variables a template's sources mention (by name: templates
    cannot build variable names). Those it does not mention are not signed for it."""
    sources = [getattr(template, part) or "" for part in PARTS.get(Channel(template.channel), ())]
    return frozenset(n for n in LINK_NAMES if any(n in source for source in sources))


class Composer:
    """Prepares the messages of one send (see the module doc)."""

    def __init__(
        self,
        *,
        settings: Any,
        workspace: Any,
        template: Any,
        channel: Channel,
        transactional: bool,
        utm: dict[str, str],
        sender: dict[str, str | None],
        source_type: str,
        provider: str,
        subscriptions: dict[uuid.UUID, list[Any]],
    ) -> None:
        self.settings = settings
        self.workspace_id = workspace.id
        # A plain copy of the template (rendering reads its attributes for every recipient).
        self.template = TemplateParts(
            **{f.name: getattr(template, f.name) for f in fields(TemplateParts)}
        )
        self.channel = channel
        self.transactional = transactional
        self.utm = utm
        self.sender = sender
        self.provider = provider
        self.subscriptions = subscriptions
        self.signer = links.signer(settings, workspace.id)
        self.workspace = workspace_context(workspace)
        self.workspace_ref = str(workspace.id)
        self.uses = _names_used(template)
        # The same copy for everyone: a template that reads nothing of the recipient, or (email)
        # nothing but its own links, which stand in the shared content as tags.
        printed = shared_links(template)
        self.shared = printed == frozenset() or (channel == Channel.email and printed is not None)
        self.printed_links = printed or frozenset()
        self.fields = profile_fields_used(template)
        self.categories = (str(source_type),)
        self.callback = (
            f"{settings.public_url.rstrip('/')}/webhooks/twilio/{workspace.id}/status?wm="
        )
        self._rendered: Rendered | TemplateError | None = None
        # The same-copy email tagged once, with its `message_contents` id and hash (False:
        # it cannot hold tags); `contents`: what the claims must store (id → content, hash).
        self._shared_email: tuple[SharedEmail, str, str] | bool | None = None
        self.contents: dict[uuid.UUID, tuple[bytes, str]] = {}

    # -- rendering ---------------------------------------------------------------------------

    def _stand_ins(self, variant: str) -> dict[LinkKind, str]:
        """URLs the recipient links a shared template prints are rendered with: Waymark's own
        (never click-tracked), each becoming its link's tag (`email_tags.shared_email`)."""
        base = self.settings.public_url.rstrip("/")
        return {
            kind: f"{base}{links.PATHS[kind].format(f'stand-in-{variant}')}"
            for name, kind in _LINK_KINDS.items()
            if name in self.printed_links
        }

    def _render_once(self, derive: bool) -> Rendered | TemplateError | None:
        """The shared rendering; None when the template does not print its links as they are
        (a filter changed them): then it is rendered per recipient."""
        rendered: list[Rendered] = []
        for variant in ("a", "bb") if self.printed_links else ("a",):
            stand_ins = self._stand_ins(variant)
            context = RenderContext(
                profile={},
                workspace=self.workspace,
                unsubscribe_url=stand_ins.get(LinkKind.unsubscribe),
                preferences_url=stand_ins.get(LinkKind.preferences),
            )
            try:
                rendered.append(render(self.template, context, derive_text=derive))
            except TemplateError as exc:
                return exc
        if len(rendered) == 2:
            ours, other = self._stand_ins("a"), self._stand_ins("bb")
            for part in fields(Rendered):
                mine, theirs = getattr(rendered[0], part.name), getattr(rendered[1], part.name)
                moved = mine
                for kind, url in ours.items():
                    moved = moved and moved.replace(url, other[kind])
                if moved != theirs or (part.name == "subject" and mine != theirs):
                    return None
        return rendered[0]

    def _render(self, item: Item, unsubscribe: str | None, preferences: str | None):
        """The rendered parts and the profile as the template saw it (None when shared)."""
        derive = self.channel != Channel.email  # emails derive their text part from tags
        if self.shared and self._rendered is None:
            self._rendered = self._render_once(derive)
            self.shared = self._rendered is not None
            if self.shared and self.printed_links and not isinstance(self._rendered, TemplateError):
                # Its links are stand-ins: the email must go out tagged, or be rendered again
                # for each recipient with the real ones.
                self.shared = self._shared(self._rendered) is not None  # type: ignore[arg-type]
        if self.shared:
            if isinstance(self._rendered, TemplateError):
                raise self._rendered
            return self._rendered, None
        profile = profile_context(item.profile)
        context = RenderContext(
            profile=profile,
            event=item.event,
            workspace=self.workspace,
            unsubscribe_url=unsubscribe if "unsubscribe_url" in self.uses else None,
            preferences_url=preferences,
            message_id=str(item.message_id),
        )
        return render(self.template, context, derive_text=derive), profile

    def _personal_values(self, profile: dict[str, Any] | None) -> list[str]:
        """The recipient's own values the template may have printed."""
        if profile is None:
            return []
        names = profile if self.fields is None else self.fields
        return [v for name in names if isinstance(v := profile.get(name), str)]

    # -- one message -------------------------------------------------------------------------

    def prepare(self, item: Item) -> Prepared:
        """The message of one recipient; TemplateError when the template does not render."""
        channel, mid, pid = self.channel, item.message_id, item.profile.id
        if self.shared and self._shared_email:  # the same copy, tagged: one token to sign
            return self._email_shared(item, self._rendered)  # type: ignore[arg-type,return-value]
        unsubscribe = preferences = None
        if channel == Channel.email or "unsubscribe_url" in self.uses:
            unsubscribe = self.signer.url(LinkKind.unsubscribe, channel, pid, mid)
        if "preferences_url" in self.uses:
            preferences = self.signer.url(LinkKind.preferences, channel, pid, mid)
        rendered, profile = self._render(item, unsubscribe, preferences)
        if channel == Channel.email:
            return self._email(item, rendered, profile, unsubscribe, preferences)
        if channel in (Channel.sms, Channel.whatsapp):
            return self._text(item, rendered)
        return self._push(item, rendered)

    def _shared(self, rendered: Rendered) -> tuple[SharedEmail, str, str] | None:
        """The same-copy email, tagged once and packed for `message_contents`."""
        if self._shared_email is None:
            html = rendered.html or ""
            shared = email_tags.shared_email(
                html,
                rendered.text or "",
                signer=self.signer,
                public_url=self.settings.public_url,
                utm=self.utm,
                preheader=rendered.preheader,
                unsubscribe=not self.transactional,
                derive_text=needs_text(Channel.email, rendered.text, html),
                stand_ins=self._stand_ins("a"),
            )
            self._shared_email = False
            if shared is not None:
                parts = _shared_parts(shared, rendered.subject or "", rendered.preheader)
                content, digest = pack(parts)
                content_id = uuid.uuid5(self.workspace_id, digest)
                self.contents[content_id] = (content, digest)
                self._shared_email = (shared, str(content_id), digest)
        return self._shared_email or None  # type: ignore[return-value]

    def _email_shared(self, item: Item, rendered: Rendered) -> Prepared | None:
        """The same-copy email of one recipient: its message token, the content shared."""
        shared = self._shared(rendered)
        if shared is None:
            return None
        email_content, content_id, digest = shared
        mid, pid = item.message_id, item.profile.id
        subs = email_content.values(self.signer, pid.bytes, mid.bytes)
        # The message token is its unsubscribe link too (`links`), in the header as well.
        unsubscribe = self.signer.message_url(LinkKind.unsubscribe, subs[email_content.message_tag])
        html, text = email_content.html, email_content.text
        if email_tags.looks_tagged(subs):
            html, text, subs = substitute(html, subs), substitute(text, subs), {}
        subject = rendered.subject or ""
        ref = str(mid)
        email = self._outgoing_email(item, ref, subject, html, text, subs, unsubscribe)
        claim = Outgoing(mid, item.profile.email, subject, None, digest, self.provider, content_id)
        return Prepared(item, [email], claim, ref)

    def _outgoing_email(
        self, item: Item, ref: str, subject: str, html: str, text: str, subs, unsubscribe
    ) -> OutgoingEmail:
        return OutgoingEmail(
            message_id=item.message_id,
            to=item.profile.email,
            from_email=self.sender["from_email"],  # type: ignore[arg-type]
            from_name=self.sender["from_name"],
            reply_to=self.sender["reply_to"],
            subject=subject,
            html=html,
            text=text,
            headers={} if self.transactional else links.unsubscribe_headers(unsubscribe),
            categories=self.categories,
            custom_args={
                "waymark_message_id": ref,
                "waymark_workspace_id": self.workspace_ref,
                "waymark_profile_id": item.profile_ref or str(item.profile.id),
            },
            substitutions=subs,
        )

    def _email(self, item, rendered: Rendered, profile, unsubscribe, preferences) -> Prepared:
        if profile is None and (shared := self._email_shared(item, rendered)):
            return shared
        mid, to = item.message_id, item.profile.email
        ref = str(mid)
        html = rendered.html or ""
        tagged = email_tags.prepare_email_tagged(
            html,
            rendered.text or "",
            settings=self.settings,
            workspace_id=self.workspace_id,
            message_id=mid,
            profile_id=item.profile.id,
            utm=self.utm,
            preheader=rendered.preheader,
            unsubscribe_url=None if self.transactional else unsubscribe,
            personal_urls=tuple(u for u in (unsubscribe, preferences) if u),
            personal_values=self._personal_values(profile),
            derive_text=needs_text(Channel.email, rendered.text, html),
        )
        subject = rendered.subject or ""
        email = self._outgoing_email(
            item, ref, subject, tagged.html, tagged.text, tagged.substitutions, unsubscribe
        )
        # The ledger keeps the content as the recipient gets it (substitutions applied).
        parts = {"subject": subject, "preheader": rendered.preheader}
        parts |= {"html": tagged.real_html, "text": tagged.real_text}
        content, digest = pack(parts)
        claim = Outgoing(mid, to, subject, content, digest, self.provider)
        return Prepared(item, [email], claim, ref)

    def _text(self, item: Item, rendered: Rendered) -> Prepared:
        mid, channel = item.message_id, self.channel
        ref = str(mid)
        body = links.track_text_links(
            rendered.body or "",
            settings=self.settings,
            workspace_id=self.workspace_id,
            message_id=mid,
            profile_id=item.profile.id,
            channel=channel,
            utm=self.utm,
        )
        sms = OutgoingSms(
            message_id=mid,
            to=item.profile.phone,
            body=body,
            status_callback=f"{self.callback}{ref}",
            whatsapp=channel == Channel.whatsapp,
        )
        content, digest = pack({"body": body})
        claim = Outgoing(mid, item.profile.phone, None, content, digest, self.provider)
        return Prepared(item, [sms], claim, ref)

    def _push(self, item: Item, rendered: Rendered) -> Prepared:
        mid, pid = item.message_id, item.profile.id
        ref = str(mid)
        url = rendered.push_url
        if url:
            url = links.push_click_url(
                url,
                settings=self.settings,
                workspace_id=self.workspace_id,
                message_id=mid,
                profile_id=pid,
                utm=self.utm,
            )
        payload = {
            "title": rendered.push_title,
            "body": rendered.body,
            "url": url,
            "icon": rendered.push_icon,
            "message_id": ref,
        }
        subs = self.subscriptions.get(pid, [])
        outgoing: list[Any] = [
            OutgoingPush(mid, s.id, s.endpoint, s.p256dh, s.auth, payload) for s in subs
        ]
        content, digest = pack(payload)
        to = ",".join(str(s.id) for s in subs)
        claim = Outgoing(mid, to, None, content, digest, self.provider)
        return Prepared(item, outgoing, claim, ref)
