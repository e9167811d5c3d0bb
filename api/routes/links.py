"""Tracking links in messages: open pixel, click redirect, unsubscribe and preference pages.

No API key: the signed token in the URL is the credential (see `channels.links`). A forged or
altered token, or one of another kind, answers 404. GET never changes consent (mail scanners and
link prefetchers follow GETs); unsubscribing is a POST to the same signed URL — the page's form,
or a mail client's RFC 8058 one-click POST. The forms need no CSRF token: a forger would need the
signed URL, which is the credential itself.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.errors import JSON_ERROR_RESPONSES, ApiError
from channels import engagement, links
from models import Channel, Consent, ConsentState, Profile, Workspace

router = APIRouter(tags=["links"], responses=JSON_ERROR_RESPONSES)

TokenPath = Annotated[str, Path(max_length=4096, description="A signed token from a message")]
MessageTokenPath = Annotated[
    str, Path(max_length=512, description="The signed token of a message of a shared copy")
]
GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
PAGE_HEADERS = NO_CACHE | {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
LABELS = {
    Channel.email: "emails",
    Channel.sms: "text messages (SMS)",
    Channel.whatsapp: "WhatsApp messages",
    Channel.push: "push notifications",
}
# Re-subscribing SMS and WhatsApp needs the keyword opt-in, push a browser permission: the page
# can only turn those off.
RESUBSCRIBABLE = {Channel.email}


def _token(settings, token: str, kind: links.LinkKind) -> links.LinkToken:
    try:
        return links.verify(settings, token, kind)
    except links.BadToken:
        raise ApiError(404, "not_found", "link not found") from None


@router.get("/l/o/{token}.gif", response_class=Response)
async def open_pixel(
    token: TokenPath, request: Request, settings: SettingsDep, session: SessionDep
):
    """A 1×1 transparent GIF; records the open (the first one as an "Opened Email" event)."""
    t = _token(settings, token, links.LinkKind.open)
    detail = {"user_agent": request.headers.get("user-agent", "")[:512]}
    await engagement.record(
        session, t.workspace_id, t.message_id, t.profile_id, t.channel, "opened", detail
    )
    await session.commit()
    return Response(GIF, media_type="image/gif", headers=NO_CACHE)


@router.get("/l/c/{token}", response_class=RedirectResponse, status_code=302)
async def click(token: TokenPath, request: Request, settings: SettingsDep, session: SessionDep):
    """302 to the URL signed into the message's link; records the click."""
    return await _clicked(_token(settings, token, links.LinkKind.click), request, session)


@router.get("/l/c/{token}/{link}", response_class=RedirectResponse, status_code=302)
async def copy_click(
    token: MessageTokenPath,
    link: TokenPath,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
):
    """A click in an email of a shared copy (the message's token, the link's): 302 to that
    link's URL; records the click."""
    try:
        t = links.verify_click(settings, token, link)
    except links.BadToken:
        raise ApiError(404, "not_found", "link not found") from None
    return await _clicked(t, request, session)


async def _clicked(t: links.LinkToken, request: Request, session) -> RedirectResponse:
    detail = {"url": t.url, "user_agent": request.headers.get("user-agent", "")[:512]}
    await engagement.record(
        session, t.workspace_id, t.message_id, t.profile_id, t.channel, "clicked", detail
    )
    await session.commit()
    return RedirectResponse(t.url or "/", status_code=302, headers=NO_CACHE)


async def _load(session, t: links.LinkToken) -> tuple[Profile, Workspace]:
    profile = await session.scalar(
        select(Profile).where(Profile.id == t.profile_id, Profile.workspace_id == t.workspace_id)
    )
    workspace = await session.get(Workspace, t.workspace_id)
    if profile is None or workspace is None:
        raise ApiError(404, "not_found", "link not found")
    return profile, workspace


async def _consents(session, profile: Profile) -> dict[Channel, ConsentState]:
    rows = await session.execute(
        select(Consent.channel, Consent.state).where(Consent.profile_id == profile.id)
    )
    return {Channel(c): ConsentState(s) for c, s in rows.all()}


def _masked(address: str | None) -> str:
    if not address:
        return ""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"***{address[-3:]}"


