"""Concurrent writers: distinct positions, nothing lost, no reader ever sees a gap."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from functools import partial

import trio
import trio.lowlevel

from backends import Conflict, Storage
from backends.records import Event

from .records import (
    ALICE,
    BOB,
    OTHER_ROOM,
    ROOM,
    device,
    make_room,
    member,
    message,
    room,
    state,
    token,
    user,
)

WRITERS = 20


async def _gather(*jobs: Callable[[], Awaitable[object]]) -> list[object]:
    """Run the jobs concurrently; their results (or exceptions) in job order."""
    results: list[object] = [None] * len(jobs)

    async def run(index: int, job: Callable[[], Awaitable[object]]) -> None:
        try:
            results[index] = await job()
        except Exception as exc:
            results[index] = exc

    async with trio.open_nursery() as nursery:
        for index, job in enumerate(jobs):
            nursery.start_soon(run, index, job)
    return results


async def test_concurrent_appends_get_distinct_positions_and_all_are_stored(
    storage: Storage,
) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    batches = [
        [message(ROOM, body=f"{i}a"), message(OTHER_ROOM, body=f"{i}b"), message(ROOM)]
        for i in range(WRITERS)
    ]
    results = await _gather(
        *[lambda batch=batch: storage.rooms.append_events(batch) for batch in batches]
    )
    stored: list[Event] = []
    for batch, result in zip(batches, results, strict=True):
        assert isinstance(result, list)
        assert [e.event_id for e in result] == [e.event_id for e in batch]
        positions = [e.stream_pos for e in result]
        assert positions == sorted(positions)
        stored.extend(result)
    positions = [e.stream_pos for e in stored]
    assert len(set(positions)) == len(positions)
    assert await storage.rooms.current_stream_pos() == max(positions)
    for room_id in (ROOM, OTHER_ROOM):
        expected = sorted((e for e in stored if e.room_id == room_id), key=lambda e: e.stream_pos)
        listed = await storage.rooms.get_room_events(
            room_id, after=None, before=None, limit=1000, newest_first=False
        )
        assert listed == expected
    assert await storage.rooms.get_latest_positions([ROOM, OTHER_ROOM]) == {
        ROOM: max(e.stream_pos for e in stored if e.room_id == ROOM),
        OTHER_ROOM: max(e.stream_pos for e in stored if e.room_id == OTHER_ROOM),
    }


async def test_concurrent_account_data_puts(storage: Storage) -> None:
    distinct = [
        lambda i=i: storage.account_data.put_account_data(ALICE, None, f"m.k{i}", {"i": i})
        for i in range(WRITERS)
    ]
    same = [
        lambda i=i: storage.account_data.put_account_data(BOB, ROOM, "m.same", {"i": i})
        for i in range(WRITERS)
    ]
    results = await _gather(*distinct, *same)
    assert all(isinstance(r, int) for r in results)
    positions = [r for r in results if isinstance(r, int)]
    assert len(set(positions)) == len(positions)
    for i in range(WRITERS):
        assert await storage.account_data.get_account_data(ALICE, None, f"m.k{i}") == {"i": i}
    # The value with the highest position is the one that stays.
    same_positions = positions[WRITERS:]
    winner = same_positions.index(max(same_positions))
    assert await storage.account_data.get_account_data(BOB, ROOM, "m.same") == {"i": winner}
    [record] = await storage.account_data.get_account_data_since(BOB, 0)
    assert (record.content, record.stream_pos) == ({"i": winner}, max(same_positions))
    since = await storage.account_data.get_account_data_since(ALICE, 0)
    assert [r.stream_pos for r in since] == sorted(positions[:WRITERS])


async def test_concurrent_events_and_account_data_share_the_counter(storage: Storage) -> None:
    await make_room(storage)
    jobs: list[Callable[[], Awaitable[object]]] = []
    for i in range(WRITERS // 2):
        jobs.append(partial(storage.rooms.append_events, [message(ROOM)]))
        jobs.append(partial(storage.account_data.put_account_data, ALICE, None, f"m.{i}", {}))
    results = await _gather(*jobs)
    positions: list[int] = []
    for result in results:
        if isinstance(result, list):
            positions.extend(e.stream_pos for e in result)
        else:
            assert isinstance(result, int)
            positions.append(result)
    assert len(set(positions)) == len(positions) == WRITERS
    assert await storage.rooms.current_stream_pos() == max(positions)


async def test_readers_never_see_a_gap(storage: Storage) -> None:
    """Whatever position a reader sees, every lower position is already visible:
    a /sync up to current_stream_pos() must never miss an event committed later."""
    await make_room(storage)
    observations: list[tuple[int, list[int]]] = []
    done = trio.Event()

    async def writer(i: int) -> None:
        for _ in range(3):
            await storage.rooms.append_events([message(ROOM, body=f"{i}")])

    async def reader() -> None:
        while not done.is_set():
            current = await storage.rooms.current_stream_pos()
            events = await storage.rooms.get_room_events(
                ROOM, after=None, before=current + 1, limit=10_000, newest_first=False
            )
            observations.append((current, [e.stream_pos for e in events]))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        async with trio.open_nursery() as writers:
            for i in range(WRITERS // 2):
                writers.start_soon(writer, i)
        done.set()

    final = await storage.rooms.get_room_events(
        ROOM, after=None, before=None, limit=10_000, newest_first=False
    )
    final_positions = [e.stream_pos for e in final]
    assert len(final_positions) == 3 * (WRITERS // 2)
    assert observations
    for current, seen in observations:
        assert seen == [p for p in final_positions if p <= current]


async def test_concurrent_state_changes_chain_prev_content(storage: Storage) -> None:
    await make_room(storage)
    results = await _gather(
        *[
            lambda i=i: storage.rooms.append_events([state(ROOM, "m.room.topic", "", {"n": i})])
            for i in range(WRITERS)
        ]
    )
    events = sorted(
        (e for r in results if isinstance(r, list) for e in r), key=lambda e: e.stream_pos
    )
    assert len(events) == WRITERS
    assert events[0].prev_content is None
    for previous, event in itertools.pairwise(events):
        assert event.prev_content == previous.content
        stored = await storage.rooms.get_event(event.event_id)
        assert stored is not None and stored.prev_content == previous.content
    assert await storage.rooms.get_current_state(ROOM) == [events[-1]]


async def test_concurrent_joins_are_all_recorded(storage: Storage) -> None:
    await make_room(storage)
    user_ids = [f"@u{i:02}:example.org" for i in range(WRITERS)]
    await _gather(*[lambda u=u: storage.rooms.append_events([member(ROOM, u)]) for u in user_ids])
    members = await storage.rooms.get_room_members(ROOM)
    assert [m.user_id for m in members] == user_ids
    assert {m.membership for m in members} == {"join"}


async def test_concurrent_creates_of_one_id_one_wins(storage: Storage) -> None:
    users = await _gather(
        *[lambda i=i: storage.users.create_user(user(ALICE, displayname=f"{i}")) for i in range(10)]
    )
    rooms = await _gather(*[lambda: storage.rooms.create_room(room(ROOM)) for _ in range(10)])
    for results in (users, rooms):
        assert sum(r is None for r in results) == 1
        assert all(r is None or isinstance(r, Conflict) for r in results)
    winner = users.index(None)
    stored = await storage.users.get_user(ALICE)
    assert stored is not None and stored.displayname == f"{winner}"


async def test_concurrent_appends_of_one_event_id_one_wins(storage: Storage) -> None:
    await make_room(storage)
    duplicate = message(ROOM)
    results = await _gather(
        *[
            lambda i=i: storage.rooms.append_events([message(ROOM, body=f"{i}"), duplicate])
            for i in range(10)
        ]
    )
    assert sum(isinstance(r, list) for r in results) == 1
    assert all(isinstance(r, list | Conflict) for r in results)
    events = await storage.rooms.get_room_events(
        ROOM, after=None, before=None, limit=100, newest_first=False
    )
    assert len(events) == 2


async def test_concurrent_logins_to_one_device_leave_one_token(storage: Storage) -> None:
    tokens = [f"token{i}" for i in range(10)]
    results = await _gather(
        *[
            lambda t=t: storage.devices.add_device_with_token(device(ALICE, "DEV"), token(t))
            for t in tokens
        ]
    )
    assert results == [None] * len(tokens)
    valid = [t for t in tokens if await storage.devices.get_token(t) is not None]
    assert len(valid) == 1
    assert [d.device_id for d in await storage.devices.list_devices(ALICE)] == ["DEV"]


async def test_concurrent_filters_get_distinct_ids(storage: Storage) -> None:
    results = await _gather(
        *[lambda i=i: storage.filters.create_filter(ALICE, {"i": i}) for i in range(WRITERS)]
    )
    assert len(set(results)) == WRITERS
    for i, filter_id in enumerate(results):
        assert isinstance(filter_id, str)
        assert await storage.filters.get_filter(ALICE, filter_id) == {"i": i}


async def test_concurrent_txn_puts_first_write_wins(storage: Storage) -> None:
    candidates = [f"$e{i}" for i in range(10)]
    await _gather(
        *[lambda e=e: storage.txns.put_txn_event(ALICE, "DEV", "txn", e) for e in candidates]
    )
    stored = await storage.txns.get_txn_event(ALICE, "DEV", "txn")
    assert stored in candidates
    await storage.txns.put_txn_event(ALICE, "DEV", "txn", "$late")
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn") == stored
