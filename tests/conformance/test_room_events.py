"""RoomStore: paging through a room's events and the rooms' latest positions."""

from __future__ import annotations

from backends import Storage
from backends.records import Event

from .records import OTHER_ROOM, ROOM, append_one, make_room, message, messages


async def _page(
    storage: Storage,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = 100,
    newest_first: bool = False,
    room_id: str = ROOM,
) -> list[int]:
    events = await storage.rooms.get_room_events(
        room_id, after=after, before=before, limit=limit, newest_first=newest_first
    )
    return [e.stream_pos for e in events]


async def _interleaved(storage: Storage) -> tuple[list[Event], list[Event]]:
    """Five events in ROOM with events of OTHER_ROOM between them."""
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    ours: list[Event] = []
    theirs: list[Event] = []
    for i in range(5):
        ours.append(await append_one(storage, message(ROOM, body=f"ours {i}")))
        theirs.append(await append_one(storage, message(OTHER_ROOM, body=f"theirs {i}")))
    return ours, theirs


async def test_all_events_oldest_first_and_newest_first(storage: Storage) -> None:
    ours, theirs = await _interleaved(storage)
    positions = [e.stream_pos for e in ours]
    assert await _page(storage) == positions
    assert await _page(storage, newest_first=True) == positions[::-1]
    assert await _page(storage, room_id=OTHER_ROOM) == [e.stream_pos for e in theirs]
    events = await storage.rooms.get_room_events(
        ROOM, after=None, before=None, limit=100, newest_first=False
    )
    assert events == ours


async def test_bounds_are_exclusive(storage: Storage) -> None:
    ours, _ = await _interleaved(storage)
    p = [e.stream_pos for e in ours]
    assert await _page(storage, after=p[1]) == p[2:]
    assert await _page(storage, before=p[3]) == p[:3]
    assert await _page(storage, after=p[0], before=p[4]) == p[1:4]
    assert await _page(storage, after=p[0], before=p[4], newest_first=True) == p[3:0:-1]
    assert await _page(storage, after=p[2], before=p[3]) == []
    assert await _page(storage, after=p[3], before=p[2]) == []


async def test_bounds_between_positions(storage: Storage) -> None:
    # Bounds that are not positions of this room's events (other rooms' positions).
    ours, theirs = await _interleaved(storage)
    p = [e.stream_pos for e in ours]
    assert await _page(storage, after=theirs[1].stream_pos) == p[2:]
    assert await _page(storage, before=theirs[1].stream_pos) == p[:2]


async def test_after_zero_is_everything(storage: Storage) -> None:
    ours, _ = await _interleaved(storage)
    assert await _page(storage, after=0) == [e.stream_pos for e in ours]


async def test_after_the_newest_is_empty(storage: Storage) -> None:
    ours, _ = await _interleaved(storage)
    latest = await storage.rooms.current_stream_pos()
    assert await _page(storage, after=ours[-1].stream_pos) == []
    assert await _page(storage, after=latest + 100) == []
    assert await _page(storage, before=ours[0].stream_pos) == []
    assert await _page(storage, before=1) == []


async def test_limit_takes_the_oldest_going_forwards(storage: Storage) -> None:
    ours, _ = await _interleaved(storage)
    p = [e.stream_pos for e in ours]
    assert await _page(storage, limit=2) == p[:2]
    assert await _page(storage, after=p[1], limit=2) == p[2:4]
    assert await _page(storage, before=p[4], limit=2) == p[:2]


async def test_limit_takes_the_newest_going_backwards(storage: Storage) -> None:
    ours, _ = await _interleaved(storage)
    p = [e.stream_pos for e in ours]
    assert await _page(storage, limit=2, newest_first=True) == [p[4], p[3]]
    assert await _page(storage, before=p[3], limit=2, newest_first=True) == [p[2], p[1]]
    assert await _page(storage, after=p[2], limit=5, newest_first=True) == [p[4], p[3]]


async def test_limit_larger_than_available_and_exact(storage: Storage) -> None:
    ours, _ = await _interleaved(storage)
    p = [e.stream_pos for e in ours]
    assert await _page(storage, limit=5) == p
    assert await _page(storage, limit=1000, newest_first=True) == p[::-1]
    assert await _page(storage, limit=1) == p[:1]
    assert await _page(storage, limit=1, newest_first=True) == p[-1:]


async def test_zero_limit_is_empty(storage: Storage) -> None:
    await _interleaved(storage)
    assert await _page(storage, limit=0) == []
    assert await _page(storage, limit=0, newest_first=True) == []


async def test_paginating_backwards_visits_every_event_once(storage: Storage) -> None:
    await make_room(storage)
    stored = await messages(storage, ROOM, 7)
    seen: list[int] = []
    before: int | None = None
    while True:
        page = await _page(storage, before=before, limit=3, newest_first=True)
        if not page:
            break
        seen.extend(page)
        before = page[-1]
    assert seen == [e.stream_pos for e in reversed(stored)]


async def test_unknown_room_has_no_events(storage: Storage) -> None:
    assert await _page(storage, room_id="!nope:example.org") == []


async def test_latest_positions(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    empty = await make_room(storage, "!empty:example.org")
    assert await storage.rooms.get_latest_positions([ROOM, OTHER_ROOM, empty]) == {}
    first = await append_one(storage, message(ROOM))
    other = await append_one(storage, message(OTHER_ROOM))
    assert await storage.rooms.get_latest_positions([ROOM, OTHER_ROOM, empty]) == {
        ROOM: first.stream_pos,
        OTHER_ROOM: other.stream_pos,
    }
    later = await storage.rooms.append_events([message(ROOM), message(ROOM)])
    assert await storage.rooms.get_latest_positions([ROOM, "!unknown:example.org", OTHER_ROOM]) == {
        ROOM: later[-1].stream_pos,
        OTHER_ROOM: other.stream_pos,
    }
    assert await storage.rooms.get_latest_positions([OTHER_ROOM]) == {OTHER_ROOM: other.stream_pos}
    assert await storage.rooms.get_latest_positions([]) == {}


async def test_latest_positions_of_many_rooms(storage: Storage) -> None:
    room_ids = [f"!r{i:04}:example.org" for i in range(60)]
    for room_id in room_ids:
        await make_room(storage, room_id)
    stored = await storage.rooms.append_events([message(r) for r in room_ids[::2]])
    expected = {e.room_id: e.stream_pos for e in stored}
    assert await storage.rooms.get_latest_positions(room_ids) == expected


async def test_out_of_range_bounds_and_limits(storage: Storage) -> None:
    ours, _ = await _interleaved(storage)
    p = [e.stream_pos for e in ours]
    huge = 2**80
    assert await _page(storage, after=huge) == []
    assert await _page(storage, before=huge) == p
    assert await _page(storage, after=-huge) == p
    assert await _page(storage, before=-huge) == []
    assert await _page(storage, before=0) == []
    assert await _page(storage, limit=huge, newest_first=True) == p[::-1]
    assert await _page(storage, limit=-1) == []
