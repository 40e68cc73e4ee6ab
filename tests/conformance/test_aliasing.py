"""Returned values are never aliased to the store, and neither are stored arguments."""

from __future__ import annotations

from backends import Storage
from backends.records import JsonDict, NewEvent

from .records import ALICE, ROOM, append_one, event_id, make_room


def _state_with_nested(content_value: str) -> NewEvent:
    return NewEvent(
        event_id=event_id(),
        room_id=ROOM,
        sender=ALICE,
        type="m.room.topic",
        state_key="",
        content={"topic": content_value, "nested": {"list": [1]}},
        origin_server_ts=1,
        unsigned={"u": {"list": [1]}},
    )


async def test_mutating_returned_events_changes_nothing(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, _state_with_nested("one"))
    returned = await append_one(storage, _state_with_nested("two"))
    returned.content["nested"]["list"].append("x")
    returned.content["topic"] = "hacked"
    returned.unsigned["u"]["list"].append("x")
    assert returned.prev_content is not None
    returned.prev_content["topic"] = "hacked"

    for event in [
        await storage.rooms.get_event(returned.event_id),
        await storage.rooms.get_state_event(ROOM, "m.room.topic", ""),
        (await storage.rooms.get_current_state(ROOM))[0],
        (
            await storage.rooms.get_room_events(
                ROOM, after=None, before=None, limit=1, newest_first=True
            )
        )[0],
    ]:
        assert event is not None
        assert event.content == {"topic": "two", "nested": {"list": [1]}}
        assert event.unsigned == {"u": {"list": [1]}}
        assert event.prev_content == {"topic": "one", "nested": {"list": [1]}}
        # Mutate this copy as well: the next read must not see it either.
        event.content["nested"]["list"].append("y")
        assert event.prev_content is not None
        event.prev_content["nested"]["list"].append("y")


async def test_mutating_appended_input_changes_nothing(storage: Storage) -> None:
    await make_room(storage)
    new = _state_with_nested("one")
    await append_one(storage, new)
    new.content["nested"]["list"].append("x")
    new.unsigned["u"]["list"].append("x")
    stored = await storage.rooms.get_event(new.event_id)
    assert stored is not None
    assert stored.content == {"topic": "one", "nested": {"list": [1]}}
    assert stored.unsigned == {"u": {"list": [1]}}


async def test_returned_event_is_not_the_input_dict(storage: Storage) -> None:
    await make_room(storage)
    new = _state_with_nested("one")
    returned = await append_one(storage, new)
    returned.content["topic"] = "changed"
    assert new.content["topic"] == "one"


async def test_account_data_is_not_aliased(storage: Storage) -> None:
    content: JsonDict = {"list": [1], "inner": {"k": "v"}}
    await storage.account_data.put_account_data(ALICE, None, "m.t", content)
    content["list"].append(2)
    content["inner"]["k"] = "changed"

    got = await storage.account_data.get_account_data(ALICE, None, "m.t")
    assert got == {"list": [1], "inner": {"k": "v"}}
    got["list"].append(3)
    [record] = await storage.account_data.get_account_data_since(ALICE, 0)
    assert record.content == {"list": [1], "inner": {"k": "v"}}
    record.content["inner"]["k"] = "changed"
    assert await storage.account_data.get_account_data(ALICE, None, "m.t") == {
        "list": [1],
        "inner": {"k": "v"},
    }


async def test_filters_are_not_aliased(storage: Storage) -> None:
    definition: JsonDict = {"room": {"rooms": ["!a:example.org"]}}
    filter_id = await storage.filters.create_filter(ALICE, definition)
    definition["room"]["rooms"].append("!b:example.org")
    got = await storage.filters.get_filter(ALICE, filter_id)
    assert got == {"room": {"rooms": ["!a:example.org"]}}
    got["room"]["rooms"].clear()
    assert await storage.filters.get_filter(ALICE, filter_id) == {
        "room": {"rooms": ["!a:example.org"]}
    }
