"""Typing: per session and room, with deadlines; every change of a room's set of typing
users takes a position from the server-wide stream."""

from __future__ import annotations

import itertools
from functools import partial

import trio

from backends import Storage
from backends.records import TypingChange

from .records import ALICE, BOB, CAROL, OTHER_ROOM, ROOM, append_one, make_room, message
from .support import gather

THIRD_ROOM = "!third:example.org"


async def _set(
    storage: Storage, room_id: str, user_id: str, session_id: str = "s", expires_at_ms: int = 1_000
) -> TypingChange | None:
    return await storage.typing.set_typing(room_id, user_id, session_id, expires_at_ms)


async def test_set_typing_takes_the_next_stream_position(storage: Storage) -> None:
    before = await storage.rooms.current_stream_pos()
    change = await _set(storage, ROOM, ALICE)
    assert change is not None
    assert change.stream_pos > before
    assert change == TypingChange(room_id=ROOM, user_ids=(ALICE,), stream_pos=change.stream_pos)
    assert await storage.rooms.current_stream_pos() == change.stream_pos
    assert await storage.typing.get_typing([ROOM]) == {ROOM: change}


async def test_refreshing_typing_is_not_a_change(storage: Storage) -> None:
    first = await _set(storage, ROOM, ALICE, expires_at_ms=1_000)
    assert first is not None
    assert await _set(storage, ROOM, ALICE, expires_at_ms=2_000) is None
    assert await _set(storage, ROOM, ALICE, expires_at_ms=500) is None
    assert await storage.rooms.current_stream_pos() == first.stream_pos
    assert await storage.typing.get_typing([ROOM]) == {ROOM: first}
    # The refreshed deadline is the one kept.
    assert await storage.typing.next_typing_deadline() == 500


async def test_moving_typing_to_another_session_is_not_a_change(storage: Storage) -> None:
    first = await _set(storage, ROOM, ALICE, "s1")
    assert first is not None
    assert await _set(storage, ROOM, ALICE, "s2") is None
    assert await storage.rooms.current_stream_pos() == first.stream_pos
    assert await storage.typing.get_typing([ROOM]) == {ROOM: first}
    # The entry now belongs to s2 only.
    assert await storage.typing.clear_session_typing("s1") == []
    assert await storage.typing.get_typing([ROOM]) == {ROOM: first}
    [change] = await storage.typing.clear_session_typing("s2")
    assert change.room_id == ROOM and change.user_ids == ()
    assert change.stream_pos > first.stream_pos


async def test_typing_users_are_sorted_and_each_change_is_positioned(storage: Storage) -> None:
    changes = [
        await _set(storage, ROOM, CAROL, "sc"),
        await _set(storage, ROOM, ALICE, "sa"),
        await _set(storage, ROOM, BOB, "sb"),
    ]
    assert [c.user_ids if c else None for c in changes] == [
        (CAROL,),
        (ALICE, CAROL),
        (ALICE, BOB, CAROL),
    ]
    positions = [c.stream_pos for c in changes if c is not None]
    assert all(a < b for a, b in itertools.pairwise(positions))
    assert await storage.typing.get_typing([ROOM]) == {ROOM: changes[-1]}


async def test_clear_typing(storage: Storage) -> None:
    assert await storage.typing.clear_typing(ROOM, ALICE) is None
    assert await storage.rooms.current_stream_pos() == 0
    await _set(storage, ROOM, ALICE, "sa")
    await _set(storage, ROOM, BOB, "sb")
    before = await storage.rooms.current_stream_pos()
    change = await storage.typing.clear_typing(ROOM, ALICE)
    assert change is not None
    assert change.room_id == ROOM and change.user_ids == (BOB,)
    assert change.stream_pos == before + 1 == await storage.rooms.current_stream_pos()
    assert await storage.typing.clear_typing(ROOM, ALICE) is None
    assert await storage.typing.clear_typing(OTHER_ROOM, BOB) is None
    assert await storage.rooms.current_stream_pos() == change.stream_pos
    assert await storage.typing.get_typing([ROOM]) == {ROOM: change}


