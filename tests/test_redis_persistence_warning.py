"""The Redis backend tells the operator when Redis keeps nothing on disk."""

from __future__ import annotations

import coredis
import pytest

from backends import open_storage
from tests.services import require_redis, unique_name


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.mark.redis
async def test_warning_matches_the_servers_aof_setting(redis_url: str) -> None:
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        appendonly = (await client.config_get(["appendonly"]))["appendonly"]
    async with open_storage(f"{redis_url}?prefix={unique_name('hs_warn')}") as storage:
        warnings = storage.warnings
    if appendonly == "yes":
        assert warnings == ()
    else:
        assert len(warnings) == 1
        assert "appendonly" in warnings[0] and "restart loses data" in warnings[0]


async def test_other_backends_have_no_warnings() -> None:
    async with open_storage("memory://") as storage:
        assert storage.warnings == ()
