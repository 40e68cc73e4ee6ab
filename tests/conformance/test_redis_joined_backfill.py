"""Redis backend only: stores written before the joined-member zsets existed get them
on open (a one-off per key prefix, marked by `Keys.joined_index`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest
import trio

from backends import open_storage
from backends.fresh import delete_redis_prefix, unique_name, with_query
from backends.redis import Keys
from tests.services import require_redis

from .records import ALICE, BOB, CAROL, OTHER_ROOM, ROOM, make_room, member

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = unique_name("hs_backfill")
    try:
        yield name
    finally:
        with trio.CancelScope(shield=True):
            await delete_redis_prefix(redis_url, name)


async def _forget_the_index(url: str, keys: Keys) -> None:
    """Make the store look as an older version left it: no joined zsets, no marker."""
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        stale = [
            key async for key in client.scan_iter(match=f"{keys.prefix}:*_joined:*", count=1000)
        ]
        await client.delete([*stale, keys.joined_index])


async def test_memberships_of_an_older_store_are_indexed_on_open(
    redis_url: str, prefix: str
) -> None:
    url = with_query(redis_url, "prefix", prefix)
    async with open_storage(url) as storage:
        await make_room(storage)
        await make_room(storage, OTHER_ROOM)
        await storage.rooms.append_events(
            [
                member(ROOM, ALICE, "join"),
                member(ROOM, BOB, "join"),
                member(ROOM, CAROL, "invite"),
                member(OTHER_ROOM, ALICE, "join"),
                member(OTHER_ROOM, BOB, "join"),
                member(OTHER_ROOM, BOB, "leave"),
            ]
        )
    await _forget_the_index(redis_url, Keys(prefix))
    async with open_storage(url) as storage:
        assert await storage.rooms.get_joined_members(ROOM) == [ALICE, BOB]
        assert await storage.rooms.get_joined_members(OTHER_ROOM) == [ALICE]
        assert await storage.rooms.get_joined_rooms(ALICE) == sorted([ROOM, OTHER_ROOM])
        assert await storage.rooms.get_joined_rooms(BOB) == [ROOM]
        assert await storage.rooms.get_joined_rooms(CAROL) == []
        # From now on member events keep the index.
        await storage.rooms.append_events([member(ROOM, CAROL, "join")])
        assert await storage.rooms.get_joined_members(ROOM) == [ALICE, BOB, CAROL]


async def test_the_backfill_runs_once(redis_url: str, prefix: str) -> None:
    url = with_query(redis_url, "prefix", prefix)
    keys = Keys(prefix)
    async with open_storage(url) as storage:
        await make_room(storage)
        await storage.rooms.append_events([member(ROOM, ALICE, "join")])
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert await client.get(keys.joined_index) == "1"
        # Were it to run again, it would restore this member; it does not.
        await client.zrem(keys.room_joined(ROOM), [ALICE])
    async with open_storage(url) as storage:
        assert await storage.rooms.get_joined_members(ROOM) == []