async def test_clear_session_typing_one_change_per_room(storage: Storage) -> None:
    await _set(storage, ROOM, ALICE, "s1")
    await _set(storage, OTHER_ROOM, ALICE, "s1")
    await _set(storage, ROOM, BOB, "s2")
    await _set(storage, THIRD_ROOM, BOB, "s2")
    before = await storage.rooms.current_stream_pos()
    changes = await storage.typing.clear_session_typing("s1")
    by_room = {c.room_id: c for c in changes}
    assert len(changes) == len(by_room) == 2
    assert by_room[ROOM].user_ids == (BOB,)
    assert by_room[OTHER_ROOM].user_ids == ()
    positions = sorted(c.stream_pos for c in changes)
    assert positions[0] > before
    assert len(set(positions)) == 2
    assert await storage.rooms.current_stream_pos() == positions[-1]
    assert await storage.typing.get_typing([ROOM, OTHER_ROOM]) == by_room
    # The other session's entries are untouched.
    assert await storage.typing.clear_session_typing("s1") == []
    assert await _set(storage, ROOM, BOB, "s2") is None
    assert {c.room_id for c in await storage.typing.clear_session_typing("s2")} == {
        ROOM,
        THIRD_ROOM,
    }
    assert await storage.typing.next_typing_deadline() is None


async def test_get_typing(storage: Storage) -> None:
    assert await storage.typing.get_typing([]) == {}
    assert await storage.typing.get_typing([ROOM, OTHER_ROOM]) == {}
    await _set(storage, ROOM, BOB, "s1")
    latest = await _set(storage, ROOM, ALICE, "s2")
    await _set(storage, OTHER_ROOM, ALICE, "s2")
    stopped = await storage.typing.clear_typing(OTHER_ROOM, ALICE)
    assert latest is not None and stopped is not None
    assert stopped.user_ids == ()
    result = await storage.typing.get_typing([ROOM, OTHER_ROOM, THIRD_ROOM])
    assert result == {ROOM: latest, OTHER_ROOM: stopped}
    assert result[ROOM].user_ids == (ALICE, BOB)
    assert await storage.typing.get_typing([OTHER_ROOM]) == {OTHER_ROOM: stopped}


async def test_get_typing_of_many_rooms(storage: Storage) -> None:
    rooms = [f"!r{i:04}:example.org" for i in range(1_200)]
    typed = rooms[::100]
    for room_id in typed:
        await _set(storage, room_id, ALICE)
    result = await storage.typing.get_typing(rooms)
    assert sorted(result) == typed
    assert all(c.user_ids == (ALICE,) for c in result.values())


async def test_typing_shares_the_stream_with_events_presence_and_account_data(
    storage: Storage,
) -> None:
    await make_room(storage)
    positions: list[int] = []
    for i in range(3):
        positions.append((await append_one(storage, message(ROOM))).stream_pos)
        change = await _set(storage, ROOM, ALICE, f"s{i}")
        assert change is not None
        positions.append(change.stream_pos)
        positions.append(await storage.account_data.put_account_data(ALICE, None, "m.t", {}))
        positions.append((await storage.presence.put_presence(ALICE, "online", None, i)).stream_pos)
        cleared = await storage.typing.clear_typing(ROOM, ALICE)
        assert cleared is not None
        positions.append(cleared.stream_pos)
        assert await storage.rooms.current_stream_pos() == positions[-1]
    assert positions[0] > 0
    assert all(a < b for a, b in itertools.pairwise(positions))


async def test_take_expired_typing_at_the_boundary(storage: Storage) -> None:
    await _set(storage, ROOM, ALICE, expires_at_ms=1_000)
    before = await storage.rooms.current_stream_pos()
    assert await storage.typing.take_expired_typing(999, 10) == []
    assert await storage.rooms.current_stream_pos() == before
    [change] = await storage.typing.take_expired_typing(1_000, 10)
    assert change.room_id == ROOM and change.user_ids == ()
    assert change.stream_pos == before + 1 == await storage.rooms.current_stream_pos()
    assert await storage.typing.take_expired_typing(1_000, 10) == []
    assert await storage.typing.get_typing([ROOM]) == {ROOM: change}
    assert await storage.typing.clear_typing(ROOM, ALICE) is None


async def test_take_expired_typing_one_change_per_room(storage: Storage) -> None:
    await _set(storage, ROOM, ALICE, "sa", 100)
    await _set(storage, ROOM, BOB, "sb", 200)
    await _set(storage, ROOM, CAROL, "sc", 5_000)
    await _set(storage, OTHER_ROOM, BOB, "sb", 150)
    changes = await storage.typing.take_expired_typing(200, 10)
    by_room = {c.room_id: c for c in changes}
    assert len(changes) == len(by_room) == 2
    assert by_room[ROOM].user_ids == (CAROL,)
    assert by_room[OTHER_ROOM].user_ids == ()
    assert len({c.stream_pos for c in changes}) == 2
    assert await storage.typing.get_typing([ROOM, OTHER_ROOM]) == by_room
    assert await storage.typing.next_typing_deadline() == 5_000


