"""Client transaction ids: TransactionStore (first write wins) and the transaction an
append records with its events (`append_events(txn=...)`), atomically."""

from __future__ import annotations

import pytest

from backends import Conflict, DuplicateTransaction, NotFound, Storage
from backends.records import ClientTxn, NewEvent

from .records import ALICE, BOB, OTHER_ROOM, ROOM, append_one, make_room, member, message
from .support import gather

TXN = ClientTxn(ALICE, "DEV", "txn1")


async def test_put_and_get(storage: Storage) -> None:
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") is None
    await storage.txns.put_txn_event(ALICE, "DEV", "txn1", "$e1:example.org")
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") == "$e1:example.org"


async def test_first_write_wins(storage: Storage) -> None:
    await storage.txns.put_txn_event(ALICE, "DEV", "txn1", "$first")
    await storage.txns.put_txn_event(ALICE, "DEV", "txn1", "$second")
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") == "$first"


async def test_keyed_by_user_device_and_txn(storage: Storage) -> None:
    await storage.txns.put_txn_event(ALICE, "DEV", "txn", "$a")
    await storage.txns.put_txn_event(ALICE, "OTHER", "txn", "$b")
    await storage.txns.put_txn_event(BOB, "DEV", "txn", "$c")
    await storage.txns.put_txn_event(ALICE, "DEV", "txn2", "$d")
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn") == "$a"
    assert await storage.txns.get_txn_event(ALICE, "OTHER", "txn") == "$b"
    assert await storage.txns.get_txn_event(BOB, "DEV", "txn") == "$c"
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn2") == "$d"
    assert await storage.txns.get_txn_event(BOB, "OTHER", "txn") is None


async def test_txn_keys_are_opaque_strings(storage: Storage) -> None:
    keys = ["a:b", "a|b", "with space", "üñí", "*", "%", "a\\b"]
    for n, key in enumerate(keys):
        await storage.txns.put_txn_event(ALICE, "DEV", key, f"$e{n}")
    for n, key in enumerate(keys):
        assert await storage.txns.get_txn_event(ALICE, "DEV", key) == f"$e{n}"


async def test_separators_inside_key_parts_do_not_collide(storage: Storage) -> None:
    await storage.txns.put_txn_event(ALICE, "D:1", "t", "$a")
    await storage.txns.put_txn_event(ALICE, "D", "1:t", "$b")
    await storage.txns.put_txn_event(ALICE, "D|1", "t", "$c")
    await storage.txns.put_txn_event(ALICE, "D", "1|t", "$d")
    assert await storage.txns.get_txn_event(ALICE, "D:1", "t") == "$a"
    assert await storage.txns.get_txn_event(ALICE, "D", "1:t") == "$b"
    assert await storage.txns.get_txn_event(ALICE, "D|1", "t") == "$c"
    assert await storage.txns.get_txn_event(ALICE, "D", "1|t") == "$d"


async def _room_event_ids(storage: Storage, room_id: str = ROOM) -> list[str]:
    events = await storage.rooms.get_room_events(
        room_id, after=None, before=None, limit=1000, newest_first=False
    )
    return [e.event_id for e in events]


async def test_append_records_the_transaction_for_its_first_event(storage: Storage) -> None:
    await make_room(storage)
    batch = [message(ROOM), member(ROOM, BOB)]
    stored = await storage.rooms.append_events(batch, txn=TXN)
    assert [e.event_id for e in stored] == [e.event_id for e in batch]
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") == batch[0].event_id


async def test_append_of_a_recorded_transaction_writes_nothing(storage: Storage) -> None:
    await make_room(storage)
    first = message(ROOM)
    await storage.rooms.append_events([first], txn=TXN)
    pos = await storage.rooms.current_stream_pos()
    retry = [message(ROOM), member(ROOM, BOB)]
    with pytest.raises(DuplicateTransaction) as caught:
        await storage.rooms.append_events(retry, txn=TXN)
    assert caught.value.event_id == first.event_id
    assert isinstance(caught.value, Conflict)
    assert await storage.rooms.current_stream_pos() == pos
    assert [await storage.rooms.get_event(e.event_id) for e in retry] == [None, None]
    assert await _room_event_ids(storage) == [first.event_id]
    assert await storage.rooms.get_membership(ROOM, BOB) is None
    assert await storage.rooms.get_latest_positions([ROOM]) == {ROOM: pos}
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") == first.event_id


