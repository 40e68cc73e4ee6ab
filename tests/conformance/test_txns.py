"""TransactionStore: client transaction ids, first write wins."""

from __future__ import annotations

from backends import Storage

from .records import ALICE, BOB


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