async def test_take_expired_typing_respects_the_limit_earliest_first(storage: Storage) -> None:
    rooms = [f"!r{i}:example.org" for i in range(5)]
    deadlines = [500, 100, 400, 200, 300]
    for room_id, deadline in zip(rooms, deadlines, strict=True):
        await _set(storage, room_id, ALICE, "s", deadline)
    first = await storage.typing.take_expired_typing(450, 2)
    assert {c.room_id for c in first} == {rooms[1], rooms[3]}
    second = await storage.typing.take_expired_typing(450, 2)
    assert {c.room_id for c in second} == {rooms[4], rooms[2]}
    assert await storage.typing.take_expired_typing(450, 2) == []
    assert await storage.typing.next_typing_deadline() == 500


async def test_refreshed_typing_expires_by_its_new_deadline(storage: Storage) -> None:
    await _set(storage, ROOM, ALICE, "s", 100)
    await _set(storage, OTHER_ROOM, ALICE, "s", 1_000)
    await _set(storage, ROOM, ALICE, "s", 2_000)
    await _set(storage, OTHER_ROOM, ALICE, "s2", 200)
    assert await storage.typing.next_typing_deadline() == 200
    assert await storage.typing.take_expired_typing(150, 10) == []
    [change] = await storage.typing.take_expired_typing(1_999, 10)
    assert change.room_id == OTHER_ROOM
    assert await storage.typing.next_typing_deadline() == 2_000


async def test_concurrent_takers_take_each_typing_entry_once(storage: Storage) -> None:
    rooms = [f"!r{i:02}:example.org" for i in range(30)]
    await gather(*[partial(_set, storage, r, ALICE, "s", 100 + i % 5) for i, r in enumerate(rooms)])
    taken: list[str] = []

    async def taker() -> None:
        while changes := await storage.typing.take_expired_typing(1_000, 3):
            taken.extend(c.room_id for c in changes)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(taker)
    assert sorted(taken) == rooms
    assert await storage.typing.next_typing_deadline() is None


async def test_concurrent_typing_changes_in_one_room(storage: Storage) -> None:
    users = [f"@u{i:02}:example.org" for i in range(12)]
    changes = await gather(*[partial(_set, storage, ROOM, u, f"s{u}") for u in users])
    assert all(c is not None for c in changes)
    ordered = sorted((c for c in changes if c is not None), key=lambda c: c.stream_pos)
    assert len({c.stream_pos for c in ordered}) == len(users)
    # Applied one after the other: each change adds exactly one user.
    for count, change in enumerate(ordered, start=1):
        assert len(change.user_ids) == count
    assert ordered[-1].user_ids == tuple(users)
    # Refreshes from every session at once change nothing.
    again = await gather(*[partial(_set, storage, ROOM, u, f"s{u}", 5_000) for u in users])
    assert again == [None] * len(users)
    assert await storage.typing.get_typing([ROOM]) == {ROOM: ordered[-1]}


async def test_concurrent_starts_of_one_user_typing_make_one_change(storage: Storage) -> None:
    results = await gather(
        *[partial(_set, storage, ROOM, ALICE, f"s{i}", 1_000 + i) for i in range(12)]
    )
    changes = [c for c in results if c is not None]
    assert len(changes) == 1
    assert changes[0].user_ids == (ALICE,)
    assert await storage.rooms.current_stream_pos() == changes[0].stream_pos
    assert await storage.typing.get_typing([ROOM]) == {ROOM: changes[0]}
    # Whichever session wrote last owns the entry: exactly one session's clear stops it.
    cleared = [await storage.typing.clear_session_typing(f"s{i}") for i in range(12)]
    assert sum(len(c) for c in cleared) == 1


async def test_next_typing_deadline(storage: Storage) -> None:
    assert await storage.typing.next_typing_deadline() is None
    await _set(storage, ROOM, ALICE, "s1", 700)
    await _set(storage, ROOM, BOB, "s2", 300)
    await _set(storage, OTHER_ROOM, BOB, "s2", 500)
    assert await storage.typing.next_typing_deadline() == 300
    await storage.typing.clear_typing(ROOM, BOB)
    assert await storage.typing.next_typing_deadline() == 500
    await storage.typing.clear_session_typing("s2")
    assert await storage.typing.next_typing_deadline() == 700
    await storage.typing.take_expired_typing(700, 10)
    assert await storage.typing.next_typing_deadline() is None
