"""Rendering templates: Jinja2 in a sandbox, strict about missing data, all parts or none.

- `SandboxedEnvironment` with a strict undefined: a template reaching for data that is not there
  (`{{ event.cart.itmes }}`) raises `TemplateError("html line 12: 'event.cart' has no attribute
  'itmes'")` instead of sending a half-filled message. Optional data is written with
  `{% if event.coupon is defined %}` or `{{ profile.first_name or "there" }}`.
- Dict keys win over dict methods: `event.items` is the cart's items, not `dict.items`.
- HTML is autoescaped; subject, text, SMS/WhatsApp and push parts are plain text.
- Filters `money`, `number`, `date`, `datetime` format in the profile's locale (`channels.filters`).
- Compiled templates are cached per (template id, updated_at, part).
"""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing, object_type_repr

from channels import filters
from channels.links import html_to_text
from models import Channel, Profile, Workspace

PARTS: dict[Channel, tuple[str, ...]] = {
    Channel.email: ("subject", "preheader", "html", "text"),
    Channel.sms: ("body",),
    Channel.whatsapp: ("body",),
    Channel.push: ("push_title", "body", "push_url", "push_icon"),
}
MAX_REPEAT = 100_000  # longest string or list a template may build with `*`


class TemplateError(ValueError):
    """A template that does not render: which part, which line and which name was missing."""

    def __init__(self, part: str, reason: str, *, line: int | None = None, name: Any = None):
        self.part, self.reason, self.line = part, reason, line
        self.name = None if name is None else str(name)
        where = f"{part} line {line}" if line else part
        super().__init__(f"{where}: {reason}")


class _Message(str):
    """An undefined-error message that remembers the missing name."""

    missing: Any = None


class _Data(dict):
    """A dict of render data that knows where it came from (`event.items[0]`), for errors."""

    __slots__ = ("_wm_path",)


class _List(list):
    __slots__ = ("_wm_path",)


_NESTED = (dict, list, tuple)


def _wrap(value: Any, path: str) -> Any:
    # Scalars are kept as they are; only containers are copied (with their path), so a profile
    # of scalar fields costs one dict copy.
    if isinstance(value, dict):
        data = _Data(value)
        for k, v in value.items():
            if isinstance(v, _NESTED):
                data[k] = _wrap(v, f"{path}.{k}")
        data._wm_path = path
        return data
    if isinstance(value, list | tuple):
        items = _List(
            _wrap(v, f"{path}[{i}]") if isinstance(v, _NESTED) else v for i, v in enumerate(value)
        )
        items._wm_path = path
        return items
    return value


class _Undefined(StrictUndefined):
    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint:
            text = self._undefined_hint
        elif obj is missing:
            text = f"{name!r} is undefined"
        else:
            owner = getattr(obj, "_wm_path", None) or object_type_repr(obj)
            what = "item" if isinstance(name, int) else "attribute"
            text = f"{owner!r} has no {what} {name!r}"
        message = _Message(text)
        message.missing = name
        return message


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**" and isinstance(right, int | float) and abs(right) > 100:
            raise SecurityError("exponent too large")
        if operator_ == "*":
            sized = isinstance(left, str | list) or isinstance(right, str | list)
            if sized and _repeat_size(left, right) > MAX_REPEAT:
                raise SecurityError(f"`*` would build more than {MAX_REPEAT} items")
        return super().call_binop(context, operator_, left, right)


def _repeat_size(left: Any, right: Any) -> int:
    seq, times = (left, right) if isinstance(left, str | list) else (right, left)
    return len(seq) * times if isinstance(times, int) else 0


