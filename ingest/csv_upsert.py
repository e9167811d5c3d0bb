"""One chunk of an import, set-based: staged rows (COPY) → profiles, consents, list, errors.

A row matches a profile by external_id, else email (case-insensitive), else phone; a row whose
identifiers name two different profiles fails. Rows of a chunk that repeat an identifier of an
earlier row go in a later pass, so the earlier row's profile exists when they are matched.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ingest.consents import apply_consent_statement, consent_statement
from ingest.csv_rows import CONSENT_COLUMNS, COPY_COLUMNS
from ingest.lists import add_statement
from ingest.profiles import profiles_changed
from models import Channel, ConsentSource
from models.base import utcnow

MAX_PASSES = 50
SOURCE = "import"
_CHUNK = "job_id = :job AND row_no BETWEEN :lo AND :hi"
_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "timezone", "locale")
_FIELDS += ("country", "region", "city", "postal_code", "latitude", "longitude")

_R = ", ".join(f"r.{f}" for f in _FIELDS)
# An email matched case-insensitively keeps the spelling the profile has.
_SETS = {f: f"coalesce(r.{f}, p.{f})" for f in _FIELDS}
_SETS["email"] = "CASE WHEN lower(r.email) = lower(p.email) THEN p.email ELSE _SET_ END"
_SETS["email"] = _SETS["email"].replace("_SET_", "coalesce(r.email, p.email)")
_CHANGES = {f: f"r.{f} IS DISTINCT FROM p.{f}" for f in _FIELDS}
_CHANGES["email"] = "lower(r.email) IS DISTINCT FROM lower(p.email)"
_DIFFERS = " OR ".join(f"(r.{f} IS NOT NULL AND {change})" for f, change in _CHANGES.items())

# Staged rows of earlier chunks of the job that have not committed yet (see `upsert_chunk`).
_EARLIER = "e.job_id = :job AND e.row_no < :before"
# One pass, one statement: the pending rows that repeat no identifier of an earlier pending
# row (nor of an earlier chunk still in flight) are matched, then inserted (a fresh id each) or
# used to update their profile, and marked with the outcome; the rest stay pending for the next
# pass. A new row whose insert did nothing lost a race with another writer (same email, say):
# it stays pending and is matched again in the next pass, whose statement sees that writer's
# profile. Returns how many rows are left pending and how many this pass settled.
_PASS = text(
    f"""
    WITH pending AS (
        SELECT row_no, external_id, lower(email) AS email_key, phone,
            CASE WHEN external_id IS NULL THEN 1
                 ELSE row_number() OVER (PARTITION BY external_id ORDER BY row_no) END AS ox,
            CASE WHEN email IS NULL THEN 1
                 ELSE row_number() OVER (PARTITION BY lower(email) ORDER BY row_no) END AS oe,
            CASE WHEN phone IS NULL THEN 1
                 ELSE row_number() OVER (PARTITION BY phone ORDER BY row_no) END AS op,
            coalesce(external_id IN (SELECT e.external_id FROM import_rows e
                                     WHERE {_EARLIER} AND e.external_id IS NOT NULL), false)
            OR coalesce(lower(email) IN (SELECT lower(e.email) FROM import_rows e
                                         WHERE {_EARLIER} AND e.email IS NOT NULL), false)
            OR coalesce(phone IN (SELECT e.phone FROM import_rows e
                                  WHERE {_EARLIER} AND e.phone IS NOT NULL), false) AS blocked
        FROM import_rows WHERE {_CHUNK} AND status = 'pending'
    ), found AS MATERIALIZED (  -- each lookup once, not once per use
        SELECT pe.row_no, pe.external_id,
            (SELECT id FROM profiles p
             WHERE p.workspace_id = :ws AND p.external_id = pe.external_id) AS by_ext,
            (SELECT id FROM profiles p
             WHERE p.workspace_id = :ws AND lower(p.email) = pe.email_key) AS by_email,
            (SELECT id FROM profiles p
             WHERE p.workspace_id = :ws AND p.phone = pe.phone) AS by_phone
        FROM pending pe WHERE ox = 1 AND oe = 1 AND op = 1 AND NOT blocked
    ), matched AS (
        SELECT f.*, coalesce(by_ext, by_email, by_phone) AS pid,
            coalesce(by_email <> coalesce(by_ext, by_email), false)
            OR coalesce(by_phone <> coalesce(by_ext, by_email, by_phone), false) AS conflict
        FROM found f
    ), judged AS (
        SELECT m.*,
            CASE WHEN NOT conflict AND by_ext IS NULL AND m.external_id IS NOT NULL
                 THEN (SELECT p.external_id FROM profiles p WHERE p.id = m.pid) END AS other_ext,
            CASE WHEN pid IS NULL OR conflict THEN 1
                 ELSE row_number() OVER (PARTITION BY pid ORDER BY row_no) END AS nth
        FROM matched m
    ), picked AS MATERIALIZED (
        SELECT row_no, pid, conflict, other_ext, by_ext, by_email, by_phone,
            conflict OR other_ext IS NOT NULL AS bad,
            CASE WHEN pid IS NULL THEN gen_random_uuid() END AS new_id
        FROM judged WHERE nth = 1
    ), inserted AS (
        INSERT INTO profiles (id, workspace_id, {", ".join(_FIELDS)}, properties)
        SELECT k.new_id, :ws, {_R}, r.properties
        FROM picked k JOIN import_rows r ON r.job_id = :job AND r.row_no = k.row_no
        WHERE k.new_id IS NOT NULL
        ON CONFLICT DO NOTHING
        RETURNING id
    ), updated AS (
        UPDATE profiles p SET
            {", ".join(f"{f} = {expr}" for f, expr in _SETS.items())},
            properties = p.properties || r.properties,
            updated_at = now()
        FROM picked k JOIN import_rows r ON r.job_id = :job AND r.row_no = k.row_no
        WHERE k.pid IS NOT NULL AND NOT k.bad AND p.id = k.pid AND p.workspace_id = :ws
          AND ({_DIFFERS} OR NOT p.properties @> r.properties)
        RETURNING p.id
    ), marked AS (
        UPDATE import_rows r SET
            status = CASE WHEN k.bad THEN 'failed'
                          WHEN k.new_id IS NULL AND k.pid IN (SELECT id FROM updated) THEN 'updated'
                          WHEN k.new_id IS NULL THEN 'unchanged'
                          WHEN k.new_id IN (SELECT id FROM inserted) THEN 'created'
                          ELSE 'pending' END,
            profile_id = coalesce(k.pid, k.new_id)
        FROM picked k
        WHERE r.job_id = :job AND r.row_no = k.row_no
        RETURNING r.status
    ), errors AS (
        INSERT INTO import_row_errors (job_id, row_no, "column", value, reason)
        SELECT :job, row_no,
            CASE WHEN conflict THEN concat_ws(', ',
                CASE WHEN by_ext IS NOT NULL THEN 'external_id' END,
                CASE WHEN by_email IS NOT NULL THEN 'email' END,
                CASE WHEN by_phone IS NOT NULL THEN 'phone' END) ELSE 'external_id' END,
            CASE WHEN conflict THEN NULL ELSE other_ext END,
            CASE WHEN conflict THEN 'these identifiers belong to different existing profiles'
                 ELSE 'the profile with this email/phone has another external_id (the value)' END
        FROM picked WHERE bad
    )
    SELECT (SELECT count(*) FROM pending) - done.n AS pending, done.n AS done
    FROM (SELECT count(*) AS n FROM marked WHERE status <> 'pending') AS done
    """
)

_GIVE_UP = text(
    f"""
    WITH failed AS (
        UPDATE import_rows SET status = 'failed' WHERE {_CHUNK} AND status = 'pending'
        RETURNING row_no
    )
    INSERT INTO import_row_errors (job_id, row_no, "column", reason)
    SELECT :job, row_no, 'email, phone, external_id',
        'more than {MAX_PASSES} rows of the file share this identifier' FROM failed
    """
)
_IMPORTED = "r.status IN ('created', 'updated', 'unchanged')"
# `:late` (rows settled after waiting for the previous chunk), or every row when NULL.
_STAGED = f"r.job_id = :job AND r.row_no BETWEEN :lo AND :hi AND {_IMPORTED}"
_STAGED += " AND (CAST(:late AS int[]) IS NULL OR r.row_no = ANY(CAST(:late AS int[])))"
CHANNELS = tuple(Channel(c.removesuffix("_consent")) for c in CONSENT_COLUMNS)
# Consents and list membership straight from the staging table, through the one definition of
# each (ingest.consents, ingest.lists); a later row of the file wins (n = row_no).
_BY_CHANNEL = ", ".join(
    f"('{ch.value}', r.{col})" for ch, col in zip(CHANNELS, CONSENT_COLUMNS, strict=True)
)
_CONSENTS = consent_statement(
    f"""
    SELECT r.profile_id, c.channel, c.state, '{ConsentSource.import_.value}',
        CAST(:now AS timestamptz), r.row_no
    FROM import_rows r CROSS JOIN LATERAL (VALUES {_BY_CHANNEL}) AS c(channel, state)
    WHERE {_STAGED} AND c.state IS NOT NULL
    """
)
_MEMBERS = add_statement(
    f"SELECT r.profile_id FROM import_rows r WHERE {_STAGED}", "SELECT count(*) FROM joined"
)
_LATE = text(f"SELECT row_no FROM import_rows WHERE {_CHUNK} AND status = 'pending'")
_COUNTS = text(f"SELECT status, count(*) FROM import_rows WHERE {_CHUNK} GROUP BY status")
_CLEAR = text(f"DELETE FROM import_rows WHERE {_CHUNK}")
_IMPORTED = text(
    f"SELECT DISTINCT profile_id FROM import_rows WHERE {_CHUNK} "
    "AND status <> 'failed' AND profile_id IS NOT NULL"
)
_DROP_ROWS = text(
    "DELETE FROM import_rows WHERE job_id = :job AND row_no = ANY(CAST(:rows AS int[]))"
)


# Seconds spent per phase, summed over chunks and connections (the benchmark prints them).
PHASES: defaultdict[str, float] = defaultdict(float)


@contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        PHASES[name] += time.perf_counter() - start


@dataclass
class ChunkCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    consents_changed: int = 0
    joined_list: int = 0


async def stage_rows(conn: AsyncConnection, data: bytes) -> None:
    """Stream validated rows (COPY text format) into the staging table."""
    if data:
        raw = await conn.get_raw_connection()
        async with raw.driver_connection.cursor() as cursor:
            async with cursor.copy(f"COPY import_rows ({', '.join(COPY_COLUMNS)}) FROM STDIN") as c:
                await c.write(data)


async def copy_errors(session: AsyncSession, errors: list[tuple]) -> None:
    """Per-row errors (job, row, column, value, reason) into the job's report."""
    if errors:
        raw = await (await session.connection()).get_raw_connection()
        async with raw.driver_connection.cursor() as cursor:
            sql = 'COPY import_row_errors (job_id, row_no, "column", value, reason) FROM STDIN'
            async with cursor.copy(sql) as c:
                for row in errors:
                    await c.write_row(row)