def _page(workspace: Workspace, title: str, body: str, status: int = 200) -> HTMLResponse:
    name = html.escape(workspace.name)
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · {name}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;
line-height:1.5}}button{{font-size:1rem;padding:.5rem 1rem}}label{{display:block;margin:.4rem 0}}
</style></head><body><p><strong>{name}</strong></p><h1>{html.escape(title)}</h1>
{body}</body></html>"""
    return HTMLResponse(document, status_code=status, headers=PAGE_HEADERS)


def _address(profile: Profile, channel: Channel) -> str:
    return _masked(profile.email if channel == Channel.email else profile.phone)


@router.get("/l/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: TokenPath, settings: SettingsDep, session: SessionDep):
    """Asks to confirm; never unsubscribes by itself (scanners follow GETs)."""
    t = _token(settings, token, links.LinkKind.unsubscribe)
    profile, workspace = await _load(session, t)
    label = html.escape(LABELS[t.channel])
    prefs = links.preferences_url(
        settings=settings,
        workspace_id=t.workspace_id,
        profile_id=t.profile_id,
        message_id=t.message_id,
        channel=t.channel,
    )
    state = (await _consents(session, profile)).get(t.channel)
    if state == ConsentState.unsubscribed:
        intro = f"<p>{html.escape(_address(profile, t.channel))} is unsubscribed from {label}.</p>"
    else:
        intro = (
            f"<p>Stop {label} to {html.escape(_address(profile, t.channel))}?</p>"
            '<form method="post"><button type="submit">Unsubscribe</button></form>'
        )
    more = f'<p><a href="{html.escape(prefs, quote=True)}">Manage all preferences</a></p>'
    return _page(workspace, "Unsubscribe", intro + more)


@router.post("/l/u/{token}", response_class=HTMLResponse)
async def unsubscribe(token: TokenPath, settings: SettingsDep, session: SessionDep):
    """Unsubscribe from the link's channel: the page's button or an RFC 8058 one-click POST
    (`List-Unsubscribe=One-Click`). Idempotent."""
    t = _token(settings, token, links.LinkKind.unsubscribe)
    profile, workspace = await _load(session, t)
    await engagement.set_consent(
        session,
        t.workspace_id,
        profile.id,
        t.channel,
        ConsentState.unsubscribed,
        message_id=t.message_id,
    )
    await session.commit()
    address = html.escape(_address(profile, t.channel))
    body = f"<p>{address} will get no more {html.escape(LABELS[t.channel])} from us.</p>"
    return _page(workspace, "You are unsubscribed", body)


def _offered(profile: Profile, consents: dict[Channel, ConsentState]) -> list[Channel]:
    has = {
        Channel.email: bool(profile.email),
        Channel.sms: bool(profile.phone),
        Channel.whatsapp: bool(profile.phone) and Channel.whatsapp in consents,
        Channel.push: Channel.push in consents,
    }
    return [c for c in Channel if has[c]]


def _preferences_form(profile: Profile, consents: dict[Channel, ConsentState], saved: bool):
    rows = []
    for channel in _offered(profile, consents):
        on = consents.get(channel) == ConsentState.subscribed
        locked = not on and channel not in RESUBSCRIBABLE
        rows.append(
            f'<label><input type="checkbox" name="channel" value="{channel.value}"'
            f"{' checked' if on else ''}{' disabled' if locked else ''}> "
            f"{html.escape(LABELS[channel].capitalize())}"
            f" <small>{html.escape(_address(profile, channel))}</small></label>"
        )
    note = "<p><em>Saved.</em></p>" if saved else ""
    return (
        f'{note}<form method="post"><input type="hidden" name="save" value="1">'
        f'{"".join(rows)}<p><button type="submit">Save</button></p></form>'
    )


@router.get("/l/p/{token}", response_class=HTMLResponse)
async def preferences_page(token: TokenPath, settings: SettingsDep, session: SessionDep):
    """The profile's consent per channel, as a form posting back to the same signed URL."""
    t = _token(settings, token, links.LinkKind.preferences)
    profile, workspace = await _load(session, t)
    form = _preferences_form(profile, await _consents(session, profile), saved=False)
    return _page(workspace, "Your preferences", form)


@router.post("/l/p/{token}", response_class=HTMLResponse)
async def save_preferences(
    token: TokenPath, request: Request, settings: SettingsDep, session: SessionDep
):
    """Unchecked channels are unsubscribed (source `unsubscribe_link`); a checked email that was
    not subscribed is subscribed again (source `form`)."""
    t = _token(settings, token, links.LinkKind.preferences)
    profile, workspace = await _load(session, t)
    form = await request.form()
    wanted = {value for value in form.getlist("channel") if isinstance(value, str)}
    consents = await _consents(session, profile)
    for channel in _offered(profile, consents):
        on = consents.get(channel) == ConsentState.subscribed
        state = None
        if on and channel.value not in wanted:
            state = ConsentState.unsubscribed
        elif not on and channel.value in wanted and channel in RESUBSCRIBABLE:
            state = ConsentState.subscribed
        if state is not None:
            message_id = t.message_id if channel == t.channel else None
            await engagement.set_consent(
                session, t.workspace_id, profile.id, channel, state, message_id=message_id
            )
    await session.commit()
    form_html = _preferences_form(profile, await _consents(session, profile), saved=True)
    return _page(workspace, "Your preferences", form_html)
