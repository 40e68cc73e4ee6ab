"""Fresh stores for benchmark runs, from the project's one store factory
(`backends.fresh`, shared with the conformance suite and the e2e tests): one per
backend and per run, removed afterwards; names start with `hs_bench_` so that
`leftovers` can check a run cleaned up after itself.

`fresh_store` is a synchronous context manager: enter it outside `trio.run` (the Redis
cleanup runs its own short Trio run).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import coredis
import psycopg
import trio

from backends import fresh
from backends.fresh import (
    BACKENDS,
    POSTGRES_ADMIN_URL,
    REDIS_URL,
    StoreUnavailable,
    check_reachable,
    create_database,
    parse_backends,
    unique_name,
)

__all__ = [
    "BACKENDS",
    "StoreUnavailable",
    "drop_database",
    "fresh_store",
    "leftovers",
    "make_database",
    "parse_backends",
]


@contextmanager
def fresh_store(backend: str, workdir: Path, tag: str = "bench") -> Iterator[str]:
    """The storage URL of a new, empty store of `backend`; removed on exit (also after an
    error or Ctrl-C). Raises StoreUnavailable if its service cannot be reached."""
    check_reachable(backend)
    with fresh.fresh_store(backend, workdir, f"bench_{tag}") as url:
        yield url


def make_database(tag: str, *, collate_c: bool = False) -> str:
    """A new, empty PostgreSQL database (`hs_bench_<tag>_*`); returns its URL.
    `collate_c`: UTF8 with C collation, as Synapse requires."""
    return create_database(POSTGRES_ADMIN_URL, unique_name(f"hs_bench_{tag}"), collate_c=collate_c)


def drop_database(url: str) -> None:
    fresh.drop_database(url, POSTGRES_ADMIN_URL)


def leftovers(prefixes: Sequence[str] = ("hs_bench_",)) -> dict[str, int]:
    """How many PostgreSQL databases and Redis keys with our prefixes exist (a check
    that runs cleaned up after themselves)."""
    counts: dict[str, int] = {}
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    counts["postgresql_databases"] = sum(
        1 for (name,) in rows if any(str(name).startswith(p) for p in prefixes)
    )

    async def count_keys() -> int:
        total = 0
        async with coredis.Redis.from_url(REDIS_URL) as client:
            for prefix in prefixes:
                async for _ in client.scan_iter(match=f"{prefix}*", count=1000):
                    total += 1
        return total

    counts["redis_keys"] = trio.run(count_keys)
    return counts
