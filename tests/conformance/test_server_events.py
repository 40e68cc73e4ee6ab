"""Server-generated events: stored at positions of the server-wide stream, read back by
whom they are aimed at (one user, every user, or a room's members)."""

from __future__ import annotations

import itertools
from functools import partial

import pytest

from backends import Conflict, Storage
from backends.records import JsonDict, ServerEvent, ServerEventTarget

from .records import (
    ALICE,
    BOB,
    CAROL,
    OTHER_ROOM,
    ROOM,
    append_one,
    as_stored,
    make_room,
    message,
    server_event,
)
from .support import gather

USER = ServerEventTarget.USER
ALL = ServerEventTarget.ALL_USERS
ROOM_KIND = ServerEventTarget.ROOM
EVERYTHING = 2**62


async def _get(
    storage: Storage,
    user_id: str,
    room_ids: list[str] | None = None,
    *,
    after: int = 0,
    upto: int = EVERYTHING,
    limit: int = 1_000,
) -> list[ServerEvent]:
    return await storage.server_events.get_server_events(
        user_id, room_ids or [], after=after, upto=upto, limit=limit
    )


async def test_add_returns_the_event_at_a_new_position(storage: Storage) -> None:
    before = await storage.rooms.current_stream_pos()
    new = server_event(USER, ALICE, content={"body": "hello"})
    stored = await storage.server_events.add_server_event(new)
    assert stored.stream_pos > before
    assert stored == as_stored(new, stored.stream_pos)
    assert await storage.rooms.current_stream_pos() == stored.stream_pos
    assert await _get(storage, ALICE) == [stored]


async def test_an_event_for_everyone_has_no_target(storage: Storage) -> None:
    new = server_event(ALL, None)
    stored = await storage.server_events.add_server_event(new)
    assert stored == as_stored(new, stored.stream_pos)
    assert stored.target is None
    assert await _get(storage, ALICE) == [stored]


async def test_server_events_share_the_stream(storage: Storage) -> None:
    await make_room(storage)
    add = storage.server_events.add_server_event
    positions: list[int] = []
    for i in range(3):
        positions.append((await add(server_event(USER, ALICE))).stream_pos)
        positions.append((await append_one(storage, message(ROOM))).stream_pos)
        positions.append((await add(server_event(ALL, None))).stream_pos)
        positions.append(await storage.account_data.put_account_data(ALICE, None, "m.x", {"i": i}))
        positions.append((await add(server_event(ROOM_KIND, ROOM))).stream_pos)
        positions.append((await storage.presence.put_presence(BOB, "online", None, i)).stream_pos)
        change = await storage.typing.set_typing(ROOM, f"@t{i}:example.org", "s", 10_000)
        assert change is not None
        positions.append(change.stream_pos)
        assert await storage.rooms.current_stream_pos() == positions[-1]
    assert positions[0] > 0
    assert all(a < b for a, b in itertools.pairwise(positions))


async def test_a_duplicate_event_id_conflicts_and_writes_nothing(storage: Storage) -> None:
    first = await storage.server_events.add_server_event(server_event(USER, ALICE))
    before = await storage.rooms.current_stream_pos()
    for duplicate in [
        server_event(USER, ALICE, event_id=first.event_id, content={"body": "again"}),
        server_event(ALL, None, event_id=first.event_id),
        server_event(ROOM_KIND, ROOM, event_id=first.event_id),
    ]:
        with pytest.raises(Conflict):
            await storage.server_events.add_server_event(duplicate)
        # The position was not consumed.
        assert await storage.rooms.current_stream_pos() == before
    assert await _get(storage, ALICE, [ROOM]) == [first]
    assert await _get(storage, BOB, [ROOM]) == []
    after = await storage.server_events.add_server_event(server_event(USER, BOB))
    assert after.stream_pos > before
    assert await _get(storage, BOB) == [after]


async def test_concurrent_adds_of_one_id_store_it_once(storage: Storage) -> None:
    template = server_event(USER, ALICE)

    async def add(i: int) -> ServerEvent | None:
        try:
            return await storage.server_events.add_server_event(
                server_event(USER, ALICE, event_id=template.event_id, content={"i": i})
            )
        except Conflict:
            return None

    results = await gather(*[partial(add, i) for i in range(10)])
    [winner] = [r for r in results if r is not None]
    assert await _get(storage, ALICE) == [winner]
    assert await storage.rooms.current_stream_pos() == winner.stream_pos


