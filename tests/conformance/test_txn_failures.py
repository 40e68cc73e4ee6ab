"""An append with a client transaction that fails part way through its write leaves
the events and the transaction's record both stored or neither: never an event a retry
of the transaction would store again.

Each backend fails in its own way, at every step of the write the test can reach:
memory at each copy it makes, SQL at each statement of the transaction, Redis with
each key the script writes holding the wrong kind of value.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import event

import backends.memory.rooms
import backends.memory.state
from backends import DuplicateTransaction, Storage, StorageError
from backends.records import ClientTxn, JsonDict, NewEvent
from backends.redis.rooms import RedisRoomStore
from backends.sql.rooms import SqlRoomStore

from .records import ALICE, make_room, member, message, state
from .support import Backend

# Arms one failure for the next write; yields a list the failure appends to when it
# happens (a fault the write never reaches stays silent).
Fault = Callable[[], AbstractAsyncContextManager[list[str]]]

_SQL_STATEMENTS = (
    "INSERT INTO txns",
    "UPDATE stream_counter",
    "INSERT INTO events",
    "INSERT INTO room_state",
    "INSERT INTO memberships",
    "UPDATE rooms",
)


def _memory_faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fault]:
    """The k-th deep copy fails, for k = 0, 1, ... (the caller stops once one of them
    is never reached)."""
    real = backends.memory.state.copy_json
    # Every module of the memory backend that deep-copies on the way in or out.
    modules = (backends.memory.rooms, backends.memory.state)

    for k in itertools.count():

        @asynccontextmanager
        async def copy_fails(k: int = k) -> AsyncIterator[list[str]]:
            fired: list[str] = []
            calls = itertools.count()

            def copy(content: JsonDict) -> JsonDict:
                if next(calls) == k:
                    fired.append(f"copy {k}")
                    raise RuntimeError(f"injected failure at copy {k}")
                return real(content)

            for module in modules:
                monkeypatch.setattr(module, "copy_json", copy)
            try:
                yield fired
            finally:
                for module in modules:
                    monkeypatch.setattr(module, "copy_json", real)

        yield copy_fails


def _sql_faults(storage: Storage) -> Iterator[Fault]:
    """A statement of the write transaction fails, each in turn."""
    assert isinstance(storage.rooms, SqlRoomStore)
    engine = storage.rooms._db.engine
    for prefix in _SQL_STATEMENTS:

        @asynccontextmanager
        async def statement_fails(prefix: str = prefix) -> AsyncIterator[list[str]]:
            fired: list[str] = []

            def before_cursor_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                if statement.startswith(prefix):
                    fired.append(statement)
                    raise RuntimeError(f"injected failure at {prefix}")

            event.listen(engine, "before_cursor_execute", before_cursor_execute)
            try:
                yield fired
            finally:
                event.remove(engine, "before_cursor_execute", before_cursor_execute)

        yield statement_fails


def _redis_faults(storage: Storage, room_id: Callable[[], str], user_id: str) -> Iterator[Fault]:
    """A key the script writes holds the wrong kind of value, each in turn (the real
    value is moved aside meanwhile)."""
    assert isinstance(storage.rooms, RedisRoomStore)
    client, k = storage.rooms._r, storage.rooms._k
    keys: list[Callable[[], tuple[str, str]]] = [
        lambda: (k.txns(ALICE, "DEV"), "not a hash"),
        lambda: (k.stream_pos, "not a number"),
        lambda: (k.events, "not a hash"),
        lambda: (k.room_latest, "not a hash"),
        lambda: (k.room_events(room_id()), "not a sorted set"),
        lambda: (k.room_state(room_id()), "not a hash"),
        lambda: (k.room_state_content(room_id()), "not a hash"),
        lambda: (k.room_members(room_id()), "not a hash"),
        lambda: (k.user_rooms(user_id), "not a hash"),
    ]
    for poison in keys:

        @asynccontextmanager
        async def wrong_type(
            poison: Callable[[], tuple[str, str]] = poison,
        ) -> AsyncIterator[list[str]]:
            key, value = poison()
            aside = f"{key}:aside"
            moved = await client.exists([key]) == 1
            if moved:
                await client.rename(key, aside)
            await client.set(key, value)
            fired = [key]
            try:
                yield fired
            finally:
                await client.delete([key])
                if moved:
                    await client.rename(aside, key)

        yield wrong_type


async def test_an_append_failing_part_way_stores_events_and_transaction_or_neither(
    storage: Storage, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    room_id = ""
    joiner = "@joiner:example.org"

    def current_room() -> str:
        return room_id

    faults: Iterator[Fault]
    if backend.name == "memory":
        faults = _memory_faults(monkeypatch)
    elif backend.name in ("sqlite", "postgresql"):
        faults = _sql_faults(storage)
    else:
        faults = _redis_faults(storage, current_room, joiner)

    failed = 0
    for n, fault in enumerate(faults):
        # A room of its own per fault: the Redis faults replace some of its keys.
        room_id = await make_room(storage, f"!r{n}:example.org")
        txn = ClientTxn(ALICE, "DEV", f"txn{n}")
        batch: list[NewEvent] = [
            message(room_id),
            member(room_id, joiner),
            state(room_id, "m.room.topic", "", {"topic": str(n)}),
        ]
        pos = await storage.rooms.current_stream_pos()
        error: Exception | None = None
        async with fault() as fired:
            try:
                await storage.rooms.append_events(batch, txn=txn)
            except Exception as exc:
                error = exc
        if not fired:
            # Memory: the write made fewer copies than this fault waits for.
            assert backend.name == "memory" and error is None
            break
        assert error is not None, fired
        failed += 1

        recorded = await storage.txns.get_txn_event(ALICE, "DEV", txn.txn_key)
        found = [await storage.rooms.get_event(new.event_id) for new in batch]
        if recorded is None:
            assert found == [None, None, None], (fired, error)
            assert await storage.rooms.current_stream_pos() == pos
            assert await storage.rooms.get_membership(room_id, joiner) is None
        else:
            # Only the memory backend gets here: a copy of what it returns failed,
            # after the write had completed.
            assert backend.name == "memory", (fired, error)
            assert recorded == batch[0].event_id
            assert None not in found
        if backend.name != "memory":
            assert isinstance(error, StorageError), error

        # A retry of the transaction is told of the first attempt or stored now.
        retry = [message(room_id)]
        if recorded is None:
            await storage.rooms.append_events(retry, txn=txn)
            assert await storage.txns.get_txn_event(ALICE, "DEV", txn.txn_key) == (
                retry[0].event_id
            )
        else:
            with pytest.raises(DuplicateTransaction) as caught:
                await storage.rooms.append_events(retry, txn=txn)
            assert caught.value.event_id == recorded
    assert failed > 0
