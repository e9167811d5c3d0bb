"""CSV rows to profile rows: column mapping, per-row validation (ingest.traits), COPY encoding.

Pure functions with no database: `validate_chunk` runs in worker processes, so a chunk of rows
is validated in parallel with the database work of the previous one. Row numbers are the
spreadsheet's: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ingest.traits import ALIASES, RESERVED, normalize_profile, property_type

CONSENT_COLUMNS = ("email_consent", "sms_consent", "whatsapp_consent", "push_consent")
EXTERNAL_ID_ALIASES = frozenset({"external_id", "externalid", "user_id", "userid", "customer_id"})
TARGETS = frozenset(RESERVED) | {"external_id"} | set(CONSENT_COLUMNS)
# The staging table's columns, in COPY order (see models.imports.ImportRow).
COPY_COLUMNS = ("job_id", "row_no", "external_id") + RESERVED + ("properties",) + CONSENT_COLUMNS
CONSENT_VALUES = {
    "subscribed": "subscribed",
    "unsubscribed": "unsubscribed",
    "never": "never",
    **dict.fromkeys(("true", "yes", "y", "1"), "subscribed"),
    **dict.fromkeys(("false", "no", "n", "0"), "unsubscribed"),
}
_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, a mapping that names no column, ...)."""


@dataclass
class ImportOptions:
    """How to read a file: `mapping` CSV header → field (reserved field, external_id, a consent
    column, or any other name: a custom property), `skip` headers, `default_country` for
    phones without a country prefix on rows without a country."""

    mapping: dict[str, str] = field(default_factory=dict)
    skip: list[str] = field(default_factory=list)
    default_country: str | None = None


@dataclass(frozen=True)
class Column:
    index: int
    header: str
    kind: str  # reserved | external_id | consent | property
    name: str


@dataclass(frozen=True)
class Plan:
    """The mapped columns of one file; picklable, handed to worker processes."""

    job_id: uuid.UUID
    columns: tuple[Column, ...]
    width: int
    default_country: str | None = None

    def header_of(self, name: str) -> str:
        return next((c.header for c in self.columns if c.name == name), name)


@dataclass
class ChunkResult:
    first_row: int
    last_row: int
    copy_data: bytes  # valid rows, COPY text format, in COPY_COLUMNS order
    errors: list[tuple[int, str, str | None, str]]  # row, column, value, reason
    failed: int
    # property → type → (a sample value, rows holding that type)
    property_types: dict[str, dict[str, tuple[Any, list[int]]]]


def _target(header: str) -> str:
    name = ALIASES.get(header, header)
    if name in TARGETS:
        return name
    key = re.sub(r"[\s\-]+", "_", header.strip().lower())
    if key in EXTERNAL_ID_ALIASES:
        return "external_id"
    key = ALIASES.get(key, key)
    return key if key in TARGETS else header


def build_plan(job_id: uuid.UUID, headers: list[str], options: ImportOptions) -> Plan:
    headers = [h.strip() for h in headers]
    unknown = (set(options.mapping) | set(options.skip)) - set(headers)
    if unknown:
        raise ImportFileError(f"no column named {', '.join(sorted(unknown))} in the file header")
    columns, seen = [], {}
    for index, header in enumerate(headers):
        if not header or header in options.skip:
            continue
        name = options.mapping.get(header) or _target(header)
        kind = (
            "reserved"
            if name in RESERVED
            else "external_id"
            if name == "external_id"
            else "consent"
            if name in CONSENT_COLUMNS
            else "property"
        )
        if name in seen:
            raise ImportFileError(
                f"columns {seen[name]!r} and {header!r} both map to {name!r}: "
                "map or skip one of them"
            )
        seen[name] = header
        columns.append(Column(index, header, kind, name))
    if not {"email", "phone", "external_id"} & set(seen):
        raise ImportFileError("the file needs an email, phone or external_id column")
    country = options.default_country.upper() if options.default_country else None
    return Plan(job_id, tuple(columns), len(headers), country)