async def test_user_events_reach_only_that_user(storage: Storage) -> None:
    add = storage.server_events.add_server_event
    to_alice = await add(server_event(USER, ALICE))
    to_bob = await add(server_event(USER, BOB))
    assert await _get(storage, ALICE) == [to_alice]
    assert await _get(storage, BOB, [ROOM]) == [to_bob]
    assert await _get(storage, CAROL, [ROOM, OTHER_ROOM]) == []


async def test_events_for_all_users_reach_everyone(storage: Storage) -> None:
    add = storage.server_events.add_server_event
    to_all = await add(server_event(ALL, None))
    to_bob = await add(server_event(USER, BOB))
    assert await _get(storage, ALICE) == [to_all]
    assert await _get(storage, BOB) == [to_all, to_bob]
    assert await _get(storage, "@nobody:example.org", [ROOM]) == [to_all]


async def test_room_events_reach_only_the_given_rooms(storage: Storage) -> None:
    add = storage.server_events.add_server_event
    in_room = await add(server_event(ROOM_KIND, ROOM))
    in_other = await add(server_event(ROOM_KIND, OTHER_ROOM))
    assert await _get(storage, ALICE) == []
    assert await _get(storage, ALICE, [ROOM]) == [in_room]
    assert await _get(storage, ALICE, [OTHER_ROOM]) == [in_other]
    assert await _get(storage, ALICE, [OTHER_ROOM, ROOM]) == [in_room, in_other]
    assert await _get(storage, ALICE, ["!elsewhere:example.org"]) == []
    # Whoever asks: membership is the caller's business.
    assert await _get(storage, BOB, [ROOM]) == [in_room]
    # A room named twice is reported once.
    assert await _get(storage, ALICE, [ROOM, ROOM, ROOM]) == [in_room]


async def test_the_kind_and_the_target_must_both_match(storage: Storage) -> None:
    add = storage.server_events.add_server_event
    await add(server_event(USER, ALICE))
    await add(server_event(ROOM_KIND, ROOM))
    # A user id among the rooms, or a room id as the user, matches nothing.
    assert await _get(storage, BOB, [ALICE]) == []
    assert await _get(storage, ROOM, []) == []


async def test_after_is_exclusive_and_upto_inclusive(storage: Storage) -> None:
    add = storage.server_events.add_server_event
    events = [await add(server_event(USER, ALICE, content={"i": i})) for i in range(5)]
    pos = [e.stream_pos for e in events]
    assert await _get(storage, ALICE, after=pos[0], upto=pos[3]) == events[1:4]
    assert await _get(storage, ALICE, after=pos[1] - 1, upto=pos[1]) == [events[1]]
    assert await _get(storage, ALICE, after=pos[2], upto=pos[2]) == []
    assert await _get(storage, ALICE, after=pos[3], upto=pos[1]) == []
    assert await _get(storage, ALICE, after=pos[4]) == []
    assert await _get(storage, ALICE, after=0, upto=0) == []
    assert await _get(storage, ALICE, after=0, upto=pos[4]) == events
    assert await _get(storage, ALICE, after=-5, upto=2**63 - 1) == events


async def test_events_are_ordered_by_position_across_targets(storage: Storage) -> None:
    await make_room(storage)
    add = storage.server_events.add_server_event
    mine: list[ServerEvent] = []
    for i in range(4):
        mine.append(await add(server_event(ROOM_KIND, ROOM, content={"i": i})))
        await add(server_event(USER, BOB))
        mine.append(await add(server_event(ALL, None, content={"i": i})))
        await append_one(storage, message(ROOM))
        mine.append(await add(server_event(USER, ALICE, content={"i": i})))
        await add(server_event(ROOM_KIND, OTHER_ROOM))
        mine.append(await add(server_event(ROOM_KIND, f"!r{i}:example.org")))
    rooms = [ROOM] + [f"!r{i}:example.org" for i in range(4)]
    found = await _get(storage, ALICE, rooms)
    assert found == mine
    assert [e.stream_pos for e in found] == sorted(e.stream_pos for e in found)