ENV = _Environment(
    undefined=_Undefined,
    autoescape=lambda name: name == "html",
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
ENV.filters.update(filters.FILTERS)
ENV.binop_table = {**ENV.binop_table, "*": operator.mul, "**": operator.pow}


class TemplateSource(Protocol):
    """What rendering reads: `models.Template`, or `TemplateParts` for one not saved."""

    id: uuid.UUID | None
    updated_at: datetime | None
    channel: Channel
    subject: str | None
    preheader: str | None
    html: str | None
    text: str | None
    body: str | None
    push_title: str | None
    push_url: str | None
    push_icon: str | None


@dataclass(frozen=True)
class TemplateParts:
    """A template that is not saved (validation, preview of a draft): never cached."""

    channel: Channel
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None
    body: str | None = None
    push_title: str | None = None
    push_url: str | None = None
    push_icon: str | None = None
    id: uuid.UUID | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RenderContext:
    """What a template sees. `profile`: reserved fields + `properties` (also at the top level
    where no reserved field has the name); `event`: the triggering event's properties at the top
    level plus `metric`, `value`, `currency`, `occurred_at`, `properties`."""

    profile: dict[str, Any]
    event: dict[str, Any] | None = None
    workspace: dict[str, Any] = field(default_factory=dict)
    products: list[dict[str, Any]] | None = None
    unsubscribe_url: str | None = None
    preferences_url: str | None = None
    message_id: str | None = None

    def variables(self) -> dict[str, Any]:
        ws = self.workspace
        event = self.event or {}
        names: dict[str, Any] = {
            "profile": self.profile,
            "workspace": ws,
            "locale": filters.pick_locale(self.profile.get("locale"), ws.get("locale")),
            "timezone": self.profile.get("timezone") or ws.get("timezone") or "UTC",
            "currency": event.get("currency") or ws.get("currency") or filters.DEFAULT_CURRENCY,
        }
        optional = {
            "event": self.event,
            "products": self.products,
            "unsubscribe_url": self.unsubscribe_url,
            "preferences_url": self.preferences_url,
            "message_id": self.message_id,
        }
        names |= {k: v for k, v in optional.items() if v is not None}
        return {k: _wrap(v, k) for k, v in names.items()}


@dataclass(frozen=True)
class Rendered:
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None
    body: str | None = None
    push_title: str | None = None
    push_url: str | None = None
    push_icon: str | None = None


@lru_cache(maxsize=2048)
def _compile_cached(_template_id: uuid.UUID, _updated_at: datetime, part: str, source: str):
    return _compile(part, source)


def _compile(part: str, source: str):
    try:
        code = ENV.compile(source, name=part, filename=f"<{part}>")
    except TemplateSyntaxError as exc:
        raise TemplateError(part, exc.message or "syntax error", line=exc.lineno) from None
    # The globals as a plain dict: Jinja copies them into every render's context, and a copy
    # of its default ChainMap costs more than the rest of rendering a short SMS.
    return ENV.template_class.from_code(ENV, code, dict(ENV.make_globals(None)))


def _line(exc: BaseException, part: str) -> int | None:
    line, tb, filename = None, exc.__traceback__, f"<{part}>"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render_part(template: TemplateSource, part: str, source: str, names: dict) -> str:
    if template.id is not None and template.updated_at is not None:
        compiled = _compile_cached(template.id, template.updated_at, part, source)
    else:
        compiled = _compile(part, source)
    try:
        return compiled.render(names)
    except Exception as exc:  # a template's own error, whatever the kind: never a 500
        message = exc.args[0] if exc.args else None
        name = getattr(message, "missing", None)
        reason = str(message) if message else type(exc).__name__
        raise TemplateError(part, reason, line=_line(exc, part), name=name) from None


def check(template: TemplateSource) -> None:
    """Compile every part of the channel: a syntax error raises TemplateError."""
    for part in PARTS[Channel(template.channel)]:
        if source := getattr(template, part):
            _compile(part, source)


def render(
    template: TemplateSource, context: RenderContext, *, derive_text: bool = True
) -> Rendered:
    """Every part of the template's channel, rendered; or TemplateError, and nothing else.

    An email without a text part gets one derived from its HTML (`derive_text=False` leaves
    it empty: the send path derives it itself, from HTML shared by many recipients)."""
    names = context.variables()
    out: dict[str, str | None] = {}
    for part in PARTS[Channel(template.channel)]:
        source = getattr(template, part)
        out[part] = _render_part(template, part, source, names) if source else None
    if derive_text and needs_text(template.channel, out.get("text"), out.get("html")):
        out["text"] = html_to_text(out["html"])  # type: ignore[arg-type]
    return Rendered(**out)


def needs_text(channel: Channel, text: str | None, html: str | None) -> bool:
    """An email whose text part is empty: it gets one derived from the HTML."""
    return channel == Channel.email and not (text or "").strip() and bool(html)


# Names whose value differs per recipient (or per message); `locale`, `timezone` and `currency`
# come from the profile (or the event) too.
_SHARED_NAMES = frozenset({"workspace"})
# The recipient's own links: an email may print them and still be "the same copy", its links
# standing in the shared content as tags (`channels.compose`, `channels.email_tags`).
LINK_NAMES = frozenset({"unsubscribe_url", "preferences_url"})


def recipient_independent(template: TemplateSource) -> bool:
    """True when every part renders the same for every recipient of a send: it reads no name
    but `workspace` and uses no filter or test that reads the render's context (`money`,
    `date`, ... take the profile's locale; `random` is random). Such a template is rendered
    once per send instead of once per recipient."""
    return shared_links(template) == frozenset()


def shared_links(template: TemplateSource) -> frozenset[str] | None:
    """The recipient links (`LINK_NAMES`) a template prints when it reads nothing else of the
    recipient (see `recipient_independent`); None when it does."""
    if template.id is not None and template.updated_at is not None:
        return _independent_cached(template.id, template.updated_at, _sources(template))
    return _independent(_sources(template))


def profile_fields_used(template: TemplateSource) -> frozenset[str] | None:
    """The `profile.<name>` fields the template reads (`profile.first_name`,
    `profile["city"]`); None when it uses `profile` otherwise (as a whole, a computed key)."""
    if template.id is not None and template.updated_at is not None:
        return _fields_cached(template.id, template.updated_at, _sources(template))
    return _fields(_sources(template))


@lru_cache(maxsize=1024)
def _fields_cached(
    _id: uuid.UUID, _updated_at: datetime, sources: tuple[str, ...]
) -> frozenset[str] | None:
    return _fields(sources)


def _fields(sources: tuple[str, ...]) -> frozenset[str] | None:
    fields: set[str] = set()
    for source in sources:
        if not source:
            continue
        try:
            ast = ENV.parse(source)
        except TemplateSyntaxError:
            return None
        named = sum(1 for n in ast.find_all(nodes.Name) if n.name == "profile")
        reads = 0
        for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
            if isinstance(node.node, nodes.Name) and node.node.name == "profile":
                if isinstance(node, nodes.Getattr):
                    fields.add(node.attr)
                elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                    fields.add(node.arg.value)
                else:
                    return None
                reads += 1
        if reads != named:
            return None
    return frozenset(fields)


def _sources(template: TemplateSource) -> tuple[str, ...]:
    return tuple(getattr(template, part) or "" for part in PARTS[Channel(template.channel)])


@lru_cache(maxsize=1024)
def _independent_cached(
    _id: uuid.UUID, _updated_at: datetime, sources: tuple[str, ...]
) -> frozenset[str] | None:
    return _independent(sources)


def _independent(sources: tuple[str, ...]) -> frozenset[str] | None:
    links: set[str] = set()
    for source in sources:
        if not source:
            continue
        try:
            ast = ENV.parse(source)
        except TemplateSyntaxError:
            return None  # rendered per recipient, which reports the error
        names = meta.find_undeclared_variables(ast) - _SHARED_NAMES
        if not names <= LINK_NAMES:
            return None
        links |= names
        if any(node.name == "lipsum" for node in ast.find_all(nodes.Name)):
            return None  # random text
        for node in ast.find_all((nodes.Filter, nodes.Test)):
            table = ENV.filters if isinstance(node, nodes.Filter) else ENV.tests
            function = table.get(node.name)
            if node.name == "random" or getattr(function, "jinja_pass_arg", None) is not None:
                return None
    return frozenset(links)


def render_sample(
    template: TemplateSource,
    profile: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    *,
    workspace: dict[str, Any] | None = None,
) -> Rendered:
    """Render against the built-in sample profile and event (a cart with items, an order) —
    how templates are reviewed, and validated before a flow or campaign uses them."""
    context = RenderContext(
        profile=SAMPLE_PROFILE if profile is None else profile,
        event=SAMPLE_EVENT if event is None else event,
        workspace={**SAMPLE_WORKSPACE, **(workspace or {})},
        products=SAMPLE_PRODUCTS,
        unsubscribe_url="https://example.com/l/u/sample",
        preferences_url="https://example.com/l/p/sample",
        message_id="00000000-0000-0000-0000-000000000000",
    )
    return render(template, context)


# The profile's own fields as templates see them (`profile_context`); anything else a template
# reads of the profile comes from its `properties`.
PROFILE_FIELDS = frozenset(
    {
        "id", "external_id", "email", "phone", "first_name", "last_name", "full_name",
        "timezone", "locale", "country", "region", "city", "postal_code",
    }
)  # fmt: skip


def reads_properties(template: TemplateSource) -> bool:
    """Whether rendering `template` may read the profile's `properties` (a property by name, the
    profile as a whole, a computed key): when not, the send path does not load them."""
    if shared_links(template) is not None:
        return False
    fields = profile_fields_used(template)
    return fields is None or not fields <= PROFILE_FIELDS


def profile_context(profile: Profile) -> dict[str, Any]:
    """A profile as templates see it: reserved fields, `properties`, and each property at the
    top level unless a reserved field has its name."""
    reserved = {
        "id": str(profile.id),
        "external_id": profile.external_id,
        "email": profile.email,
        "phone": profile.phone,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "full_name": " ".join(p for p in (profile.first_name, profile.last_name) if p) or None,
        "timezone": profile.timezone,
        "locale": profile.locale,
        "country": profile.country,
        "region": profile.region,
        "city": profile.city,
        "postal_code": profile.postal_code,
    }
    properties = dict(profile.properties or {})
    return {**properties, **reserved, "properties": properties}


def event_context(
    metric: str,
    properties: dict[str, Any],
    *,
    value: Any = None,
    currency: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """An event as templates see it: its properties at the top level, plus the fields."""
    fields = {
        "metric": metric,
        "value": value,
        "currency": currency,
        "occurred_at": occurred_at,
        "properties": properties,
    }
    return {**properties, **{k: v for k, v in fields.items() if v is not None}}


WORKSPACE_KEYS = ("locale", "currency", "url", "address", "logo_url", "support_email")


def workspace_context(workspace: Workspace) -> dict[str, Any]:
    """The workspace as templates see it: name, timezone and public settings that are set."""
    settings = workspace.settings or {}
    public = {k: settings[k] for k in WORKSPACE_KEYS if settings.get(k) is not None}
    return {
        "id": str(workspace.id),
        "name": workspace.name,
        "timezone": workspace.timezone,
    } | public


# --- the sample data templates are reviewed and validated against ---------------------------

_ITEMS = [
    {
        "product_id": "sku-1001",
        "sku": "TEE-BLK-M",
        "name": "Organic cotton T-shirt",
        "variant": "Black / M",
        "quantity": 2,
        "price": 24.5,
        "url": "https://shop.example.com/products/organic-tee",
        "image_url": "https://shop.example.com/images/organic-tee.jpg",
        "categories": ["T-shirts"],
    },
    {
        "product_id": "sku-2002",
        "sku": "MUG-WHT",
        "name": "Stoneware mug",
        "variant": "White",
        "quantity": 1,
        "price": 18.0,
        "url": "https://shop.example.com/products/stoneware-mug",
        "image_url": "https://shop.example.com/images/stoneware-mug.jpg",
        "categories": ["Kitchen"],
    },
]
SAMPLE_PROFILE: dict[str, Any] = {
    "id": "00000000-0000-0000-0000-000000000001",
    "external_id": "customer-1",
    "email": "ada@example.com",
    "phone": "+48600100200",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "full_name": "Ada Lovelace",
    "timezone": "Europe/Warsaw",
    "locale": "en-US",
    "country": "PL",
    "region": None,
    "city": "Warsaw",
    "postal_code": "00-001",
    "properties": {},
}
SAMPLE_EVENT: dict[str, Any] = event_context(
    "Started Checkout",
    {
        "items": _ITEMS,
        "item_count": 3,
        "subtotal": 67.0,
        "total": 67.0,
        "checkout_url": "https://shop.example.com/checkout/recover/abc123",
        "cart_url": "https://shop.example.com/cart",
        "order_id": "1001",
        "discount_code": "WELCOME10",
    },
    value=67.0,
    currency="USD",
    occurred_at=datetime(2026, 1, 5, 14, 30, tzinfo=UTC),
)
SAMPLE_PRODUCTS: list[dict[str, Any]] = [
    {k: v for k, v in item.items() if k not in ("quantity", "variant")} for item in _ITEMS
]
SAMPLE_WORKSPACE: dict[str, Any] = {
    "id": "00000000-0000-0000-0000-000000000002",
    "name": "Sample shop",
    "timezone": "UTC",
    "url": "https://shop.example.com",
}