async def drop_rows(session: AsyncSession, job_id: uuid.UUID, rows: list[int]) -> None:
    await session.execute(_DROP_ROWS, {"job": job_id, "rows": rows})


async def upsert_chunk(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    job_id: uuid.UUID,
    lo: int,
    hi: int,
    list_id: uuid.UUID | None,
    earlier: Callable[[], Awaitable[None]] | None = None,
) -> ChunkCounts:
    """Rows lo..hi of the job, already staged: into profiles, consents and the list.

    With `earlier` (awaited until the previous chunk of the job has committed), rows sharing an
    identifier with a row of an earlier chunk still staged wait for it, and so do the rows after
    them with one of their identifiers: every row sees the profiles the rows above it made."""
    params = {"job": job_id, "ws": workspace_id, "lo": lo, "hi": hi, "late": None}
    counts = ChunkCounts()
    passes = 0

    async def settle(before: int, left: int) -> int:
        """Passes until no row is left (or, with `before`, none settles); rows left."""
        nonlocal passes
        with phase("profiles (match, insert, update)"):
            while left and passes < MAX_PASSES:
                passes += 1
                left, done = (await session.execute(_PASS, {**params, "before": before})).one()
                if before and not done:
                    break
        return left

    async def consents_and_list() -> None:
        with phase("consents"):
            counts.consents_changed += await apply_consent_statement(
                session, _CONSENTS, workspace_id, {**params, "now": utcnow()}
            )
        if list_id is not None:
            with phase("list members"):
                joined = await session.execute(
                    _MEMBERS, {**params, "list": list_id, "source": SOURCE}
                )
                counts.joined_list += joined.scalar_one()

    left = await settle(lo if earlier is not None else 0, hi - lo + 1)
    await consents_and_list()
    if earlier is not None:
        with phase("wait for the previous chunk"):
            await earlier()
        if left:
            params["late"] = list((await session.execute(_LATE, params)).scalars())
            left = await settle(0, left)
            await consents_and_list()
    if left:
        await session.execute(_GIVE_UP, params)
    with phase("count and clear staging"):
        by_status = Counter(dict((await session.execute(_COUNTS, params)).all()))
        counts.created, counts.updated = by_status["created"], by_status["updated"]
        counts.unchanged, counts.failed = by_status["unchanged"], by_status["failed"]
    with phase("segments"):
        # Fields, consents and list membership of these profiles may all have changed.
        imported = list((await session.execute(_IMPORTED, params)).scalars())
        await profiles_changed(session, workspace_id, imported, new=True)
    with phase("count and clear staging"):
        await session.execute(_CLEAR, params)
    return counts