def infer(value: str) -> Any:
    """A CSV cell as a typed property value: numbers, booleans; dates stay ISO strings."""
    lower = value.lower()
    if lower in ("true", "false"):
        return lower == "true"
    if _NUMBER.match(value):
        number = float(value) if ("." in value or "e" in lower) else int(value)
        if isinstance(number, int) or math.isfinite(number):
            return number
    return value


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    return str(value).translate(_ESCAPES)


def validate_row(plan: Plan, row_no: int, cells: list[str]):
    """(COPY line or None, errors) for one CSV row."""
    if len(cells) > plan.width:
        return None, [(row_no, "*", None, f"{len(cells)} fields, the header has {plan.width}")]
    data: dict[str, Any] = {}
    extra: dict[str, str] = {}
    errors = []
    for col in plan.columns:
        value = cells[col.index].strip() if col.index < len(cells) else ""
        if not value:
            continue
        if col.kind == "reserved":
            data[col.name] = value
        elif col.kind == "property":
            data[col.name] = infer(value)
        elif col.kind == "external_id":
            if len(value) > 255:
                errors.append((row_no, col.header, value[:100], "at most 255 characters"))
            extra[col.name] = value
        elif (state := CONSENT_VALUES.get(value.lower())) is None:
            reason = "use subscribed, unsubscribed or never (or yes/no, true/false, 1/0)"
            errors.append((row_no, col.header, value[:100], reason))
        else:
            extra[col.name] = state
    norm = normalize_profile(data, default_country=plan.default_country)
    for err in norm.errors:
        header = plan.header_of(err.field)
        value = data.get(err.field)
        errors.append((row_no, header, None if value is None else str(value)[:100], err.message))
    if not (norm.reserved.get("email") or norm.reserved.get("phone") or extra.get("external_id")):
        if not errors:
            errors.append((row_no, "*", None, "no email, phone or external_id"))
    if errors:
        return None, errors
    fields = [str(plan.job_id), str(row_no), extra.get("external_id")]
    fields += [norm.reserved.get(name) for name in RESERVED]
    props = {k: v for k, v in norm.properties.items() if v is not None}
    fields.append(json.dumps(props, ensure_ascii=False, separators=(",", ":")))
    fields += [extra.get(name) for name in CONSENT_COLUMNS]
    return "\t".join(_copy_text(v) for v in fields) + "\n", norm.properties


def validate_chunk(plan: Plan, first_row: int, rows: list[list[str]]) -> ChunkResult:
    """Validate a chunk of CSV rows (in a worker process)."""
    lines: list[str] = []
    errors: list[tuple[int, str, str | None, str]] = []
    types: dict[str, dict[str, tuple[Any, list[int]]]] = {}
    failed = 0
    for row_no, cells in enumerate(rows, start=first_row):
        line, info = validate_row(plan, row_no, cells)
        if line is None:
            failed += 1
            errors.extend(info)
            continue
        lines.append(line)
        for name, value in info.items():
            if value is not None:
                by_type = types.setdefault(name, {})
                kind = property_type(value).value
                if kind not in by_type:
                    by_type[kind] = (value, [])
                by_type[kind][1].append(row_no)
    return ChunkResult(
        first_row=first_row,
        last_row=first_row + len(rows) - 1,
        copy_data="".join(lines).encode(),
        errors=errors,
        failed=failed,
        property_types=types,
    )


def type_variants(types: dict[str, dict[str, tuple[Any, list[int]]]]) -> list[dict[str, Any]]:
    """Sample values to check with `check_property_types`: one dict per round, the most common
    type of each property first (so a new property is fixed to the type most rows have)."""
    rounds: list[dict[str, Any]] = []
    for name, by_type in types.items():
        ranked = Counter({kind: len(rows) for kind, (_, rows) in by_type.items()}).most_common()
        for i, (kind, _) in enumerate(ranked):
            if len(rounds) <= i:
                rounds.append({})
            rounds[i][name] = by_type[kind][0]
    return rounds
