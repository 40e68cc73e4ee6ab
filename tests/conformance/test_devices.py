"""DeviceStore: devices, access tokens and their replacement semantics."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backends import Conflict, NotFound, Storage

from .records import ALICE, BOB, device, token


async def test_add_device_with_token_round_trip(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV", "Phone"), token("t1"))
    assert await storage.devices.get_device(ALICE, "DEV") == device(ALICE, "DEV", "Phone")
    assert await storage.devices.get_token("t1") == token("t1")


async def test_unknown_device_and_token_are_none(storage: Storage) -> None:
    assert await storage.devices.get_device(ALICE, "DEV") is None
    assert await storage.devices.get_token("nope") is None
    assert await storage.devices.list_devices(ALICE) == []


async def test_new_token_revokes_every_old_token_of_the_device(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t1"))
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t2"))
    assert await storage.devices.get_token("t1") is None
    assert await storage.devices.get_token("t2") == token("t2")
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t3"))
    assert await storage.devices.get_token("t2") is None
    assert await storage.devices.get_token("t3") == token("t3")


async def test_new_token_leaves_other_devices_tokens_alone(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "A"), token("ta", ALICE, "A"))
    await storage.devices.add_device_with_token(device(ALICE, "B"), token("tb", ALICE, "B"))
    await storage.devices.add_device_with_token(device(BOB, "A"), token("bob", BOB, "A"))
    await storage.devices.add_device_with_token(device(ALICE, "A"), token("ta2", ALICE, "A"))
    assert await storage.devices.get_token("ta") is None
    assert await storage.devices.get_token("tb") == token("tb", ALICE, "B")
    assert await storage.devices.get_token("bob") == token("bob", BOB, "A")


async def test_existing_device_keeps_record_and_updates_display_name(storage: Storage) -> None:
    first = device(ALICE, "DEV", "Phone")
    await storage.devices.add_device_with_token(first, token("t1"))
    later = replace(device(ALICE, "DEV", "Tablet"), created_ts=99_999)
    await storage.devices.add_device_with_token(later, token("t2"))
    stored = await storage.devices.get_device(ALICE, "DEV")
    assert stored is not None
    assert stored.display_name == "Tablet"
    assert stored.created_ts == first.created_ts


async def test_existing_device_keeps_display_name_when_none_given(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV", "Phone"), token("t1"))
    await storage.devices.add_device_with_token(device(ALICE, "DEV", None), token("t2"))
    assert await storage.devices.get_device(ALICE, "DEV") == device(ALICE, "DEV", "Phone")


async def test_existing_token_conflicts_and_changes_nothing(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV", "Phone"), token("t1"))
    await storage.devices.add_device_with_token(device(ALICE, "OTHER"), token("t2", ALICE, "OTHER"))
    with pytest.raises(Conflict):
        # Reusing t2 for DEV: DEV must keep t1 and its name, t2 stays OTHER's.
        await storage.devices.add_device_with_token(device(ALICE, "DEV", "Renamed"), token("t2"))
    with pytest.raises(Conflict):
        await storage.devices.add_device_with_token(device(BOB, "NEW"), token("t1", BOB, "NEW"))
    assert await storage.devices.get_token("t1") == token("t1")
    assert await storage.devices.get_token("t2") == token("t2", ALICE, "OTHER")
    assert await storage.devices.get_device(ALICE, "DEV") == device(ALICE, "DEV", "Phone")
    assert await storage.devices.get_device(BOB, "NEW") is None


async def test_same_token_again_on_same_device_conflicts(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t1"))
    with pytest.raises(Conflict):
        await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t1"))
    assert await storage.devices.get_token("t1") == token("t1")


async def test_list_devices_orders_by_device_id_per_user(storage: Storage) -> None:
    # Code-point order (as Python sorts), not a locale's.
    ids = ["b", "B", "a", "_x", "Z1", "a-b", "ab", "é", "10", "9"]
    for n, device_id in enumerate(ids):
        await storage.devices.add_device_with_token(
            device(ALICE, device_id), token(f"t{n}", ALICE, device_id)
        )
    await storage.devices.add_device_with_token(device(BOB, "BOBDEV"), token("b", BOB, "BOBDEV"))
    listed = await storage.devices.list_devices(ALICE)
    assert [d.device_id for d in listed] == sorted(ids)
    assert all(d.user_id == ALICE for d in listed)
    assert [d.device_id for d in await storage.devices.list_devices(BOB)] == ["BOBDEV"]


async def test_update_device_display_name(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV", "Phone"), token("t1"))
    await storage.devices.update_device_display_name(ALICE, "DEV", "Laptop")
    assert await storage.devices.get_device(ALICE, "DEV") == device(ALICE, "DEV", "Laptop")
    await storage.devices.update_device_display_name(ALICE, "DEV", None)
    assert await storage.devices.get_device(ALICE, "DEV") == device(ALICE, "DEV", None)
    assert await storage.devices.get_token("t1") == token("t1")


async def test_update_display_name_of_unknown_device_is_not_found(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t1"))
    with pytest.raises(NotFound):
        await storage.devices.update_device_display_name(ALICE, "NOPE", "x")
    with pytest.raises(NotFound):
        await storage.devices.update_device_display_name(BOB, "DEV", "x")
    assert await storage.devices.get_device(BOB, "DEV") is None


async def test_delete_device_removes_device_tokens_and_txns(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t1"))
    await storage.devices.add_device_with_token(device(ALICE, "KEEP"), token("t2", ALICE, "KEEP"))
    await storage.txns.put_txn_event(ALICE, "DEV", "txn1", "$e1")
    await storage.txns.put_txn_event(ALICE, "KEEP", "txn1", "$e2")

    assert await storage.devices.delete_device(ALICE, "DEV") is True

    assert await storage.devices.get_device(ALICE, "DEV") is None
    assert await storage.devices.get_token("t1") is None
    assert await storage.txns.get_txn_event(ALICE, "DEV", "txn1") is None
    assert await storage.devices.get_token("t2") == token("t2", ALICE, "KEEP")
    assert await storage.txns.get_txn_event(ALICE, "KEEP", "txn1") == "$e2"
    assert [d.device_id for d in await storage.devices.list_devices(ALICE)] == ["KEEP"]


async def test_delete_unknown_device_is_false(storage: Storage) -> None:
    assert await storage.devices.delete_device(ALICE, "DEV") is False
    await storage.devices.add_device_with_token(device(ALICE, "DEV"), token("t1"))
    assert await storage.devices.delete_device(BOB, "DEV") is False
    assert await storage.devices.get_token("t1") == token("t1")


async def test_deleted_device_can_come_back_with_a_new_token(storage: Storage) -> None:
    await storage.devices.add_device_with_token(device(ALICE, "DEV", "Phone"), token("t1"))
    await storage.devices.delete_device(ALICE, "DEV")
    await storage.devices.add_device_with_token(device(ALICE, "DEV", None), token("t2"))
    assert await storage.devices.get_device(ALICE, "DEV") == device(ALICE, "DEV", None)
    assert await storage.devices.get_token("t1") is None
    assert await storage.devices.get_token("t2") == token("t2")


async def test_delete_all_devices(storage: Storage) -> None:
    for n, device_id in enumerate(["C", "A", "B"]):
        await storage.devices.add_device_with_token(
            device(ALICE, device_id), token(f"t{n}", ALICE, device_id)
        )
        await storage.txns.put_txn_event(ALICE, device_id, "txn", f"$e{n}")
    await storage.devices.add_device_with_token(device(BOB, "A"), token("bob", BOB, "A"))
    await storage.txns.put_txn_event(BOB, "A", "txn", "$bob")

    assert await storage.devices.delete_all_devices(ALICE) == ["A", "B", "C"]

    assert await storage.devices.list_devices(ALICE) == []
    for n, device_id in enumerate(["C", "A", "B"]):
        assert await storage.devices.get_token(f"t{n}") is None
        assert await storage.txns.get_txn_event(ALICE, device_id, "txn") is None
    assert await storage.devices.get_token("bob") == token("bob", BOB, "A")
    assert await storage.txns.get_txn_event(BOB, "A", "txn") == "$bob"
    assert await storage.devices.delete_all_devices(ALICE) == []
