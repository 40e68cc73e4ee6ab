"""UserStore: create, read, profile fields."""

from __future__ import annotations

import pytest

from backends import Conflict, NotFound, Storage

from .records import ALICE, BOB, user


async def test_create_and_get_round_trip(storage: Storage) -> None:
    record = user(ALICE, displayname="Alice", avatar_url="mxc://x/y", is_admin=True)
    await storage.users.create_user(record)
    assert await storage.users.get_user(ALICE) == record


async def test_defaults_round_trip(storage: Storage) -> None:
    record = user(BOB, password_hash=None)
    await storage.users.create_user(record)
    assert await storage.users.get_user(BOB) == record


async def test_unknown_user_is_none(storage: Storage) -> None:
    assert await storage.users.get_user(ALICE) is None


async def test_create_existing_user_conflicts_and_changes_nothing(storage: Storage) -> None:
    original = user(ALICE, displayname="first")
    await storage.users.create_user(original)
    with pytest.raises(Conflict):
        await storage.users.create_user(user(ALICE, displayname="second", is_admin=True))
    assert await storage.users.get_user(ALICE) == original


async def test_user_ids_are_case_sensitive(storage: Storage) -> None:
    await storage.users.create_user(user("@alice:example.org"))
    await storage.users.create_user(user("@Alice:example.org", displayname="capital"))
    upper = await storage.users.get_user("@Alice:example.org")
    assert upper is not None and upper.displayname == "capital"


async def test_set_and_clear_profile_fields(storage: Storage) -> None:
    await storage.users.create_user(user(ALICE))
    await storage.users.set_profile_field(ALICE, "displayname", "Alice A.")
    await storage.users.set_profile_field(ALICE, "avatar_url", "mxc://example.org/abc")
    stored = await storage.users.get_user(ALICE)
    assert stored is not None
    assert (stored.displayname, stored.avatar_url) == ("Alice A.", "mxc://example.org/abc")

    await storage.users.set_profile_field(ALICE, "displayname", None)
    stored = await storage.users.get_user(ALICE)
    assert stored is not None
    assert (stored.displayname, stored.avatar_url) == (None, "mxc://example.org/abc")
    assert stored.password_hash == "hash"


async def test_set_profile_field_of_unknown_user_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.users.set_profile_field(ALICE, "displayname", "x")
    assert await storage.users.get_user(ALICE) is None


async def test_unicode_values_round_trip(storage: Storage) -> None:
    record = user("@zoë:example.org", displayname="Zoë 🦊 \u2028 \"quoted\" 'single'")
    await storage.users.create_user(record)
    assert await storage.users.get_user("@zoë:example.org") == record
