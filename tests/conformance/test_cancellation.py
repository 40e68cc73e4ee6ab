"""Cancellation: a cancelled operation happens entirely or not at all, and the store
stays consistent and usable."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable
from functools import partial

import trio
import trio.lowlevel
import trio.testing

from backends import DuplicateTransaction, Storage
from backends.protocols import AuthLookup
from backends.records import AccountDataRecord, ClientTxn, NewEvent

from .records import (
    ALICE,
    ROOM,
    append_one,
    device,
    make_room,
    member,
    message,
    server_event,
    session,
    state,
    token,
)

# Cancel after this many scheduler passes: hits different stages of each backend.
CANCEL_POINTS = range(8)


async def _cancel_after(points: int, scope: trio.CancelScope) -> None:
    for _ in range(points):
        await trio.lowlevel.checkpoint()
    scope.cancel()


async def _cancel_when_blocked(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def _check_room_consistent(storage: Storage, batches: list[list[NewEvent]]) -> None:
    """Each batch is stored entirely or not at all, and every view agrees.

    Earlier rounds' batches are not checked again: a later cancellation cannot touch them.
    """
    stored_ids: set[str] = set()
    for batch in batches:
        found = [await storage.rooms.get_event(new.event_id) for new in batch]
        assert all(e is None for e in found) or all(e is not None for e in found), found
        stored_ids.update(e.event_id for e in found if e is not None)
    listed = await storage.rooms.get_room_events(
        ROOM, after=None, before=None, limit=10_000, newest_first=False
    )
    listed_ids = {e.event_id for e in listed}
    assert stored_ids <= listed_ids
    positions = [e.stream_pos for e in listed]
    assert positions == sorted(set(positions))
    current = await storage.rooms.current_stream_pos()
    if listed:
        assert current >= positions[-1]
        assert await storage.rooms.get_latest_positions([ROOM]) == {ROOM: positions[-1]}
    # Usable: a new event lands after everything.
    after = await append_one(storage, message(ROOM, body="after"))
    assert after.stream_pos > current
    members = {m.user_id: m for m in await storage.rooms.get_room_members(ROOM)}
    for user_id, record in members.items():
        state_event = await storage.rooms.get_state_event(ROOM, "m.room.member", user_id)
        assert state_event is not None and state_event.event_id == record.event_id


async def test_append_cancelled_before_it_starts(storage: Storage) -> None:
    await make_room(storage)
    batch = [message(ROOM), member(ROOM, ALICE)]
    with trio.move_on_after(0):
        await storage.rooms.append_events(batch)
    await _check_room_consistent(storage, [batch])


async def test_appends_cancelled_mid_flight_are_all_or_nothing(storage: Storage) -> None:
    await make_room(storage)
    for points in CANCEL_POINTS:
        batches: list[list[NewEvent]] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    batch = [
                        message(ROOM, body=f"{points}/{i}"),
                        member(ROOM, f"@u{points}x{i}:example.org"),
                        state(ROOM, "m.room.topic", "", {"topic": f"{points}/{i}"}),
                    ]
                    batches.append(batch)
                    nursery.start_soon(storage.rooms.append_events, batch)
                nursery.start_soon(_cancel_after, points, scope)
        await _check_room_consistent(storage, batches)
    # The topic's prev_content chain survived the cancellations.
    topics = [
        e
        for e in await storage.rooms.get_room_events(
            ROOM, after=None, before=None, limit=10_000, newest_first=False
        )
        if e.type == "m.room.topic"
    ]
    for previous, event in itertools.pairwise(topics):
        assert event.prev_content == previous.content


async def test_appends_with_a_transaction_cancelled_mid_flight_store_both_or_neither(
    storage: Storage,
) -> None:
    """An event is never stored without its transaction's record, nor the record
    without the event; of two attempts of one transaction at most one is stored."""
    await make_room(storage)

    async def attempt(batch: list[NewEvent], txn: ClientTxn) -> None:
        with contextlib.suppress(DuplicateTransaction):
            await storage.rooms.append_events(batch, txn=txn)

    # Scheduler passes reach different stages of each backend (on SQLite all of them
    # come before its worker thread starts); once every task is blocked, a store that
    # runs in threads is inside its transaction.
    cancellers: list[Callable[[trio.CancelScope], Awaitable[None]]] = [
        partial(_cancel_after, points) for points in CANCEL_POINTS
    ]
    cancellers.append(_cancel_when_blocked)
    for n, cancel in enumerate(cancellers):
        attempts: list[tuple[ClientTxn, list[NewEvent]]] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    txn = ClientTxn(ALICE, "DEV", f"{n}/{i // 2}")
                    batch = [message(ROOM), member(ROOM, f"@u{n}x{i}:example.org")]
                    attempts.append((txn, batch))
                    nursery.start_soon(attempt, batch, txn)
                nursery.start_soon(cancel, scope)
        for txn in dict.fromkeys(t for t, _ in attempts):
            recorded = await storage.txns.get_txn_event(txn.user_id, txn.device_id, txn.txn_key)
            stored = [
                batch[0].event_id
                for t, batch in attempts
                if t == txn and await storage.rooms.get_event(batch[0].event_id) is not None
            ]
            assert stored == ([] if recorded is None else [recorded]), (txn, recorded, stored)
        await _check_room_consistent(storage, [batch for _, batch in attempts])


async def test_cancelled_when_all_tasks_are_blocked(storage: Storage) -> None:
    await make_room(storage)
    batches = [[message(ROOM), member(ROOM, f"@u{i}:example.org")] for i in range(6)]
    async with trio.open_nursery() as nursery:
        for batch in batches:
            nursery.start_soon(storage.rooms.append_events, batch)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    await _check_room_consistent(storage, batches)


async def test_account_data_put_cancelled_is_all_or_nothing(storage: Storage) -> None:
    await storage.account_data.put_account_data(ALICE, None, "m.t", {"v": "old"})
    for points in CANCEL_POINTS:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    storage.account_data.put_account_data, ALICE, None, "m.t", {"v": points}
                )
                nursery.start_soon(_cancel_after, points, scope)
        value = await storage.account_data.get_account_data(ALICE, None, "m.t")
        [record] = await storage.account_data.get_account_data_since(ALICE, 0)
        assert record.content == value
        assert record.stream_pos <= await storage.rooms.current_stream_pos()
    pos = await storage.account_data.put_account_data(ALICE, None, "m.t", {"v": "new"})
    assert await storage.account_data.get_account_data_since(ALICE, pos - 1) == [
        AccountDataRecord(ALICE, None, "m.t", {"v": "new"}, pos)
    ]


async def test_login_cancelled_is_all_or_nothing(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV", "old"), token("t-old"))
    current = "t-old"
    for points in CANCEL_POINTS:
        new = f"t-{points}"
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    storage.devices.add_device_with_token,
                    device(ALICE, "DEV", f"name {points}"),
                    token(new),
                )
                nursery.start_soon(_cancel_after, points, scope)
        old_valid = await storage.devices.get_token(current) is not None
        new_valid = await storage.devices.get_token(new) is not None
        assert old_valid != new_valid, (old_valid, new_valid)
        stored = await storage.devices.get_device(ALICE, "DEV")
        assert stored is not None
        if new_valid:
            assert stored.display_name == f"name {points}"
            current = new
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t-final"))
    assert await storage.devices.get_token(current) is None
    assert await storage.devices.get_token("t-final") is not None


async def test_session_starts_cancelled_mid_flight_leave_one_active_session(
    storage: Storage,
) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t"))
    for points in CANCEL_POINTS:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    record = session(f"s{points}-{i}")
                    nursery.start_soon(
                        partial(storage.sessions.start_session, replace=i % 2 == 0), record
                    )
                nursery.start_soon(_cancel_after, points, scope)
        lookup = await storage.sessions.authenticate("t", None)
        assert lookup is not None
        stored = await storage.sessions.list_user_sessions(ALICE)
        if lookup.session is not None:
            assert lookup.session in stored
        fresh = session(f"fresh{points}")
        started = await storage.sessions.start_session(fresh, replace=False)
        assert started.session == (lookup.session or fresh)
        for record in await storage.sessions.list_user_sessions(ALICE):
            assert await storage.sessions.end_session(record.session_id) == record
        assert await storage.sessions.authenticate("t", None) == AuthLookup(token("t"), None)


async def test_typing_cancelled_mid_flight_stays_consistent(storage: Storage) -> None:
    users = [f"@u{i}:example.org" for i in range(4)]
    for points in CANCEL_POINTS:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for i, user_id in enumerate(users):
                    if (i + points) % 3 == 0:
                        nursery.start_soon(storage.typing.clear_typing, ROOM, user_id)
                    else:
                        nursery.start_soon(storage.typing.set_typing, ROOM, user_id, "s", 1_000)
                nursery.start_soon(_cancel_after, points, scope)
        current = await storage.rooms.current_stream_pos()
        shown = await storage.typing.get_typing([ROOM])
        typing_users = set(shown[ROOM].user_ids) if ROOM in shown else set()
        if ROOM in shown:
            assert shown[ROOM].stream_pos <= current
        # Every entry the room shows is stored, and nothing else is.
        for user_id in users:
            change = await storage.typing.clear_typing(ROOM, user_id)
            assert (change is not None) == (user_id in typing_users)
            if change is not None:
                assert change.stream_pos > current
                typing_users.discard(user_id)
                assert set(change.user_ids) == typing_users


async def test_server_event_adds_cancelled_mid_flight_are_all_or_nothing(
    storage: Storage,
) -> None:
    added: list[str] = []
    for points in CANCEL_POINTS:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    new = server_event(content={"points": points, "i": i})
                    added.append(new.event_id)
                    nursery.start_soon(storage.server_events.add_server_event, new)
                nursery.start_soon(_cancel_after, points, scope)
        current = await storage.rooms.current_stream_pos()
        stored = await storage.server_events.get_server_events(
            ALICE, [], after=0, upto=current, limit=10_000
        )
        positions = [e.stream_pos for e in stored]
        assert positions == sorted(set(positions))
        assert {e.event_id for e in stored} <= set(added)
        # Nothing stored beyond the stream's current position.
        assert (
            await storage.server_events.get_server_events(
                ALICE, [], after=current, upto=2**62, limit=10
            )
            == []
        )
        after = await storage.server_events.add_server_event(server_event())
        assert after.stream_pos > current
        added.append(after.event_id)
