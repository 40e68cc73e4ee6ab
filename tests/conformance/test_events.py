"""RoomStore: rooms, append_events (all or nothing), events and current state."""

from __future__ import annotations

import pytest

from backends import Conflict, NotFound, Storage
from backends.records import Event, NewEvent

from .records import (
    ALICE,
    BOB,
    OTHER_ROOM,
    ROOM,
    append_one,
    event_id,
    make_room,
    member,
    message,
    room,
    state,
)


async def test_create_and_get_room(storage: Storage) -> None:
    await storage.rooms.create_room(room(ROOM))
    assert await storage.rooms.get_room(ROOM) == room(ROOM)
    assert await storage.rooms.get_room(OTHER_ROOM) is None


async def test_create_existing_room_conflicts_and_changes_nothing(storage: Storage) -> None:
    await storage.rooms.create_room(room(ROOM, creator=ALICE))
    with pytest.raises(Conflict):
        await storage.rooms.create_room(room(ROOM, creator=BOB))
    assert await storage.rooms.get_room(ROOM) == room(ROOM, creator=ALICE)


async def test_new_room_has_no_events_state_or_members(storage: Storage) -> None:
    await make_room(storage)
    assert await storage.rooms.get_current_state(ROOM) == []
    assert await storage.rooms.get_room_members(ROOM) == []
    assert await storage.rooms.get_latest_positions([ROOM]) == {}
    assert (
        await storage.rooms.get_room_events(
            ROOM, after=None, before=None, limit=10, newest_first=True
        )
        == []
    )


async def test_append_returns_stored_events_with_every_field(storage: Storage) -> None:
    await make_room(storage)
    new = NewEvent(
        event_id=event_id(),
        room_id=ROOM,
        sender=ALICE,
        type="m.room.message",
        content={"msgtype": "m.text", "body": "héllo 🦊", "nested": {"list": [1, 2.5, None, True]}},
        origin_server_ts=1_700_000_000_123,
        txn_id="txn-1",
        device_id="DEV",
        unsigned={"invite_room_state": [{"type": "m.room.name", "content": {"name": "R"}}]},
        redacts="$other:example.org",
    )
    [stored] = await storage.rooms.append_events([new])
    assert stored == Event.from_new(new, stored.stream_pos, None)
    assert stored.stream_pos > 0
    assert await storage.rooms.get_event(new.event_id) == stored


async def test_unknown_event_is_none(storage: Storage) -> None:
    assert await storage.rooms.get_event("$nope:example.org") is None


async def test_empty_append_writes_nothing(storage: Storage) -> None:
    await make_room(storage)
    before = await storage.rooms.current_stream_pos()
    assert await storage.rooms.append_events([]) == []
    assert await storage.rooms.current_stream_pos() == before


