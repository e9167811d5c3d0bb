"""Events and messages have no foreign key to their profile (`models.profile.profile_of_row`):
their writers lock the profile themselves, and erasure and merge deal with them after deleting
the profile. Whichever of a writer and an erasure (or merge) comes second sees what the other
did: nothing is left behind for an erased profile, and no accepted event is dropped."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from channels import ledger_new
from core.db import session_factory, session_scope
from ingest.erasure import erase_profile
from ingest.events import NewEvent, store_events
from ingest.profiles import merge_profiles
from models import Channel, MessageStatus, Profile
from models.messages import SourceType

SOURCE = ledger_new.Source(channel=Channel.email, source_type=SourceType.campaign)


async def _profile(engine, workspace_id: uuid.UUID) -> uuid.UUID:
    async with session_scope(engine) as session:
        profile = Profile(workspace_id=workspace_id, email=f"{uuid.uuid4().hex[:8]}@example.com")
        session.add(profile)
    return profile.id


async def _write(session, workspace_id, profile_id, tag: str) -> tuple[list[int], set]:
    """An event and a message (as the send path claims one) for the profile, not committed."""
    event = NewEvent(profile_id, "Viewed Product", f"ev-{tag}", datetime.now(UTC))
    stored = await store_events(session, workspace_id, [event])
    decided = ledger_new.Decided(uuid.uuid4(), f"key-{tag}", profile_id, MessageStatus.skipped)
    written = await ledger_new.insert_decided(
        session, workspace_id, SOURCE, [decided], datetime.now(UTC)
    )
    return stored, written


async def _rows_of(engine, profile_id: uuid.UUID) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table: (
                await conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE profile_id = :p"), {"p": profile_id}
                )
            ).scalar_one()
            for table in ("events", "messages")
        } | {
            "outbox": (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM event_outbox o LEFT JOIN events e "
                        "ON e.id = o.event_id WHERE e.id IS NULL"
                    )
                )
            ).scalar_one()
        }


async def _until_a_lock_is_awaited(engine) -> None:
    """Until some transaction waits for a row lock held by another."""
    for _ in range(200):
        async with engine.connect() as conn:
            waiting = await conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            if waiting.scalar_one():
                return
        await asyncio.sleep(0.02)
    raise AssertionError("nobody waited for the lock")


async def test_rows_written_while_the_profile_is_erased_go_with_it(engine, workspaces):
    ws = await workspaces.create()
    profile_id, bystander = await _profile(engine, ws.id), await _profile(engine, ws.id)

    async def erase() -> bool:
        async with session_scope(engine) as session:
            return await erase_profile(session, ws.id, profile_id)

    async with session_factory(engine)() as writer:
        stored, written = await _write(writer, ws.id, profile_id, "during")
        assert len(stored) == 1 and len(written) == 1
        await _write(writer, ws.id, bystander, "bystander")
        erasing = asyncio.create_task(erase())
        await _until_a_lock_is_awaited(engine)  # the erasure waits for the writer's lock
        assert not erasing.done()
        await writer.commit()
    assert await erasing
    assert await _rows_of(engine, profile_id) == {"events": 0, "messages": 0, "outbox": 0}
    assert await _rows_of(engine, bystander) == {"events": 1, "messages": 1, "outbox": 0}


async def test_nothing_is_written_for_a_profile_once_its_erasure_began(engine, workspaces):
    ws = await workspaces.create()
    profile_id = await _profile(engine, ws.id)

    async def write() -> tuple[list[int], set]:
        async with session_scope(engine) as session:
            return await _write(session, ws.id, profile_id, "after")

    async with session_factory(engine)() as eraser:
        assert await erase_profile(eraser, ws.id, profile_id)
        writing = asyncio.create_task(write())
        await _until_a_lock_is_awaited(engine)  # the writer waits for the erasure's lock
        assert not writing.done()
        await eraser.commit()
    # No error, and nothing stored: the profile is gone.
    assert await writing == ([], set())
    assert await _rows_of(engine, profile_id) == {"events": 0, "messages": 0, "outbox": 0}


async def test_a_merge_moves_the_events_and_messages_written_meanwhile(engine, workspaces):
    ws = await workspaces.create()
    source, target = await _profile(engine, ws.id), await _profile(engine, ws.id)
    async with session_scope(engine) as session:
        await _write(session, ws.id, source, "before")

    async def merge() -> None:
        async with session_scope(engine) as session:
            await merge_profiles(session, ws.id, source, target)

    async with session_factory(engine)() as writer:
        await _write(writer, ws.id, source, "during")
        merging = asyncio.create_task(merge())
        await _until_a_lock_is_awaited(engine)  # the merge waits to delete the source
        await writer.commit()
    await merging
    assert await _rows_of(engine, source) == {"events": 0, "messages": 0, "outbox": 0}
    assert await _rows_of(engine, target) == {"events": 2, "messages": 2, "outbox": 0}


async def test_an_event_tracked_during_a_merge_lands_on_the_surviving_profile(
    client, engine, workspaces
):
    """The event's profile is resolved before the merge commits and is gone when the event is
    stored: it is resolved again (its identity now names the target), not dropped."""
    ws = await workspaces.create()

    async def track(body: dict) -> None:
        r = await client.post("/v1/track", headers=ws.tracking, json=body)
        assert r.status_code == 200, r.text

    await track({"anonymousId": "anon-7", "event": "Viewed Product", "messageId": "m1"})
    await track({"userId": "known-7", "event": "Viewed Product", "messageId": "m2"})
    async with engine.connect() as conn:
        ids = dict((await conn.execute(text("SELECT external_id, id FROM profiles"))).all())
    source, target = ids[None], ids["known-7"]

    async with session_factory(engine)() as merger:
        await merge_profiles(merger, ws.id, source, target)  # not committed yet
        late = {"anonymousId": "anon-7", "event": "Added to Cart", "messageId": "m3"}
        tracking = asyncio.create_task(track(late))
        await _until_a_lock_is_awaited(engine)  # its store waits for the source's deletion
        await merger.commit()
    await tracking
    async with engine.connect() as conn:
        events = (await conn.execute(text("SELECT metric, profile_id FROM events"))).all()
    assert sorted(events) == [
        ("Added to Cart", target),
        ("Viewed Product", target),
        ("Viewed Product", target),
    ]


@pytest.mark.parametrize("deletion", ["erasure", "merge"])
async def test_deleting_a_profile_while_a_message_s_outcome_is_recorded_does_not_deadlock(
    engine, workspaces, deletion
):
    """Recording an outcome locks the message, then (its "Received" event) the profile; so does
    engagement from a webhook. Erasure and merge lock the profile's messages before deleting the
    profile, in the same order: they wait for the recording instead of deadlocking with it."""
    ws = await workspaces.create()
    profile_id, target = await _profile(engine, ws.id), await _profile(engine, ws.id)
    async with session_scope(engine) as session:
        _, [message_id] = await _write(session, ws.id, profile_id, "sent")

    async def delete() -> None:
        async with session_scope(engine) as session:
            if deletion == "erasure":
                assert await erase_profile(session, ws.id, profile_id)
            else:
                await merge_profiles(session, ws.id, profile_id, target)

    async with session_factory(engine)() as recorder:
        await recorder.execute(
            text("UPDATE messages SET status = 'sent' WHERE id = :id"), {"id": message_id}
        )
        deleting = asyncio.create_task(delete())
        await _until_a_lock_is_awaited(engine)  # the deletion waits for the message
        event = NewEvent(profile_id, "Received Email", "received", datetime.now(UTC))
        assert len(await store_events(recorder, ws.id, [event])) == 1
        await recorder.commit()
    await deleting
    assert await _rows_of(engine, profile_id) == {"events": 0, "messages": 0, "outbox": 0}
    # A merge moves them: the message, the event written with it and the one recorded.
    moved = {"events": 2, "messages": 1} if deletion == "merge" else {"events": 0, "messages": 0}
    assert await _rows_of(engine, target) == moved | {"outbox": 0}
