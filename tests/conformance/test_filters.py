"""FilterStore: per-user filters with ids that are never reused."""

from __future__ import annotations

from backends import Storage

from .records import ALICE, BOB


async def test_create_and_get_round_trip(storage: Storage) -> None:
    definition = {"room": {"timeline": {"limit": 10}}, "event_fields": ["type", "content.body"]}
    filter_id = await storage.filters.create_filter(ALICE, definition)
    assert isinstance(filter_id, str) and filter_id
    assert await storage.filters.get_filter(ALICE, filter_id) == definition


async def test_empty_definition_round_trips(storage: Storage) -> None:
    filter_id = await storage.filters.create_filter(ALICE, {})
    assert await storage.filters.get_filter(ALICE, filter_id) == {}


async def test_ids_are_unique_per_user(storage: Storage) -> None:
    ids = [await storage.filters.create_filter(ALICE, {"n": n}) for n in range(5)]
    assert len(set(ids)) == 5
    for n, filter_id in enumerate(ids):
        assert await storage.filters.get_filter(ALICE, filter_id) == {"n": n}


async def test_other_users_filter_is_not_visible(storage: Storage) -> None:
    filter_id = await storage.filters.create_filter(ALICE, {"mine": True})
    assert await storage.filters.get_filter(BOB, filter_id) is None
    bob_id = await storage.filters.create_filter(BOB, {"bob": True})
    assert await storage.filters.get_filter(BOB, bob_id) == {"bob": True}
    assert await storage.filters.get_filter(ALICE, filter_id) == {"mine": True}
    if bob_id != filter_id:
        assert await storage.filters.get_filter(ALICE, bob_id) is None


async def test_unknown_and_malformed_ids_are_none(storage: Storage) -> None:
    await storage.filters.create_filter(ALICE, {"x": 1})
    for filter_id in ["999999", "", "abc", "-1", "1.0", " 1", "\u0661", "9" * 40, "../1", "%"]:
        assert await storage.filters.get_filter(ALICE, filter_id) is None
