"""UserStore.list_user_ids: every user id, paged in code-point order."""

from __future__ import annotations

import pytest

from backends import Conflict, Storage

from .records import user

# Ids a locale collation would fold together or reorder: case, punctuation, digits,
# non-ASCII (code-point order of "é" and "😀" is also their UTF-8 byte order).
TRICKY = [
    "@A:x",
    "@a:x",
    "@a.b:x",
    "@a_b:x",
    "@a-b:x",
    "@a=b:x",
    "@a/b:x",
    "@ab:x",
    "@B:x",
    "@b:x",
    "@Z:x",
    "@z:x",
    "@0:x",
    "@9:x",
    "@é:x",
    "@😀:x",
    "@a:X",
    "@a:x.y",
]
USER_IDS = TRICKY + [f"@user{i:02d}:example.org" for i in range(25 - len(TRICKY))]


async def _create(storage: Storage, ids: list[str]) -> None:
    # Out of order, so that no backend can pass by returning insertion order.
    for user_id in reversed(ids):
        await storage.users.create_user(user(user_id))


async def _all_pages(storage: Storage, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = await storage.users.list_user_ids(after=after, limit=limit)
        if not page:
            return pages
        assert len(page) <= limit
        pages.append(page)
        after = page[-1]


def test_fixture_ids_are_distinct_and_tricky() -> None:
    assert len(USER_IDS) == 25 == len(set(USER_IDS))
    assert sorted(USER_IDS) != sorted(USER_IDS, key=str.casefold)


async def test_empty_store_lists_nothing(storage: Storage) -> None:
    assert await storage.users.list_user_ids(after=None, limit=10) == []
    assert await storage.users.list_user_ids(after="@a:x", limit=10) == []


async def test_paging_returns_every_id_once_in_code_point_order(storage: Storage) -> None:
    await _create(storage, USER_IDS)
    pages = await _all_pages(storage, limit=7)
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    assert [uid for page in pages for uid in page] == sorted(USER_IDS)


@pytest.mark.parametrize("limit", [1, 2, 24, 25, 26, 1000])
async def test_other_page_sizes_agree(storage: Storage, limit: int) -> None:
    await _create(storage, USER_IDS)
    pages = await _all_pages(storage, limit=limit)
    assert [uid for page in pages for uid in page] == sorted(USER_IDS)
    assert all(len(p) == limit for p in pages[:-1])


async def test_first_page_from_the_start(storage: Storage) -> None:
    await _create(storage, USER_IDS)
    assert await storage.users.list_user_ids(after=None, limit=4) == sorted(USER_IDS)[:4]


async def test_case_and_punctuation_order(storage: Storage) -> None:
    ids = ["@a_b:x", "@a:x", "@A:x", "@a.b:x"]
    await _create(storage, ids)
    # '.' (0x2E) < ':' (0x3A) < 'A' (0x41) < '_' (0x5F) < 'a' (0x61)
    assert await storage.users.list_user_ids(after=None, limit=10) == [
        "@A:x",
        "@a.b:x",
        "@a:x",
        "@a_b:x",
    ]
    assert await storage.users.list_user_ids(after="@A:x", limit=10) == [
        "@a.b:x",
        "@a:x",
        "@a_b:x",
    ]
    assert await storage.users.list_user_ids(after="@a.b:x", limit=1) == ["@a:x"]


async def test_after_is_exclusive_and_need_not_exist(storage: Storage) -> None:
    await _create(storage, USER_IDS)
    ordered = sorted(USER_IDS)
    assert await storage.users.list_user_ids(after=ordered[10], limit=3) == ordered[11:14]
    # A prefix of an id sorts before it, so that id is included.
    assert (
        await storage.users.list_user_ids(after="@a", limit=2)
        == [uid for uid in ordered if uid > "@a"][:2]
    )
    assert await storage.users.list_user_ids(after="", limit=2) == ordered[:2]


async def test_limit_zero_is_empty(storage: Storage) -> None:
    await _create(storage, USER_IDS)
    assert await storage.users.list_user_ids(after=None, limit=0) == []
    assert await storage.users.list_user_ids(after="@A:x", limit=0) == []


async def test_after_the_last_id_is_empty(storage: Storage) -> None:
    await _create(storage, USER_IDS)
    last = max(USER_IDS)
    assert await storage.users.list_user_ids(after=last, limit=10) == []
    assert await storage.users.list_user_ids(after=last + "!", limit=10) == []
    assert await storage.users.list_user_ids(after="\U0010ffff", limit=10) == []


async def test_conflicting_create_lists_the_id_once(storage: Storage) -> None:
    await storage.users.create_user(user("@a:x"))
    with pytest.raises(Conflict):
        await storage.users.create_user(user("@a:x", displayname="again"))
    assert await storage.users.list_user_ids(after=None, limit=10) == ["@a:x"]


async def test_new_users_appear_in_later_pages(storage: Storage) -> None:
    await _create(storage, ["@b:x", "@d:x"])
    first = await storage.users.list_user_ids(after=None, limit=1)
    assert first == ["@b:x"]
    await storage.users.create_user(user("@a:x"))  # behind the cursor: not seen
    await storage.users.create_user(user("@c:x"))  # ahead of it: seen
    assert await storage.users.list_user_ids(after=first[-1], limit=10) == ["@c:x", "@d:x"]
