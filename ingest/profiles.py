"""Writing profile data: reserved fields and typed custom properties, and merging two profiles.

Used by the REST API (create / update), tracking `identify` and `alias`. Every write validates
through `ingest.traits` first, so a profile is never half-updated: `ProfileDataError` (naming each
bad field) is raised before anything is written.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.traits import (
    MAX_PROPERTIES,
    RESERVED,
    FieldError,
    ProfileConflictError,
    ProfileDataError,
    check_property_types,
    normalize_profile,
)

_UNIQUE_FIELDS = {
    "uq_profiles_email": "email",
    "uq_profiles_phone": "phone",
    "uq_profiles_external_id": "external_id",
}


def unique_violation(exc: IntegrityError) -> FieldError | None:
    """The field a unique-index violation was about, if it was one of a profile's identifiers."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if constraint in _UNIQUE_FIELDS:
        name = _UNIQUE_FIELDS[constraint]
        return FieldError(name, f"another profile in this workspace already has this {name}")
    return None


async def profiles_changed(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    profile_ids: list[uuid.UUID],
    *,
    new: bool = False,
    changed: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Keep segment membership current for profiles just created or changed (same transaction).

    `new` (a new or merged profile) re-checks every segment; else `changed` names what changed:
    field / property names, or "lists", "consents" (see `segments.updates`)."""
    from segments.updates import EVERYTHING, refresh_for_profiles  # segments build on ingest

    if profile_ids and (new or changed):
        await refresh_for_profiles(
            session, workspace_id, profile_ids, changed=set(EVERYTHING if new else changed)
        )


async def write_profile(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    data: dict[str, Any],
    *,
    profile_id: uuid.UUID | None = None,
    external_id: str | None = None,
) -> uuid.UUID:
    """Create a profile (no `profile_id`) or update one, from reserved fields and custom properties.

    Custom properties merge into the stored ones; a None value removes that property; a None
    reserved field clears it. Raises ProfileDataError on any invalid field, a property of the
    wrong type, an identifier taken by another profile, or more than 400 properties. Runs in a
    savepoint, so a failure leaves the caller's transaction usable and nothing written.
    """
    current_country = None
    if profile_id is not None:
        current_country = (
            await session.execute(
                text("SELECT country FROM profiles WHERE id = :id AND workspace_id = :ws"),
                {"id": profile_id, "ws": workspace_id},
            )
        ).scalar_one_or_none()
    normalized = normalize_profile(data, default_country=current_country)
    if normalized.errors:
        raise ProfileDataError(normalized.errors)
    set_props = {k: v for k, v in normalized.properties.items() if v is not None}
    removed = [k for k, v in normalized.properties.items() if v is None]
    reserved = dict(normalized.reserved)
    if external_id is not None:
        reserved["external_id"] = external_id
    try:
        async with session.begin_nested():
            type_errors = await check_property_types(session, workspace_id, set_props)
            if type_errors:
                raise ProfileDataError(type_errors)
            if profile_id is None:
                profile_id = await _insert(session, workspace_id, reserved, set_props)
                await profiles_changed(session, workspace_id, [profile_id], new=True)
            else:
                await _update(session, workspace_id, profile_id, reserved, set_props, removed)
                changed = {*reserved, *set_props, *removed}
                await profiles_changed(session, workspace_id, [profile_id], changed=changed)
    except IntegrityError as exc:
        error = unique_violation(exc)
        if error is None:
            raise
        raise ProfileConflictError([error]) from None
    return profile_id


async def _insert(
    session: AsyncSession, workspace_id: uuid.UUID, reserved: dict, props: dict
) -> uuid.UUID:
    columns = ["workspace_id", "properties", *reserved]
    values = [":ws", "CAST(:props AS jsonb)", *(f":{c}" for c in reserved)]
    return (
        await session.execute(
            text(
                f"INSERT INTO profiles (id, {', '.join(columns)}) "
                f"VALUES (gen_random_uuid(), {', '.join(values)}) RETURNING id"
            ),
            {"ws": workspace_id, "props": json.dumps(props), **reserved},
        )
    ).scalar_one()


async def _update(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    profile_id: uuid.UUID,
    reserved: dict,
    props: dict,
    removed: list[str],
) -> None:
    assignments = [f"{column} = :{column}" for column in reserved]
    row = (
        await session.execute(
            text(
                "UPDATE profiles SET "
                + ", ".join(
                    [
                        *assignments,
                        "properties = (properties || CAST(:props AS jsonb))"
                        " - CAST(:removed AS text[])",
                        "updated_at = now()",
                    ]
                )
                + " WHERE id = :id AND workspace_id = :ws "
                "RETURNING (SELECT count(*) FROM jsonb_object_keys(properties))"
            ),
            {
                "id": profile_id,
                "ws": workspace_id,
                "props": json.dumps(props),
                "removed": removed,
                **reserved,
            },
        )
    ).one_or_none()
    if row is None:
        raise LookupError(profile_id)
    if row[0] > MAX_PROPERTIES:
        raise ProfileDataError(
            [FieldError("properties", f"at most {MAX_PROPERTIES} custom properties per profile")]
        )


# Tables whose rows follow a profile when it is merged into another: its history included, so
# past entries, exits, joins and leaves stay counted (segment history charts read them).
_MOVE = (
    "UPDATE profile_aliases SET profile_id = :target WHERE profile_id = :source",
    "UPDATE push_subscriptions SET profile_id = :target WHERE profile_id = :source",
    "UPDATE consent_changes SET profile_id = :target WHERE profile_id = :source",
    "UPDATE list_membership_changes SET profile_id = :target WHERE profile_id = :source",
    "UPDATE segment_membership_changes SET profile_id = :target WHERE profile_id = :source",
    # Consents the target already has win; the source's fill the gaps.
    "INSERT INTO consents (profile_id, channel, workspace_id, state, source, updated_at) "
    "SELECT :target, channel, workspace_id, state, source, updated_at FROM consents "
    "WHERE profile_id = :source ON CONFLICT DO NOTHING",
)

# A profile's messages, locked before the profile is deleted (erasure, merge). Recording a
# message's outcome or engagement locks the message, then the profile (its event): taken in
# the same order, the deletion waits for it instead of deadlocking with it.
_LOCK_MESSAGES = text(
    "SELECT FROM messages WHERE workspace_id = :ws AND profile_id = :id FOR UPDATE"
)


async def lock_messages(session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID):
    """Lock the profile's messages until the transaction ends (see `_LOCK_MESSAGES`)."""
    await session.execute(_LOCK_MESSAGES, {"ws": workspace_id, "id": profile_id})


_MOVE_AFTER = (
    "UPDATE events SET profile_id = :target WHERE workspace_id = :ws AND profile_id = :source",
    "UPDATE messages SET profile_id = :target WHERE workspace_id = :ws AND profile_id = :source",
)

# The source's list memberships end (a `left` row each, source `merged`); the target joins the
# lists it was not on (a `joined` row each, which starts list-triggered flows for the surviving
# profile). One statement, so the trigger of migration 0014 sees the joins once.
MERGED = "merged"
_MOVE_LISTS = text(
    """
    WITH gone AS (
        DELETE FROM list_members WHERE profile_id = :source AND workspace_id = :ws
        RETURNING list_id
    ), joined AS (
        INSERT INTO list_members (list_id, profile_id, workspace_id, source, joined_at)
        SELECT list_id, :target, :ws, :reason, now() FROM gone
        ON CONFLICT (list_id, profile_id) DO NOTHING
        RETURNING list_id
    )
    INSERT INTO list_membership_changes
        (workspace_id, list_id, profile_id, action, source, occurred_at)
    SELECT :ws, list_id, :target, action, :reason, now()
    FROM (
        SELECT list_id, 'left' AS action, 1 AS ord FROM gone
        UNION ALL SELECT list_id, 'joined', 2 FROM joined
    ) AS x
    ORDER BY ord, list_id
    """
)


async def merge_profiles(
    session: AsyncSession, workspace_id: uuid.UUID, source: uuid.UUID, target: uuid.UUID
) -> None:
    """Fold `source` into `target`: its events, messages, aliases, consents, subscriptions and
    history move; reserved fields the target lacks are filled from the source; the target's
    custom properties win over the source's. The source profile is then deleted (its events and
    messages move right after that: see `_MOVE_AFTER`).

    Memberships are logged like any other change: the source exits each of its segments and
    leaves each of its lists (rows in the target's history, as the source's earlier ones now
    are), the target joins the lists it lacked, and is then re-evaluated against every segment
    (`profiles_changed`), so each segment it now qualifies for logs an entry."""
    from segments.membership import remove_profiles  # segments build on ingest

    if source == target:
        return
    owned = (
        await session.execute(
            text("SELECT count(*) FROM profiles WHERE workspace_id = :ws AND id IN (:s, :t)"),
            {"ws": workspace_id, "s": source, "t": target},
        )
    ).scalar_one()
    if owned != 2:
        raise LookupError("both profiles must exist in this workspace")
    await remove_profiles(session, workspace_id, [source])
    params = {"source": source, "target": target}
    for statement in _MOVE:
        await session.execute(text(statement), params)
    await session.execute(_MOVE_LISTS, {**params, "ws": workspace_id, "reason": MERGED})
    await lock_messages(session, workspace_id, source)
    # Take the source's identifiers off it before the target takes them (unique indexes).
    fill = ", ".join(f"{c} = coalesce(t.{c}, s.{c})" for c in ("external_id", *RESERVED))
    await session.execute(
        text(
            "WITH s AS (DELETE FROM profiles WHERE id = :source RETURNING *) "
            f"UPDATE profiles t SET {fill}, properties = s.properties || t.properties, "
            "created_at = least(t.created_at, s.created_at), updated_at = now() "
            "FROM s WHERE t.id = :target"
        ),
        params,
    )
    # Events and messages have no foreign key to the profile: they move once it is gone, so a
    # writer that locked it has committed (see `models.profile.profile_of_row`).
    for statement in _MOVE_AFTER:
        await session.execute(text(statement), {**params, "ws": workspace_id})
    await profiles_changed(session, workspace_id, [target], new=True)
