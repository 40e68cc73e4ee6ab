"""A retried send stores its message once, on every backend, whichever storage call of
the first attempt failed: before the store saw it (503 to the client) or after it had
done its work (the reply lost, as when the server dies then).

The engine runs over the real store through a wrapper that fails one chosen call, or
(for a transaction recorded between the engine's check and its write, as another
process sharing the store can) one whose transaction lookups find nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from backends import BackendUnavailable, Storage
from backends.protocols import TransactionStore
from backends.records import UserRecord
from homeserver.clock import TrioClock
from homeserver.engine import Engine
from homeserver.engine.rooms import CreateRoomRequest
from homeserver.types import Requester
from tests.helpers import make_config

ALICE = "@alice:test.local"
CONTENT = {"msgtype": "m.text", "body": "once"}
# The Storage fields that are not stores.
_NOT_STORES = frozenset({"description", "closer", "warnings"})


class Faults:
    """Numbers the storage calls made through the wrapped stores; fails one of them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._fail_at: int | None = None
        self._after = False
        self.fired: str | None = None

    def arm(self, index: int, *, after: bool) -> None:
        """Fail call `index` from now on (0: the next one): before it reaches the store,
        or once the store has answered (`after`)."""
        self.calls, self._fail_at, self._after, self.fired = [], index, after, None

    def disarm(self) -> None:
        self.calls, self._fail_at = [], None

    async def call(self, name: str, run: Callable[[], Awaitable[Any]]) -> Any:
        index = len(self.calls)
        self.calls.append(name)
        failing = index == self._fail_at
        if failing and not self._after:
            self.fired = f"before {name}"
            raise BackendUnavailable(f"injected: {name} not sent")
        result = await run()
        if failing:
            self.fired = f"after {name}"
            raise BackendUnavailable(f"injected: the reply of {name} lost")
        return result


class FaultyStore:
    """Forwards every method of one store through `Faults`."""

    def __init__(self, name: str, store: object, faults: Faults) -> None:
        self._name, self._store, self._faults = name, store, faults

    def __getattr__(self, attr: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._store, attr)
        name = f"{self._name}.{attr}"

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._faults.call(name, lambda: method(*args, **kwargs))

        return call


def faulty(storage: Storage, faults: Faults) -> Storage:
    stores: dict[str, Any] = {
        field.name: FaultyStore(field.name, getattr(storage, field.name), faults)
        for field in dataclasses.fields(storage)
        if field.name not in _NOT_STORES
    }
    return dataclasses.replace(storage, **stores)


async def test_a_send_failing_at_any_storage_call_is_stored_once_when_retried(
    storage: Storage,
) -> None:
    faults = Faults()
    engine = Engine(make_config(), faulty(storage, faults), TrioClock())
    await storage.users.create_user(UserRecord(ALICE, None, 0))
    alice = Requester(ALICE, "DEV")
    room_id = await engine.rooms.creation.create_room(
        alice, CreateRoomRequest(preset="private_chat")
    )

    async def send(txn_id: str) -> str:
        return await engine.rooms.messages.send_event(
            alice, room_id, "m.room.message", CONTENT, txn_id=txn_id
        )

    # Every attempt starts with a cold read model, so each makes the same storage calls.
    engine.read_model.clear()
    faults.disarm()
    await send("count")
    steps = list(faults.calls)
    assert "rooms.append_events" in steps
    for index, step in enumerate(steps):
        for after in (False, True):
            txn_id = f"{index}-{'after' if after else 'before'}"
            engine.read_model.clear()
            faults.arm(index, after=after)
            first: str | None = None
            try:
                first = await send(txn_id)
            except BackendUnavailable:
                pass
            assert faults.fired == f"{'after' if after else 'before'} {step}", faults.calls
            faults.disarm()
            retried = await send(txn_id)
            assert first in (None, retried)
            assert await send(txn_id) == retried
            events = await storage.rooms.get_room_events(
                room_id, after=None, before=None, limit=1000, newest_first=False
            )
            sent = [e.event_id for e in events if e.txn_id == txn_id]
            assert sent == [retried], (faults.fired, sent)


class BlindTxns:
    """A transaction store whose lookups find nothing: as if each record was made (by
    another process sharing the store) just after the engine looked."""

    def __init__(self, txns: TransactionStore) -> None:
        self._txns = txns

    async def get_txn_event(self, user_id: str, device_id: str, txn_key: str) -> str | None:
        return None

    async def put_txn_event(
        self, user_id: str, device_id: str, txn_key: str, event_id: str
    ) -> None:
        await self._txns.put_txn_event(user_id, device_id, txn_key, event_id)


async def test_a_transaction_recorded_after_the_check_is_answered_with_its_id(
    storage: Storage,
) -> None:
    engine = Engine(
        make_config(), dataclasses.replace(storage, txns=BlindTxns(storage.txns)), TrioClock()
    )
    await storage.users.create_user(UserRecord(ALICE, None, 0))
    alice = Requester(ALICE, "DEV")
    room_id = await engine.rooms.creation.create_room(
        alice, CreateRoomRequest(preset="private_chat")
    )
    first = await engine.rooms.messages.send_event(
        alice, room_id, "m.room.message", CONTENT, txn_id="t"
    )
    pos = await storage.rooms.current_stream_pos()
    again = await engine.rooms.messages.send_event(
        alice, room_id, "m.room.message", CONTENT, txn_id="t"
    )
    assert again == first
    assert await storage.rooms.current_stream_pos() == pos
