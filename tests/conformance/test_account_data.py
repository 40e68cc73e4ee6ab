"""AccountDataStore: per-user global and per-room data, with stream positions."""

from __future__ import annotations

from backends import Storage
from backends.records import AccountDataRecord

from .records import ALICE, BOB, OTHER_ROOM, ROOM


async def test_put_and_get_round_trip(storage: Storage) -> None:
    content = {"a": [1, {"b": None}], "ü": "ß", "n": 1.5, "t": True}
    pos = await storage.account_data.put_account_data(ALICE, None, "m.custom", content)
    assert pos > 0
    assert await storage.account_data.get_account_data(ALICE, None, "m.custom") == content


async def test_unknown_is_none(storage: Storage) -> None:
    assert await storage.account_data.get_account_data(ALICE, None, "m.custom") is None
    assert await storage.account_data.get_account_data(ALICE, ROOM, "m.custom") is None
    assert await storage.account_data.get_account_data_since(ALICE, 0) == []


async def test_put_replaces_content(storage: Storage) -> None:
    first = await storage.account_data.put_account_data(ALICE, None, "m.t", {"v": 1, "old": 1})
    second = await storage.account_data.put_account_data(ALICE, None, "m.t", {"v": 2})
    assert second > first
    assert await storage.account_data.get_account_data(ALICE, None, "m.t") == {"v": 2}


async def test_global_room_user_and_type_are_separate_keys(storage: Storage) -> None:
    await storage.account_data.put_account_data(ALICE, None, "m.t", {"where": "global"})
    await storage.account_data.put_account_data(ALICE, ROOM, "m.t", {"where": "room"})
    await storage.account_data.put_account_data(ALICE, OTHER_ROOM, "m.t", {"where": "other"})
    await storage.account_data.put_account_data(ALICE, None, "m.u", {"where": "type"})
    await storage.account_data.put_account_data(BOB, None, "m.t", {"where": "bob"})
    get = storage.account_data.get_account_data
    assert await get(ALICE, None, "m.t") == {"where": "global"}
    assert await get(ALICE, ROOM, "m.t") == {"where": "room"}
    assert await get(ALICE, OTHER_ROOM, "m.t") == {"where": "other"}
    assert await get(ALICE, None, "m.u") == {"where": "type"}
    assert await get(BOB, None, "m.t") == {"where": "bob"}
    assert await get(BOB, ROOM, "m.t") is None


async def test_empty_content_is_not_absent(storage: Storage) -> None:
    await storage.account_data.put_account_data(ALICE, None, "m.t", {})
    assert await storage.account_data.get_account_data(ALICE, None, "m.t") == {}


async def test_since_returns_latest_values_after_position_in_order(storage: Storage) -> None:
    put = storage.account_data.put_account_data
    p1 = await put(ALICE, None, "m.a", {"v": 1})
    p2 = await put(ALICE, ROOM, "m.b", {"v": 1})
    p3 = await put(ALICE, None, "m.a", {"v": 2})
    p4 = await put(BOB, None, "m.a", {"v": "bob"})
    p5 = await put(ALICE, None, "m.c", {"v": 1})
    assert p1 < p2 < p3 < p4 < p5

    assert await storage.account_data.get_account_data_since(ALICE, 0) == [
        AccountDataRecord(ALICE, ROOM, "m.b", {"v": 1}, p2),
        AccountDataRecord(ALICE, None, "m.a", {"v": 2}, p3),
        AccountDataRecord(ALICE, None, "m.c", {"v": 1}, p5),
    ]
    assert await storage.account_data.get_account_data_since(ALICE, p2) == [
        AccountDataRecord(ALICE, None, "m.a", {"v": 2}, p3),
        AccountDataRecord(ALICE, None, "m.c", {"v": 1}, p5),
    ]
    assert await storage.account_data.get_account_data_since(ALICE, p3) == [
        AccountDataRecord(ALICE, None, "m.c", {"v": 1}, p5),
    ]
    assert await storage.account_data.get_account_data_since(ALICE, p5) == []
    assert await storage.account_data.get_account_data_since(BOB, 0) == [
        AccountDataRecord(BOB, None, "m.a", {"v": "bob"}, p4),
    ]


async def test_rewriting_moves_a_key_to_its_new_position(storage: Storage) -> None:
    put = storage.account_data.put_account_data
    await put(ALICE, None, "m.a", {"v": 1})
    p2 = await put(ALICE, None, "m.b", {"v": 1})
    p3 = await put(ALICE, None, "m.a", {"v": 2})
    since = await storage.account_data.get_account_data_since(ALICE, 0)
    assert [(r.type, r.stream_pos) for r in since] == [("m.b", p2), ("m.a", p3)]


async def test_separators_inside_key_parts_do_not_collide(storage: Storage) -> None:
    room = "!r:example.org"
    await storage.account_data.put_account_data(ALICE, room, "m.t", {"v": "room"})
    await storage.account_data.put_account_data(ALICE, None, f"{room}:m.t", {"v": "type"})
    await storage.account_data.put_account_data(ALICE, None, f"{room}|m.t", {"v": "pipe"})
    get = storage.account_data.get_account_data
    assert await get(ALICE, room, "m.t") == {"v": "room"}
    assert await get(ALICE, None, f"{room}:m.t") == {"v": "type"}
    assert await get(ALICE, None, f"{room}|m.t") == {"v": "pipe"}
    assert len(await storage.account_data.get_account_data_since(ALICE, 0)) == 3


async def test_since_with_out_of_range_positions(storage: Storage) -> None:
    pos = await storage.account_data.put_account_data(ALICE, None, "m.t", {})
    assert await storage.account_data.get_account_data_since(ALICE, 2**80) == []
    [record] = await storage.account_data.get_account_data_since(ALICE, -(2**80))
    assert record.stream_pos == pos
