"""Batch sends: content shared through substitutions must be exactly each recipient's content;
templates that read nothing of the recipient render once; new keys are written once."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from activities.channels import SendMessagesInput
from channels import email_tags, ledger, ledger_new, links
from channels.providers import sendgrid as sendgrid_provider
from channels.providers.sendgrid import SendGridEmailProvider
from channels.render import TemplateParts, recipient_independent, shared_links
from channels.send import PROFILE_COLUMNS, send_many, unpack_content
from core.db import session_scope
from core.settings import Settings
from ingest.consents import ConsentUpdate, apply_consents
from models import (
    Channel,
    ConsentSource,
    ConsentState,
    LocalOutboxMessage,
    Message,
    MessageStatus,
    Profile,
)
from models.base import utcnow
from models.messages import SourceType
from tests.channels.test_send import (
    CapturingProvider,
    _providers,
    _template,
    _workspace,
    send_settings,  # noqa: F401 (fixture)
)

SETTINGS = Settings(secret_key="k" * 48, public_url="https://wm.example.com")
HTML = (
    "<html><head><title>Sale</title></head><body><h1>Hi {{ profile.first_name }}</h1>"
    '<p>Our summer sale is on.</p><a href="https://shop.example.com/sale">Shop</a></body></html>'
)


async def _named(engine, ws, first_name: str) -> Profile:
    n = uuid.uuid4().hex[:8]
    profile = Profile(workspace_id=ws.id, email=f"p-{n}@example.com", first_name=first_name)
    async with session_scope(engine) as session:
        session.add(profile)
        await session.flush()
        update = ConsentUpdate(
            profile.id, Channel.email, ConsentState.subscribed, ConsentSource.api
        )
        await apply_consents(session, ws.id, [update])
    return profile


def _emails(ws, template_id, profiles, prefix: str | None = None) -> SendMessagesInput:
    """A campaign batch of emails to `profiles` (keys under `prefix`, a new one by default)."""
    return SendMessagesInput(
        workspace_id=ws.id,
        channel=Channel.email,
        template_id=template_id,
        profile_ids=[p.id for p in profiles],
        idempotency_prefix=prefix or f"campaign-message:{uuid.uuid4()}",
    )


async def test_emails_that_differ_only_in_names_share_one_request(
    engine,
    workspaces,
    send_settings,  # noqa: F811
):
    ws = await _workspace(engine, workspaces)
    template_id = await _template(
        engine, ws, subject="Summer sale, {{ profile.first_name }}", html=HTML
    )
    plain = ["Ann", "Bartholomew", "Zoë Kowalska"]
    # Not provably the same as tags: an escaped quote, a name that is also markup (`<body>`,
    # `<title>`): those recipients get their own content.
    special = ["O'Brien", "body", "Sale"]
    profiles = {name: await _named(engine, ws, name) for name in plain + special}
    provider = CapturingProvider(engine, ws.id)
    input = _emails(ws, template_id, profiles.values())

    result = await send_many(engine, send_settings, input, providers=_providers(provider))

    assert result.sent == 6
    by_name = {e.to: e for e in provider.emails}
    emails = {name: by_name[p.email] for name, p in profiles.items()}
    shared = {(emails[n].html, emails[n].text) for n in plain}
    assert len(shared) == 1  # one content for the three: one SendGrid request
    for name in special:
        assert (emails[name].html, emails[name].text) not in shared
    async with session_scope(engine) as session:
        messages = {m.id: m for m in (await session.execute(select(Message))).scalars().all()}
        outbox = {
            o.message_id: o
            for o in (await session.execute(select(LocalOutboxMessage))).scalars().all()
        }
    for name, email in emails.items():
        message = messages[email.message_id]
        content = unpack_content(message.content)
        real_html = email_tags.substitute(email.html, email.substitutions)
        real_text = email_tags.substitute(email.text, email.substitutions)
        # What the recipient gets is exactly what the ledger and the outbox hold.
        assert content["html"] == real_html == outbox[email.message_id].html
        assert content["text"] == real_text == outbox[email.message_id].text
        escaped = name.replace("'", "&#39;")
        assert f"<h1>Hi {escaped}</h1>" in real_html and f"Hi {name}" in real_text
        assert message.subject == email.subject == f"Summer sale, {name}"
    # The SendGrid request: the shared content once, each recipient's subject and values in
    # its personalization.
    body = (
        SendGridEmailProvider("SG.x", "http://127.0.0.1:9").build([emails[n] for n in plain]).get()
    )
    assert body["subject"] == "Summer sale, Ann"
    personalizations = body["personalizations"]
    assert [p.get("subject") for p in personalizations] == [
        None,
        "Summer sale, Bartholomew",
        "Summer sale, Zoë Kowalska",
    ]
    assert "Zoë Kowalska" in personalizations[2]["substitutions"].values()


CASES = [
    ("<p>Hi Ann</p>", "Ann"),
    ('<p>Hi Ann</p><img alt="Ann" src="https://shop.example.com/a.png">', "Ann"),
    ('<p>Hi Ann</p><a href="https://shop.example.com/?n=Ann">Go</a>', "Ann"),
    ("<p>Hi Ann</p><!-- for Ann -->", "Ann"),
    ("<html><body><p>Hi body</p></body></html>", "body"),
    ("<p>&ampAnn and Ann</p>", "Ann"),
    ("<p>Hi <b>Ann Lee</b>, Ann</p>", "Ann Lee"),
    ("<style>p{x:1}>Ann</style><p>Ann</p>", "Ann"),
    ('<p title="a>b Ann">Ann</p>', "Ann"),
    ("<p>wm1 Ann</p>", "Ann"),
]


@pytest.mark.parametrize(("html", "value"), CASES)
def test_tagged_content_is_exactly_the_recipients_content(html, value):
    """Whatever the template did with the value, the tagged content substituted is the content
    the message would have on its own (links signed, text derived)."""
    ids = {"workspace_id": uuid.uuid4(), "message_id": uuid.uuid4(), "profile_id": uuid.uuid4()}
    unsubscribe = links.unsubscribe_url(settings=SETTINGS, **ids)
    utm = {"utm_source": "waymark"}
    tagged = email_tags.prepare_email_tagged(
        html,
        "",
        settings=SETTINGS,
        **ids,
        utm=utm,
        preheader=f"Deals for {value}",
        unsubscribe_url=unsubscribe,
        personal_urls=(unsubscribe,),
        personal_values=(value, "Lee"),
        derive_text=True,
    )
    expected_html = links.prepare_email_html(
        html,
        settings=SETTINGS,
        **ids,
        utm=utm,
        preheader=f"Deals for {value}",
        unsubscribe_url=unsubscribe,
    )
    subs = tagged.substitutions
    assert email_tags.substitute(tagged.html, subs) == tagged.real_html == expected_html
    assert email_tags.substitute(tagged.text, subs) == tagged.real_text == links.html_to_text(html)
    assert unsubscribe not in tagged.html and "/l/c/" not in tagged.html or not subs


def test_only_templates_that_read_nothing_of_the_recipient_render_once():
    def independent(**parts):
        return recipient_independent(TemplateParts(channel=Channel.email, **parts))

    assert independent(subject="Sale", html="<p>{{ workspace.name }} sale</p>")
    assert independent(html="{% set n = 3 %}{{ n * 2 }}")
    assert not independent(subject="Hi {{ profile.first_name }}", html="<p>Sale</p>")
    assert not independent(html="{{ 12.5|money }}")  # the profile's locale
    assert not independent(html="{{ [1, 2]|random }}")
    assert not independent(html="{{ lipsum() }}")
    assert not independent(html="{{ unsubscribe_url }}")
    assert not independent(html="{{ message_id }}")

    def links(**parts):
        return shared_links(TemplateParts(channel=Channel.email, **parts))

    # Its own links aside, an email may still be the same copy (its links as tags).
    assert links(html='<a href="{{ unsubscribe_url }}">x</a>{{ preferences_url }}') == {
        "unsubscribe_url",
        "preferences_url",
    }
    assert links(html="{{ workspace.name }}") == frozenset()
    assert links(html="{{ unsubscribe_url }} {{ profile.email }}") is None
    assert links(html="{{ message_id }}") is None


async def test_a_new_key_is_written_once(engine, workspaces):
    """Two attempts writing the same new key: only the first row exists, and only it may be
    sent (the second attempt's `sending` row was never written)."""
    ws = await workspaces.create()
    async with session_scope(engine) as session:
        profile = Profile(workspace_id=ws.id, email="ann@example.com")
        session.add(profile)
    source = ledger_new.Source(Channel.email, SourceType.campaign)
    key = f"campaign:{uuid.uuid4()}"
    first, second = uuid.uuid4(), uuid.uuid4()
    outgoing = ledger.Outgoing(first, "ann@example.com", "Hi", b"x", "0" * 64, "SendGrid")
    async with session_scope(engine) as session:
        row = ledger_new.Decided(first, key, profile.id, MessageStatus.sending, outgoing=outgoing)
        assert await ledger_new.insert_decided(session, ws.id, source, [row], utcnow()) == {first}
    async with session_scope(engine) as session:
        again = ledger_new.Decided(
            second, key, profile.id, MessageStatus.sending, outgoing=outgoing
        )
        assert await ledger_new.insert_decided(session, ws.id, source, [again], utcnow()) == set()
        rows = await ledger_new.find_many(session, ws.id, [key])
    assert rows[key].id == first and rows[key].status == "sending"


SHARED_CASES = [
    '<html><body><p>Sale</p><a href="https://shop.example.com/sale">Shop</a></body></html>',
    '<p>No body tag</p><a href="https://shop.example.com/?a=1&amp;b=2">A</a>'
    '<a href="https://shop.example.com/sale" data-waymark-track="off">B</a>',
    '<p>Already <a href="https://wm.example.com/l/u/x">out</a> and wm1 text</p>',
    # The template prints the recipient's own links (`{u}`: unsubscribe, `{p}`: preferences).
    '<body><a href="https://shop.example.com/">Shop</a><p><a href="{u}">Leave</a></p></body>',
    '<p>Manage: {p}</p><a href="{p}">here</a><footer>Or <a href="{u}">unsubscribe</a></footer>',
    "<p>Copy this: {u}</p>",
]


@pytest.mark.parametrize("html", SHARED_CASES)
@pytest.mark.parametrize("transactional", [False, True])
def test_a_same_copy_email_tagged_once_is_each_recipients_email(html, transactional):
    """`SharedEmail` (tagged once per send, the template's own links rendered as stand-ins)
    gives every recipient the email `prepare_email_html` gives them one by one as an email of
    that copy: their message token in every click URL, the open pixel and their unsubscribe
    (and preference) links; nothing else differs."""
    utm = {"utm_source": "waymark"}
    ws = uuid.UUID(int=1)
    stand_ins = {
        links.LinkKind.unsubscribe: "https://wm.example.com/l/u/stand-in-a",
        links.LinkKind.preferences: "https://wm.example.com/l/p/stand-in-a",
    }
    signer = links.signer(SETTINGS, ws)
    shared = email_tags.shared_email(
        html.format(
            u=stand_ins[links.LinkKind.unsubscribe], p=stand_ins[links.LinkKind.preferences]
        ),
        "",
        signer=signer,
        public_url=SETTINGS.public_url,
        utm=utm,
        preheader="Deals",
        unsubscribe=not transactional,
        derive_text=True,
        stand_ins=stand_ins,
    )
    assert (shared is None) == ("wm1" in html)
    for _ in range(3):
        ids = {"workspace_id": ws, "message_id": uuid.uuid4(), "profile_id": uuid.uuid4()}
        unsubscribe = links.unsubscribe_url(settings=SETTINGS, **ids)
        preferences = links.preferences_url(settings=SETTINGS, **ids)
        if shared is not None:  # an email of a shared copy: its links are its message token's
            token = signer.message_token(
                Channel.email, ids["profile_id"], ids["message_id"], shared.copy, shared.grants
            )
            unsubscribe = signer.message_url(links.LinkKind.unsubscribe, token)
            preferences = signer.message_url(links.LinkKind.preferences, token)
            # It stands for the recipient links the email holds, and for no other.
            held = {links.LinkKind.unsubscribe: "{u}" in html or not transactional}
            held[links.LinkKind.preferences] = "{p}" in html
            for kind, holds in held.items():
                if holds:
                    assert links.verify(SETTINGS, token, kind).message_id == ids["message_id"]
                else:
                    with pytest.raises(links.BadToken):
                        links.verify(SETTINGS, token, kind)
        real = html.format(u=unsubscribe, p=preferences)
        expected = links.prepare_email_html(
            real,
            settings=SETTINGS,
            **ids,
            utm=utm,
            preheader="Deals",
            unsubscribe_url=None if transactional else unsubscribe,
            copy=shared.copy if shared else None,
            grants=shared.grants if shared else 0,
        )
        if shared is None:
            continue
        subs = shared.values(signer, ids["profile_id"], ids["message_id"])
        assert email_tags.substitute(shared.html, subs) == expected
        assert email_tags.substitute(shared.text, subs) == links.html_to_text(real)
        # Nothing of the recipient is in the shared content: every open, click, unsubscribe
        # and preferences URL holds the tag of the message token, the one value per recipient.
        tag, content = shared.message_tag, shared.html + shared.text
        own = content.count("/l/u/") + content.count("/l/p/") - html.count("/l/u/x")
        assert content.count("/l/c/") + own == content.count(f"/{tag}") - 1  # and the pixel
        assert f"/l/o/{tag}.gif" in shared.html
        assert set(subs) == {tag} and shared.links == ()


def _composer(html: str):
    """The `Composer` of an email send of `html` (workspace 1, no UTM)."""
    from channels.compose import Composer

    template = TemplateParts(channel=Channel.email, subject="Sale", html=html)
    workspace = SimpleNamespace(id=uuid.UUID(int=1), name="Shop", timezone="UTC", settings={})
    return Composer(
        settings=SETTINGS,
        workspace=workspace,
        template=template,
        channel=Channel.email,
        transactional=False,
        utm={},
        sender={"from_email": "shop@example.com", "from_name": None, "reply_to": None},
        source_type="campaign",
        provider="local",
        subscriptions={},
    )


def _recipient(email: str) -> SimpleNamespace:
    """A profile row as the send path loads it."""
    columns = {column.key: None for column in PROFILE_COLUMNS}
    return SimpleNamespace(**columns | {"id": uuid.uuid4(), "email": email})


def test_a_newsletter_of_many_links_still_goes_in_one_request():
    """However many links an email of the same copy has, each recipient's substitution is
    their message token, in every link (SendGrid allows 10,000 bytes of them per
    recipient: a signed URL each would overflow them from about 60 links, and every recipient
    then got a request of their own)."""
    from channels.compose import Item as ComposeItem

    grid = "".join(
        f'<a href="https://shop.example.com/p/{n}?ref=news">P{n}</a>' for n in range(150)
    )
    composer = _composer(f"<html><body>{grid}</body></html>")
    emails = []
    for n in range(3):
        item = ComposeItem(f"k{n}", uuid.uuid4(), _recipient(f"r{n}@example.com"), None, False)
        [email] = composer.prepare(item).outgoing
        emails.append(email)
    provider = SendGridEmailProvider("SG.x", "http://127.0.0.1:9")
    assert all(len(e.substitutions) == 1 for e in emails)
    assert all(sendgrid_provider._sendable(e) is e for e in emails)  # not expanded
    assert len({provider._content_key(e) for e in emails}) == 1  # one request for all
    body = provider.build(emails).get()
    assert len(body["personalizations"]) == 3
    for email in emails:
        real = email_tags.substitute(email.html, email.substitutions)
        urls = [u for u in real.split('"') if u.startswith("https://wm.example.com/l/c/")]
        click = links.verify_click(SETTINGS, *urls[149].split("/")[-2:])
        assert (click.message_id, click.url) == (
            email.message_id,
            "https://shop.example.com/p/149?ref=news",
        )
        # Its unsubscribe link, in the footer and the RFC 8058 header, is the same token's.
        [token] = email.substitutions.values()
        unsubscribe = f"https://wm.example.com/l/u/{token}"
        assert email.headers["List-Unsubscribe"] == f"<{unsubscribe}>" and unsubscribe in real


def test_a_template_that_changes_its_links_renders_per_recipient():
    """A shared template must print its links as they are, in content that can hold tags: one
    that changes them (a filter), or whose content cannot be tagged, is rendered for each
    recipient, with the recipient's real links."""
    from channels.compose import Item as ComposeItem

    composer = _composer
    profile = _recipient("ann@example.com")
    verbatim = composer('<p><a href="{{ unsubscribe_url }}">Leave</a></p>')
    changed = composer("<p>{{ unsubscribe_url|upper }}</p>")
    untaggable = composer('<p>wm1 <a href="{{ unsubscribe_url }}">Leave</a></p>')  # no tags
    for c in (verbatim, changed, untaggable):
        item = ComposeItem("k", uuid.uuid4(), profile, None, False)
        prepared = c.prepare(item)
        [email] = prepared.outgoing
        real = email_tags.substitute(email.html, email.substitutions)
        token = email.headers["List-Unsubscribe"][1:-1]
        assert f'href="{token}">Leave' in real if c is not changed else token.upper() in real
        assert "stand-in" not in real
    assert verbatim.shared and not changed.shared and not untaggable.shared
    assert verbatim.contents and not changed.contents and not untaggable.contents


async def test_a_same_copy_send_keeps_its_content_once(
    engine,
    workspaces,
    send_settings,  # noqa: F811
):
    """The ledger keeps a same-copy email once per send (no recipient's data in it), and gives
    each message back exactly as its recipient got it; erasing a recipient leaves the others'."""
    from channels.compose import message_content
    from ingest.erasure import erase_profile
    from models import MessageContent

    ws = await _workspace(engine, workspaces, utm={"utm_source": "waymark"})
    html = (
        "<html><body><h1>{{ workspace.name }} sale</h1>"
        '<a href="https://shop.example.com/sale">Shop</a></body></html>'
    )
    template_id = await _template(engine, ws, subject="Summer sale", html=html)
    profiles = [await _named(engine, ws, "Ann") for _ in range(5)]
    provider = CapturingProvider(engine, ws.id)
    prefix = f"campaign-message:{uuid.uuid4()}"
    for batch in (profiles[:3], profiles[3:]):  # two batches of one send
        input = _emails(ws, template_id, batch, prefix)
        result = await send_many(engine, send_settings, input, providers=_providers(provider))
        assert result.sent == len(batch)

    async with session_scope(engine) as session:
        [stored] = (
            await session.execute(
                select(MessageContent).where(MessageContent.workspace_id == ws.id)
            )
        ).scalars()
        messages = {
            m.id: m
            for m in (await session.execute(select(Message).where(Message.workspace_id == ws.id)))
            .scalars()
            .all()
        }
        assert {(m.content, m.content_id) for m in messages.values()} == {(None, stored.id)}
        kept = unpack_content(stored.content)
        for part in ("@example.com", "Ann"):
            assert part not in kept["html"] + kept["text"]
        tag = kept["message_tag"]  # each message's token, in all its links and open pixel
        assert kept["html"].count("/l/c/") == kept["html"].count(f"/l/c/{tag}/") == 1
        assert kept["html"].count("/l/u/") == kept["html"].count(f"/l/u/{tag}") == 1
        outbox = {
            o.message_id: o
            for o in (await session.execute(select(LocalOutboxMessage))).scalars().all()
        }
        for email in provider.emails:
            content = await message_content(session, send_settings, messages[email.message_id])
            real = email_tags.substitute(email.html, email.substitutions)
            assert content["html"] == real == outbox[email.message_id].html
            assert content["text"] == email_tags.substitute(email.text, email.substitutions)
            assert content["subject"] == "Summer sale"
            [url] = [t for t in real.split('"') if t.startswith("https://wm.example.com/l/c/")]
            click = links.verify_click(send_settings, *url.split("/")[-2:])
            assert click.message_id == email.message_id
            assert click.url == "https://shop.example.com/sale?utm_source=waymark"
            assert "/l/u/" in real and email.headers["List-Unsubscribe"][1:-1] in real

    async with session_scope(engine) as session:
        assert await erase_profile(session, ws.id, profiles[0].id)
    async with session_scope(engine) as session:
        left = (
            (await session.execute(select(Message).where(Message.workspace_id == ws.id)))
            .scalars()
            .all()
        )
        assert len(left) == 4 and await session.get(MessageContent, stored.id) is not None
        assert (await message_content(session, send_settings, left[0]))["html"] == outbox[
            left[0].id
        ].html


async def test_profile_properties_are_loaded_when_the_template_reads_them(
    engine,
    workspaces,
    send_settings,  # noqa: F811
):
    """The send path loads the profiles' properties only for a template that may read them,
    and such a template renders them."""
    from channels.render import reads_properties

    def reads(html: str) -> bool:
        return reads_properties(TemplateParts(channel=Channel.email, subject="Hi", html=html))

    assert not reads("<p>{{ profile.first_name }} {{ profile['email'] }}</p>")
    assert not reads("<p>{{ workspace.name }} {{ unsubscribe_url }}</p>")
    assert reads("<p>{{ profile.tier }}</p>") and reads("<p>{{ profile.properties.tier }}</p>")
    assert reads("<p>{{ profile }}</p>") and reads("{% for k in profile %}{{ k }}{% endfor %}")

    ws = await _workspace(engine, workspaces)
    template_id = await _template(
        engine, ws, subject="Hi", html="<p>{{ profile.tier }} member {{ profile.first_name }}</p>"
    )
    profile = await _named(engine, ws, "Ann")
    async with session_scope(engine) as session:
        row = await session.get(Profile, profile.id)
        row.properties = {"tier": "gold"}
    provider = CapturingProvider(engine, ws.id)
    input = _emails(ws, template_id, [profile])
    result = await send_many(engine, send_settings, input, providers=_providers(provider))
    assert result.sent == 1
    [email] = provider.emails
    assert "gold member Ann" in email_tags.substitute(email.html, email.substitutions)


async def test_a_same_copy_email_handed_back_is_sent_again_with_its_shared_content(
    engine,
    workspaces,
    send_settings,  # noqa: F811
):
    """A batch the provider could not take goes back to `queued`; the retry claims the rows
    again (`queued → sending`) with the shared content, and sends each once."""
    from channels.base import ProviderUnavailable
    from channels.compose import message_content

    ws = await _workspace(engine, workspaces)
    html = '<a href="https://shop.example.com/">Shop</a> <a href="{{ unsubscribe_url }}">Leave</a>'
    template_id = await _template(engine, ws, subject="Sale", html=html)
    profiles = [await _named(engine, ws, "Ann") for _ in range(3)]
    provider = CapturingProvider(engine, ws.id)
    provider.unavailable = 1
    input = _emails(ws, template_id, profiles)
    with pytest.raises(ProviderUnavailable):
        await send_many(engine, send_settings, input, providers=_providers(provider))
    async with session_scope(engine) as session:
        rows = (
            await session.execute(select(Message).where(Message.workspace_id == ws.id))
        ).scalars()
        assert {(m.status, m.content_id is not None) for m in rows} == {("queued", True)}

    result = await send_many(engine, send_settings, input, providers=_providers(provider))
    handed_back, sent = provider.emails[:3], provider.emails[3:]  # the same rows, sent once
    assert result.sent == 3 and sorted(provider.calls) == sorted(e.message_id for e in sent)
    assert {e.message_id for e in handed_back} == {e.message_id for e in sent}
    async with session_scope(engine) as session:
        messages = (
            (await session.execute(select(Message).where(Message.workspace_id == ws.id)))
            .scalars()
            .all()
        )
        assert {(m.status, m.content) for m in messages} == {("sent", None)}
        for email in sent:
            [message] = [m for m in messages if m.id == email.message_id]
            content = await message_content(session, send_settings, message)
            assert content["html"] == email_tags.substitute(email.html, email.substitutions)
            assert email.headers["List-Unsubscribe"][1:-1] in content["html"]


def test_the_profile_fields_are_those_templates_see():
    """`PROFILE_FIELDS` (what a template may read without the properties) is exactly the
    profile's own part of `profile_context`."""
    from channels.render import PROFILE_FIELDS, profile_context

    profile = SimpleNamespace(**{column.key: None for column in PROFILE_COLUMNS})
    assert set(profile_context(profile)) - {"properties"} == PROFILE_FIELDS


async def test_shared_content_stored_in_earlier_forms_still_rebuilds():
    """`message_contents` rows written by earlier code give each message back as it was sent:
    a tag per signed URL (`slots`), then a tag per recipient link beside the message token's
    (`links`), now the message token's tag alone."""
    from channels.compose import message_content, pack

    ws, pid, mid = uuid.UUID(int=1), uuid.uuid4(), uuid.uuid4()
    signer, copy = links.signer(SETTINGS, ws), b"\x07" * links.COPY_BYTES
    token = signer.message_token(Channel.email, pid, mid, copy)  # opens and clicks only
    unsubscribes = links.GRANTS[links.LinkKind.unsubscribe]
    granting = signer.message_token(Channel.email, pid, mid, copy, unsubscribes)
    unsubscribe = signer.url(links.LinkKind.unsubscribe, Channel.email, pid, mid)
    click = ("click", "https://shop.example.com/")
    stored = {
        "slots": (
            {
                "html": '<a href="-wm1-">Shop</a><img src="-wm2-"><a href="-wm0-">Leave</a>',
                "links": [["-wm0-", int(links.LinkKind.unsubscribe)]],
                "slots": [["-wm1-", *click], ["-wm2-", "open"]],
            },
            '<a href="{}">Shop</a><img src="{}"><a href="{}">Leave</a>'.format(
                links.slot_value(click, signer, pid, mid),
                links.slot_value(("open",), signer, pid, mid),
                unsubscribe,
            ),
        ),
        "links": (
            {
                "html": '<img src="https://wm.example.com/l/o/-wm1-.gif"><a href="-wm0-">x</a>',
                "links": [["-wm0-", int(links.LinkKind.unsubscribe)]],
                "message_tag": "-wm1-",
                "copy": copy.hex(),
            },
            f'<img src="https://wm.example.com/l/o/{token}.gif"><a href="{unsubscribe}">x</a>',
        ),
        "message token": (
            {
                "html": '<img src="https://wm.example.com/l/o/-wm0-.gif">'
                '<a href="https://wm.example.com/l/u/-wm0-">x</a>',
                "links": [],
                "message_tag": "-wm0-",
                "copy": copy.hex(),
                "grants": unsubscribes,
            },
            f'<img src="https://wm.example.com/l/o/{granting}.gif">'
            f'<a href="https://wm.example.com/l/u/{granting}">x</a>',
        ),
    }
    for form, (parts, sent) in stored.items():
        content, _ = pack({"subject": "Sale", "preheader": None, "text": "Sale"} | parts)

        async def get(_model, _id, content=content):
            return SimpleNamespace(content=content)

        message = SimpleNamespace(
            content_id=uuid.uuid4(), content=None, workspace_id=ws, profile_id=pid, id=mid
        )
        rebuilt = await message_content(SimpleNamespace(get=get), SETTINGS, message)
        assert (rebuilt["html"], rebuilt["subject"]) == (sent, "Sale"), form