async def test_limit_takes_the_oldest(storage: Storage) -> None:
    add = storage.server_events.add_server_event
    mine: list[ServerEvent] = []
    for i in range(6):
        await add(server_event(USER, BOB))  # not Alice's: never counts towards the limit
        kind, target = [(USER, ALICE), (ALL, None), (ROOM_KIND, ROOM)][i % 3]
        mine.append(await add(server_event(kind, target, content={"i": i})))
    assert await _get(storage, ALICE, [ROOM], limit=2) == mine[:2]
    assert await _get(storage, ALICE, [ROOM], limit=6) == mine
    assert await _get(storage, ALICE, [ROOM], limit=100) == mine
    assert await _get(storage, ALICE, [ROOM], after=mine[1].stream_pos, limit=3) == mine[2:5]
    assert await _get(storage, ALICE, [ROOM], upto=mine[3].stream_pos, limit=10) == mine[:4]
    assert await _get(storage, ALICE, [ROOM], limit=0) == []


async def test_many_rooms(storage: Storage) -> None:
    room_ids = [f"!r{i:04}:example.org" for i in range(1_200)]
    add = storage.server_events.add_server_event
    aimed = [await add(server_event(ROOM_KIND, room_id)) for room_id in room_ids[::97]]
    to_alice = await add(server_event(USER, ALICE))
    found = await _get(storage, ALICE, list(reversed(room_ids)))
    assert found == [*aimed, to_alice]
    middle = aimed[len(aimed) // 2].stream_pos
    assert (
        await _get(storage, ALICE, room_ids, after=middle, limit=3)
        == [e for e in [*aimed, to_alice] if e.stream_pos > middle][:3]
    )
    assert await _get(storage, ALICE, room_ids, limit=2) == aimed[:2]


async def test_content_round_trips(storage: Storage) -> None:
    content: JsonDict = {
        "body": "Maintenance at 03:00 ✨ ünïcode",
        "nested": {"list": [1, 2.5, None, True, {"deep": ["x", {"y": []}]}], "empty": {}},
        "number": -12345678901234,
        "escaped": 'quote " backslash \\ newline \n nul \u0000',
    }
    new = server_event(USER, ALICE, type="m.server_notice.custom", content=content)
    stored = await storage.server_events.add_server_event(new)
    assert stored.content == content
    assert await _get(storage, ALICE) == [as_stored(new, stored.stream_pos)]


async def test_content_is_not_aliased(storage: Storage) -> None:
    content: JsonDict = {"body": "original", "nested": {"list": [1]}}
    new = server_event(USER, ALICE, content=content)
    stored = await storage.server_events.add_server_event(new)
    expected = ServerEvent(
        stream_pos=stored.stream_pos,
        event_id=new.event_id,
        sender=new.sender,
        type=new.type,
        content={"body": "original", "nested": {"list": [1]}},
        origin_server_ts=new.origin_server_ts,
        target_kind=USER,
        target=ALICE,
    )
    # The caller's dict, after the add ...
    content["body"] = "changed"
    content["nested"]["list"].append("x")
    # ... the returned event ...
    stored.content["nested"]["list"].append("y")
    stored.content["extra"] = True
    # ... and a read one.
    [read] = await _get(storage, ALICE)
    read.content["nested"]["list"].append("z")
    read.content.pop("body")
    assert await _get(storage, ALICE) == [expected]


async def test_concurrent_adds_get_distinct_positions(storage: Storage) -> None:
    targets = [(USER, ALICE), (ALL, None), (ROOM_KIND, ROOM)]
    news = [server_event(*targets[i % 3], content={"i": i}) for i in range(20)]
    results = await gather(*[partial(storage.server_events.add_server_event, n) for n in news])
    positions = [e.stream_pos for e in results]
    assert len(set(positions)) == len(positions)
    assert await storage.rooms.current_stream_pos() == max(positions)
    assert await _get(storage, ALICE, [ROOM]) == sorted(results, key=lambda e: e.stream_pos)
