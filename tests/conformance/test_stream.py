"""The server-wide stream: one counter for room events and account data."""

from __future__ import annotations

import itertools

import pytest

from backends import Conflict, NotFound, Storage

from .records import (
    ALICE,
    OTHER_ROOM,
    ROOM,
    append_one,
    device,
    make_room,
    member,
    message,
    session,
    token,
    user,
)


async def test_fresh_store_is_at_position_zero(storage: Storage) -> None:
    assert await storage.rooms.current_stream_pos() == 0


async def test_positions_are_shared_and_strictly_increasing(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    positions: list[int] = []
    for i in range(3):
        positions.append((await append_one(storage, message(ROOM))).stream_pos)
        positions.append(await storage.account_data.put_account_data(ALICE, None, "m.t", {"i": i}))
        batch = await storage.rooms.append_events([message(OTHER_ROOM), member(ROOM, ALICE)])
        positions.extend(e.stream_pos for e in batch)
        positions.append(
            await storage.account_data.put_account_data(ALICE, ROOM, f"m.t{i}", {"i": i})
        )
        assert await storage.rooms.current_stream_pos() == positions[-1]
    assert positions[0] > 0
    assert all(a < b for a, b in itertools.pairwise(positions))


async def test_failed_appends_do_not_move_the_stream(storage: Storage) -> None:
    await make_room(storage)
    first = await append_one(storage, message(ROOM))
    with pytest.raises(NotFound):
        await storage.rooms.append_events([message(ROOM), message("!nope:example.org")])
    with pytest.raises(Conflict):
        await storage.rooms.append_events([message(ROOM), message(ROOM, event_id=first.event_id)])
    assert await storage.rooms.current_stream_pos() == first.stream_pos
    second = await append_one(storage, message(ROOM))
    assert second.stream_pos > first.stream_pos


async def test_only_stream_writers_use_positions(storage: Storage) -> None:
    """Events, account data, presence and typing changes are on the stream; the rest,
    sessions included, and typing refreshes are not."""
    await storage.users.create_user(user(ALICE))
    await storage.users.set_profile_field(ALICE, "displayname", "A")
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t"))
    await storage.filters.create_filter(ALICE, {})
    await storage.txns.put_txn_event(ALICE, "DEV", "txn", "$e")
    await storage.sessions.start_session(session("s1", expires_at_ms=10), replace=False)
    await storage.sessions.start_session(session("s2"), replace=True)
    await storage.sessions.touch_session("s2", 1, 2)
    await storage.sessions.set_session_presence("s2", "unavailable", None)
    await storage.sessions.take_expired_sessions(10, 10)
    await storage.sessions.end_session("s2")
    await storage.typing.clear_typing(ROOM, ALICE)
    await storage.typing.clear_session_typing("s2")
    await storage.typing.take_expired_typing(10, 10)
    await make_room(storage)
    assert await storage.rooms.current_stream_pos() == 0
    join = await append_one(storage, member(ROOM, ALICE))
    typing = await storage.typing.set_typing(ROOM, ALICE, "s", 100)
    assert typing is not None and typing.stream_pos == join.stream_pos + 1
    await storage.typing.set_typing(ROOM, ALICE, "s", 200)
    await storage.typing.take_expired_typing(199, 10)
    await storage.rooms.forget_room(ALICE, ROOM)
    await storage.devices.delete_device(ALICE, "DEV")
    assert await storage.rooms.current_stream_pos() == typing.stream_pos
