"""One chunk of an import, set-based: staged rows (COPY) → profiles, consents, list, errors.

A row matches a profile by external_id, else email (case-insensitive), else phone; a row whose
identifiers name two different profiles fails. Rows of a chunk that repeat an identifier of an
earlier row go in a later pass, so the earlier row's profile exists when they are matched.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.consents import ConsentUpdate, apply_consents
from ingest.csv_rows import CONSENT_COLUMNS, COPY_COLUMNS
from ingest.lists import add_members
from models import Channel, ConsentSource

MAX_PASSES = 50
SOURCE = "import"
_CHUNK = "job_id = :job AND row_no BETWEEN :lo AND :hi"
_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "timezone", "locale")
_FIELDS += ("country", "region", "city", "postal_code", "latitude", "longitude")

_RESOLVE = text(
    f"""
    WITH pending AS (
        SELECT row_no, external_id, lower(email) AS email_key, phone,
            CASE WHEN external_id IS NULL THEN 1
                 ELSE row_number() OVER (PARTITION BY external_id ORDER BY row_no) END AS ox,
            CASE WHEN email IS NULL THEN 1
                 ELSE row_number() OVER (PARTITION BY lower(email) ORDER BY row_no) END AS oe,
            CASE WHEN phone IS NULL THEN 1
                 ELSE row_number() OVER (PARTITION BY phone ORDER BY row_no) END AS op
        FROM import_rows WHERE {_CHUNK} AND status = 'pending'
    ), found AS MATERIALIZED (  -- each lookup once, not once per use
        SELECT pe.row_no, pe.external_id,
            (SELECT id FROM profiles p
             WHERE p.workspace_id = :ws AND p.external_id = pe.external_id) AS by_ext,
            (SELECT id FROM profiles p
             WHERE p.workspace_id = :ws AND lower(p.email) = pe.email_key) AS by_email,
            (SELECT id FROM profiles p
             WHERE p.workspace_id = :ws AND p.phone = pe.phone) AS by_phone
        FROM pending pe WHERE ox = 1 AND oe = 1 AND op = 1
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
    ), marked AS (
        UPDATE import_rows r SET
            status = CASE WHEN j.conflict OR j.other_ext IS NOT NULL THEN 'failed'
                          WHEN j.pid IS NULL THEN 'new' ELSE 'matched' END,
            profile_id = coalesce(j.pid, gen_random_uuid())
        FROM judged j
        WHERE r.job_id = :job AND r.row_no = j.row_no AND j.nth = 1
        RETURNING r.row_no, j.conflict, j.other_ext, j.by_ext, j.by_email, j.by_phone
    )
    INSERT INTO import_row_errors (job_id, row_no, "column", value, reason)
    SELECT :job, row_no,
        CASE WHEN conflict THEN concat_ws(', ',
            CASE WHEN by_ext IS NOT NULL THEN 'external_id' END,
            CASE WHEN by_email IS NOT NULL THEN 'email' END,
            CASE WHEN by_phone IS NOT NULL THEN 'phone' END) ELSE 'external_id' END,
        CASE WHEN conflict THEN NULL ELSE other_ext END,
        CASE WHEN conflict THEN 'these identifiers belong to different existing profiles'
             ELSE 'the profile with this email/phone has another external_id (the value)' END
    FROM marked WHERE conflict OR other_ext IS NOT NULL
    """
)

_INSERT = text(
    f"""
    INSERT INTO profiles (id, workspace_id, {", ".join(_FIELDS)}, properties)
    SELECT profile_id, :ws, {", ".join(_FIELDS)}, properties
    FROM import_rows WHERE {_CHUNK} AND status = 'new'
    ON CONFLICT DO NOTHING
    """
)
# New rows carry fresh profile ids: a row whose profile exists now was inserted; one that lost a
# race with another writer (same email, say) is matched again in the next pass. The lookups
# are by primary key, so no plan depends on how many rows the planner expects.
_CREATED = text(
    f"""
    UPDATE import_rows r SET status = CASE
        WHEN EXISTS (SELECT 1 FROM profiles p WHERE p.id = r.profile_id) THEN 'created'
        ELSE 'pending' END
    WHERE {_CHUNK} AND status = 'new'
    """
)

# An email matched case-insensitively keeps the spelling the profile has.
_SETS = {f: f"coalesce(r.{f}, p.{f})" for f in _FIELDS}
_SETS["email"] = "CASE WHEN lower(r.email) = lower(p.email) THEN p.email ELSE _SET_ END"
_SETS["email"] = _SETS["email"].replace("_SET_", "coalesce(r.email, p.email)")
_CHANGES = {f: f"r.{f} IS DISTINCT FROM p.{f}" for f in _FIELDS}
_CHANGES["email"] = "lower(r.email) IS DISTINCT FROM lower(p.email)"
_DIFFERS = " OR ".join(f"(r.{f} IS NOT NULL AND {change})" for f, change in _CHANGES.items())
_UPDATE = text(
    f"""
    WITH changed AS (
        UPDATE profiles p SET
            {", ".join(f"{f} = {expr}" for f, expr in _SETS.items())},
            properties = p.properties || r.properties,
            updated_at = now()
        FROM import_rows r
        WHERE r.job_id = :job AND r.row_no BETWEEN :lo AND :hi AND r.status = 'matched'
          AND p.id = r.profile_id
          AND p.workspace_id = :ws AND ({_DIFFERS} OR NOT p.properties @> r.properties)
        RETURNING r.row_no
    )
    UPDATE import_rows SET status = 'updated'
    WHERE job_id = :job AND row_no IN (SELECT row_no FROM changed)
    """
)
_UNCHANGED = text(
    f"UPDATE import_rows SET status = 'unchanged' WHERE {_CHUNK} AND status = 'matched'"
)

_PENDING = text(f"SELECT count(*) FROM import_rows WHERE {_CHUNK} AND status = 'pending'")
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
_IMPORTED = "status IN ('created', 'updated', 'unchanged')"
_CONSENTS = text(
    f"""
    SELECT profile_id, {", ".join(CONSENT_COLUMNS)} FROM import_rows
    WHERE {_CHUNK} AND {_IMPORTED}
      AND ({" OR ".join(f"{c} IS NOT NULL" for c in CONSENT_COLUMNS)})
    ORDER BY row_no
    """
)
_MEMBERS = text(f"SELECT DISTINCT profile_id FROM import_rows WHERE {_CHUNK} AND {_IMPORTED}")
_COUNTS = text(f"SELECT status, count(*) FROM import_rows WHERE {_CHUNK} GROUP BY status")
_CLEAR = text(f"DELETE FROM import_rows WHERE {_CHUNK}")
_DROP_ROWS = text(
    "DELETE FROM import_rows WHERE job_id = :job AND row_no = ANY(CAST(:rows AS int[]))"
)


@dataclass
class ChunkCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    consents_changed: int = 0
    joined_list: int = 0


async def copy_rows(session: AsyncSession, data: bytes, errors: list[tuple]) -> None:
    """Stream validated rows (COPY text format) and per-row errors into the staging tables."""
    raw = await (await session.connection()).get_raw_connection()
    async with raw.driver_connection.cursor() as cursor:
        if data:
            async with cursor.copy(f"COPY import_rows ({', '.join(COPY_COLUMNS)}) FROM STDIN") as c:
                await c.write(data)
        if errors:
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
) -> ChunkCounts:
    """Rows lo..hi of the job, already staged: into profiles, consents and the list."""
    params = {"job": job_id, "ws": workspace_id, "lo": lo, "hi": hi}
    # The staging table is filled and emptied chunk by chunk: without fresh statistics the
    # planner may take the chunk for a few rows and join it to itself in a nested loop.
    await session.execute(text("ANALYZE import_rows"))
    for _ in range(MAX_PASSES):
        await session.execute(_RESOLVE, params)
        await session.execute(_INSERT, params)
        await session.execute(_CREATED, params)
        await session.execute(_UPDATE, params)
        await session.execute(_UNCHANGED, params)
        if not (await session.execute(_PENDING, params)).scalar_one():
            break
    else:
        await session.execute(_GIVE_UP, params)
    counts = ChunkCounts()
    updates = [
        ConsentUpdate(pid, channel, state, ConsentSource.import_)
        for pid, *states in await session.execute(_CONSENTS, params)
        for channel, state in zip(CHANNELS, states, strict=True)
        if state is not None
    ]
    counts.consents_changed = await apply_consents(session, workspace_id, updates)
    if list_id is not None:
        members = list((await session.execute(_MEMBERS, params)).scalars())
        counts.joined_list = len(await add_members(session, workspace_id, list_id, members, SOURCE))
    by_status = Counter(dict((await session.execute(_COUNTS, params)).all()))
    counts.created, counts.updated = by_status["created"], by_status["updated"]
    counts.unchanged, counts.failed = by_status["unchanged"], by_status["failed"]
    await session.execute(_CLEAR, params)
    return counts


CHANNELS = tuple(Channel(c.removesuffix("_consent")) for c in CONSENT_COLUMNS)
