"""Profile fields and typed custom properties: one validation for the REST API, tracking and import.

`normalize_profile(data)` splits what a caller sent into reserved fields (validated and normalized:
email, E.164 phone, IANA timezone, ISO country, ...) and custom properties (each typed).
`check_property_types` then holds the custom properties to the types the workspace has fixed:
a property's type is set by the first value ever stored for it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from models import PropertyType

MAX_PROPERTIES = 400
MAX_STRING_BYTES = 100 * 1024
MAX_PROPERTY_NAME = 255

RESERVED = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "timezone",
    "locale",
    "country",
    "region",
    "city",
    "postal_code",
    "latitude",
    "longitude",
)
# Segment's spec trait names (and common spellings) for the reserved fields.
ALIASES = {
    "firstName": "first_name",
    "lastName": "last_name",
    "postalCode": "postal_code",
    "zip": "postal_code",
    "state": "region",
    "phone_number": "phone",
    "$email": "email",
    "$phone_number": "phone",
}
# Segment's `address` object.
ADDRESS_FIELDS = {
    "city": "city",
    "country": "country",
    "postalCode": "postal_code",
    "state": "region",
}

_TIMEZONES = frozenset(available_timezones())
_COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS) | {"AQ", "BV", "GS", "HM", "PN", "TF", "UM"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


@dataclass
class FieldError:
    field: str
    message: str


@dataclass
class NormalizedProfile:
    reserved: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class ProfileDataError(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class ProfileConflictError(ProfileDataError):
    """An identifier (email, phone, external id) already belongs to another profile."""


def normalize_email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def normalize_phone(value: Any, default_region: str | None = None) -> str:
    if not isinstance(value, str | int):
        raise ValueError("must be a string")
    try:
        number = phonenumbers.parse(str(value), default_region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if default_region else " (give it in +E.164 form, or set the profile's country)"
        raise ValueError(f"not a phone number: {exc}{hint}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_timezone(value: Any) -> str:
    if not isinstance(value, str) or value not in _TIMEZONES:
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Warsaw)")
    return value


def normalize_country(value: Any) -> str:
    if not isinstance(value, str) or value.strip().upper() not in _COUNTRIES:
        raise ValueError(f"not an ISO 3166-1 alpha-2 country code: {value!r} (e.g. PL)")
    return value.strip().upper()


def normalize_locale(value: Any) -> str:
    if not isinstance(value, str) or not _LOCALE.match(value):
        raise ValueError(f"not a locale: {value!r} (e.g. pl-PL)")
    return value.replace("_", "-")


def _coordinate(limit: float):
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("must be a number")
        try:
            number = float(value)
        except ValueError:
            raise ValueError("must be a number") from None
        if not -limit <= number <= limit:
            raise ValueError(f"must be between -{limit:g} and {limit:g}")
        return number

    return check


def _short_text(limit: int):
    def check(value: Any) -> str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("must be a string")
        value = str(value).strip()
        if len(value) > limit:
            raise ValueError(f"at most {limit} characters")
        return value

    return check


_CHECKS = {
    "email": normalize_email,
    "timezone": normalize_timezone,
    "country": normalize_country,
    "locale": normalize_locale,
    "first_name": _short_text(255),
    "last_name": _short_text(255),
    "region": _short_text(255),
    "city": _short_text(255),
    "postal_code": _short_text(32),
    "latitude": _coordinate(90),
    "longitude": _coordinate(180),
}


def property_type(value: Any) -> PropertyType:
    """The type of a custom property value, as stored in JSON."""
    if isinstance(value, bool):
        return PropertyType.boolean
    if isinstance(value, int | float):
        return PropertyType.number
    if isinstance(value, str):
        if _DATE.match(value):
            return PropertyType.date
        if _DATETIME.match(value):
            return PropertyType.datetime
        return PropertyType.string
    if isinstance(value, list):
        return PropertyType.list
    if isinstance(value, dict):
        return PropertyType.object
    raise ValueError(f"unsupported value type {type(value).__name__}")


def _check_custom(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        if len(value.encode()) > MAX_STRING_BYTES:
            raise ValueError(f"string values are at most {MAX_STRING_BYTES // 1024} KB")
        if _DATE.match(value):
            date.fromisoformat(value)  # a real calendar date
        elif _DATETIME.match(value):
            datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, float) and value != value:  # NaN
        raise ValueError("NaN is not a number")
    property_type(value)
    return value


def normalize_profile(
    data: dict[str, Any], *, default_country: str | None = None
) -> NormalizedProfile:
    """Split and validate profile data. Keys that are None clear reserved fields (stay None)."""
    out = NormalizedProfile()
    flat = dict(data)
    address = flat.pop("address", None)
    if isinstance(address, dict):
        for key, target in ADDRESS_FIELDS.items():
            if key in address and target not in flat:
                flat[target] = address[key]
    elif address is not None:
        flat["address"] = address  # not Segment's object: an ordinary custom property
    for key, value in flat.items():
        name = ALIASES.get(key, key)
        if name in RESERVED:
            if value is None or value == "":
                out.reserved[name] = None
                continue
            if name == "phone":
                continue  # after country is known
            try:
                out.reserved[name] = _CHECKS[name](value)
            except ValueError as exc:
                out.errors.append(FieldError(key, str(exc)))
        else:
            if not key or len(key) > MAX_PROPERTY_NAME:
                out.errors.append(
                    FieldError(key[:40] or "(empty)", "property names are 1-255 characters")
                )
                continue
            if value is None:
                out.properties[key] = None  # removes the property
                continue
            try:
                out.properties[key] = _check_custom(key, value)
            except ValueError as exc:
                out.errors.append(FieldError(key, str(exc)))
    phone_key = next((k for k in flat if ALIASES.get(k, k) == "phone"), None)
    if phone_key is not None and flat[phone_key] not in (None, ""):
        region = out.reserved.get("country") or default_country
        try:
            out.reserved["phone"] = normalize_phone(flat[phone_key], region)
        except ValueError as exc:
            out.errors.append(FieldError(phone_key, str(exc)))
    if sum(1 for v in out.properties.values() if v is not None) > MAX_PROPERTIES:
        out.errors.append(FieldError("properties", f"at most {MAX_PROPERTIES} custom properties"))
    return out


async def check_property_types(
    session: AsyncSession, workspace_id: uuid.UUID, properties: dict[str, Any]
) -> list[FieldError]:
    """Fix the type of new properties and report values whose type differs from the fixed one.

    One statement for any number of properties; safe under concurrent writers.
    """
    typed = {k: property_type(v).value for k, v in properties.items() if v is not None}
    if not typed:
        return []
    names, types = list(typed), list(typed.values())
    await session.execute(
        text(
            "INSERT INTO property_definitions (workspace_id, name, type) "
            "SELECT :ws, n, t "
            "FROM unnest(CAST(:names AS text[]), CAST(:types AS text[])) AS x(n, t) "
            "ON CONFLICT DO NOTHING"
        ),
        {"ws": workspace_id, "names": names, "types": types},
    )
    rows = await session.execute(
        text(
            "SELECT name, type FROM property_definitions "
            "WHERE workspace_id = :ws AND name = ANY(CAST(:names AS text[]))"
        ),
        {"ws": workspace_id, "names": names},
    )
    return [
        FieldError(name, f"is a {fixed} property in this workspace, got a {typed[name]}")
        for name, fixed in rows
        if not _compatible(fixed, typed[name])
    ]


def _compatible(fixed: str, given: str) -> bool:
    # A datetime property accepts dates (midnight); a string property accepts date-like strings.
    return (
        fixed == given
        or (fixed == PropertyType.datetime and given == PropertyType.date)
        or (fixed == PropertyType.string and given in (PropertyType.date, PropertyType.datetime))
    )