async def test_batch_gets_increasing_positions_in_order(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    batch = [message(ROOM), message(OTHER_ROOM), message(ROOM), state(ROOM, "m.x", "", {})]
    stored = await storage.rooms.append_events(batch)
    assert [e.event_id for e in stored] == [e.event_id for e in batch]
    positions = [e.stream_pos for e in stored]
    assert positions == sorted(set(positions))
    assert await storage.rooms.current_stream_pos() == positions[-1]
    for event in stored:
        assert await storage.rooms.get_event(event.event_id) == event


async def test_state_event_sets_current_state(storage: Storage) -> None:
    await make_room(storage)
    name = await append_one(storage, state(ROOM, "m.room.name", "", {"name": "One"}))
    assert name.prev_content is None
    assert await storage.rooms.get_state_event(ROOM, "m.room.name", "") == name
    assert await storage.rooms.get_current_state(ROOM) == [name]


async def test_state_replacement_records_prev_content(storage: Storage) -> None:
    await make_room(storage)
    first = await append_one(storage, state(ROOM, "m.room.name", "", {"name": "One"}))
    await append_one(storage, message(ROOM))
    second = await append_one(storage, state(ROOM, "m.room.name", "", {"name": "Two"}))
    assert second.prev_content == {"name": "One"}
    assert await storage.rooms.get_state_event(ROOM, "m.room.name", "") == second
    assert await storage.rooms.get_current_state(ROOM) == [second]
    # The replaced event is still an event of the room.
    assert await storage.rooms.get_event(first.event_id) == first
    stored_second = await storage.rooms.get_event(second.event_id)
    assert stored_second is not None and stored_second.prev_content == {"name": "One"}


async def test_prev_content_within_one_batch(storage: Storage) -> None:
    await make_room(storage)
    stored = await storage.rooms.append_events(
        [
            state(ROOM, "m.room.topic", "", {"topic": "a"}),
            state(ROOM, "m.room.topic", "", {"topic": "b"}),
            state(ROOM, "m.room.topic", "", {"topic": "c"}),
        ]
    )
    assert [e.prev_content for e in stored] == [None, {"topic": "a"}, {"topic": "b"}]
    current = await storage.rooms.get_state_event(ROOM, "m.room.topic", "")
    assert current == stored[-1]


async def test_state_is_keyed_by_type_and_state_key_per_room(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    empty_key = await append_one(storage, state(ROOM, "m.custom", "", {"v": 1}))
    key_a = await append_one(storage, state(ROOM, "m.custom", "a", {"v": 2}))
    other_type = await append_one(storage, state(ROOM, "m.other", "", {"v": 3}))
    elsewhere = await append_one(storage, state(OTHER_ROOM, "m.custom", "", {"v": 4}))
    assert key_a.prev_content is None and elsewhere.prev_content is None
    assert await storage.rooms.get_current_state(ROOM) == [empty_key, key_a, other_type]
    assert await storage.rooms.get_current_state(OTHER_ROOM) == [elsewhere]
    assert await storage.rooms.get_state_event(ROOM, "m.custom", "b") is None
    assert await storage.rooms.get_state_event(ROOM, "m.nope", "") is None


async def test_current_state_is_ordered_by_stream_position(storage: Storage) -> None:
    await make_room(storage)
    a = await append_one(storage, state(ROOM, "m.a", "", {"n": 1}))
    b = await append_one(storage, state(ROOM, "m.b", "", {"n": 1}))
    c = await append_one(storage, state(ROOM, "m.c", "", {"n": 1}))
    a2 = await append_one(storage, state(ROOM, "m.a", "", {"n": 2}))
    assert await storage.rooms.get_current_state(ROOM) == [b, c, a2]
    assert a2.prev_content == a.content


async def test_messages_are_not_state(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, message(ROOM))
    assert await storage.rooms.get_current_state(ROOM) == []


async def test_unknown_room_state_is_empty(storage: Storage) -> None:
    assert await storage.rooms.get_current_state(ROOM) == []
    assert await storage.rooms.get_state_event(ROOM, "m.room.name", "") is None


async def _assert_nothing_written(
    storage: Storage, attempted: list[NewEvent], pos_before: int, state_before: list[Event]
) -> None:
    assert await storage.rooms.current_stream_pos() == pos_before
    assert await storage.rooms.get_current_state(ROOM) == state_before
    for new in attempted:
        assert await storage.rooms.get_event(new.event_id) is None


async def test_unknown_room_is_not_found_and_nothing_is_written(storage: Storage) -> None:
    await make_room(storage)
    old = await append_one(storage, state(ROOM, "m.room.name", "", {"name": "old"}))
    pos_before = await storage.rooms.current_stream_pos()
    batch = [
        state(ROOM, "m.room.name", "", {"name": "new"}),
        member(ROOM, BOB),
        message("!unknown:example.org"),
    ]
    with pytest.raises(NotFound):
        await storage.rooms.append_events(batch)
    await _assert_nothing_written(storage, batch, pos_before, [old])
    assert await storage.rooms.get_membership(ROOM, BOB) is None
    assert await storage.rooms.get_latest_positions([ROOM]) == {ROOM: old.stream_pos}
    assert await storage.rooms.get_room("!unknown:example.org") is None


async def test_existing_event_id_conflicts_and_nothing_is_written(storage: Storage) -> None:
    await make_room(storage)
    old = await append_one(storage, state(ROOM, "m.room.name", "", {"name": "old"}))
    pos_before = await storage.rooms.current_stream_pos()
    batch = [
        state(ROOM, "m.room.name", "", {"name": "new"}),
        member(ROOM, BOB),
        message(ROOM, event_id=old.event_id),
    ]
    with pytest.raises(Conflict):
        await storage.rooms.append_events(batch)
    await _assert_nothing_written(storage, batch[:2], pos_before, [old])
    assert await storage.rooms.get_event(old.event_id) == old
    assert await storage.rooms.get_membership(ROOM, BOB) is None
    assert await storage.rooms.get_latest_positions([ROOM]) == {ROOM: old.stream_pos}
    events = await storage.rooms.get_room_events(
        ROOM, after=None, before=None, limit=10, newest_first=False
    )
    assert events == [old]


async def test_repeated_event_id_in_one_batch_conflicts(storage: Storage) -> None:
    await make_room(storage)
    first = message(ROOM)
    batch = [first, member(ROOM, BOB), message(ROOM, event_id=first.event_id, body="dup")]
    with pytest.raises(Conflict):
        await storage.rooms.append_events(batch)
    await _assert_nothing_written(storage, batch[:2], 0, [])
    assert await storage.rooms.get_room_members(ROOM) == []


async def test_event_ids_are_global_across_rooms(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    first = await append_one(storage, message(ROOM))
    with pytest.raises(Conflict):
        await storage.rooms.append_events([message(OTHER_ROOM, event_id=first.event_id)])
    assert await storage.rooms.get_event(first.event_id) == first
    assert await storage.rooms.get_latest_positions([OTHER_ROOM]) == {}


async def test_store_usable_after_failed_append(storage: Storage) -> None:
    await make_room(storage)
    with pytest.raises(NotFound):
        await storage.rooms.append_events([message(ROOM), message("!gone:example.org")])
    stored = await append_one(storage, message(ROOM))
    assert await storage.rooms.get_event(stored.event_id) == stored
    assert await storage.rooms.current_stream_pos() == stored.stream_pos