async def test_a_transaction_recorded_without_events_is_one_too(storage: Storage) -> None:
    """put_txn_event (a message the plugins dropped) and append share the record."""
    await make_room(storage)
    await storage.txns.put_txn_event(ALICE, "DEV", "txn1", "$dropped")
    new = message(ROOM)
    with pytest.raises(DuplicateTransaction) as caught:
        await storage.rooms.append_events([new], txn=TXN)
    assert caught.value.event_id == "$dropped"
    assert await storage.rooms.get_event(new.event_id) is None
    assert await storage.rooms.current_stream_pos() == 0


async def test_transactions_are_keyed_by_user_device_and_key(storage: Storage) -> None:
    await make_room(storage)
    first = await append_one(storage, message(ROOM))
    await storage.txns.put_txn_event(ALICE, "DEV", "txn1", first.event_id)
    others = [ClientTxn(ALICE, "OTHER", "txn1"), ClientTxn(BOB, "DEV", "txn1")]
    others.append(ClientTxn(ALICE, "DEV", "txn2"))
    for txn in others:
        new = message(ROOM)
        await storage.rooms.append_events([new], txn=txn)
        assert await storage.txns.get_txn_event(txn.user_id, txn.device_id, txn.txn_key) == (
            new.event_id
        )
    assert len(await _room_event_ids(storage)) == 4


async def test_the_transaction_is_checked_before_the_events(storage: Storage) -> None:
    """A retry learns it is one even where the events themselves would be refused."""
    await make_room(storage)
    first = message(ROOM)
    await storage.rooms.append_events([first], txn=TXN)
    for refused in ([message("!unknown:example.org")], [first]):
        with pytest.raises(DuplicateTransaction) as caught:
            await storage.rooms.append_events(refused, txn=TXN)
        assert caught.value.event_id == first.event_id


async def test_a_refused_append_records_no_transaction(storage: Storage) -> None:
    await make_room(storage)
    taken = await append_one(storage, message(ROOM))
    refusals: list[tuple[list[NewEvent], type[Exception]]] = [
        ([message(ROOM), message("!unknown:example.org")], NotFound),
        ([message(ROOM), message(ROOM, event_id=taken.event_id)], Conflict),
    ]
    for batch, error in refusals:
        with pytest.raises(error):
            await storage.rooms.append_events(batch, txn=TXN)
        assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") is None
        assert await storage.rooms.get_event(batch[0].event_id) is None
    new = message(ROOM)
    await storage.rooms.append_events([new], txn=TXN)
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") == new.event_id


async def test_a_transaction_needs_an_event(storage: Storage) -> None:
    with pytest.raises(ValueError, match="transaction"):
        await storage.rooms.append_events([], txn=TXN)
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") is None


async def test_concurrent_appends_of_one_transaction_store_one_event(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    batches = [[message(ROOM if i % 2 else OTHER_ROOM), member(ROOM, BOB)] for i in range(20)]

    async def attempt(batch: list[NewEvent]) -> str | None:
        """The id recorded for the transaction if another attempt won, else None."""
        try:
            await storage.rooms.append_events(batch, txn=TXN)
        except DuplicateTransaction as exc:
            return exc.event_id
        return None

    results = await gather(*[lambda batch=batch: attempt(batch) for batch in batches])
    winners = [batch for batch, result in zip(batches, results, strict=True) if result is None]
    assert len(winners) == 1
    [winner] = winners
    assert set(results) == {None, winner[0].event_id}
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") == winner[0].event_id
    stored = await _room_event_ids(storage) + await _room_event_ids(storage, OTHER_ROOM)
    assert sorted(stored) == sorted(e.event_id for e in winner)
    assert await storage.rooms.current_stream_pos() == 2
