"""Fresh stores for benchmark runs: one per backend and per run, removed afterwards.

The same backends as the conformance suite (`tests/conformance/conftest.py`), isolated
the same way:

- memory: `memory://` (a new instance per process that opens it);
- sqlite: a new database file in the run's temporary directory;
- postgresql: a uniquely named database, created empty (the opener migrates it) and
  dropped `WITH (FORCE)` afterwards;
- redis: a unique key prefix; every key under it is deleted afterwards.

Where PostgreSQL and Redis live comes from the same variables as the test suite:
HOMESERVER_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres,
an administrative connection) and HOMESERVER_TEST_REDIS_URL (default
redis://127.0.0.1:6379/0). Benchmarks only ever talk to 127.0.0.1.

`fresh_store` is a synchronous context manager: enter it outside `trio.run` (the Redis
cleanup runs its own short Trio run).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import coredis
import psycopg
import trio
from sqlalchemy.engine import make_url

BACKENDS: tuple[str, ...] = ("memory", "sqlite", "postgresql", "redis")
POSTGRES_ADMIN_URL = os.environ.get(
    "HOMESERVER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HOMESERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLEANUP_TIMEOUT_S = 30.0


class StoreUnavailable(RuntimeError):
    """The service a backend needs (PostgreSQL, Redis) cannot be reached."""


def parse_backends(text: str) -> list[str]:
    """`memory,sqlite,...` (or `all`) -> the backend names, in the canonical order."""
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    if "all" in wanted:
        return list(BACKENDS)
    unknown = sorted(wanted - set(BACKENDS))
    if unknown or not wanted:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; choose from {BACKENDS}")
    return [name for name in BACKENDS if name in wanted]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    rest = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    return host or "127.0.0.1", int(port or default_port)


def check_reachable(backend: str) -> None:
    """Raise StoreUnavailable if the backend's service does not accept connections."""
    if backend == "postgresql":
        url, port = POSTGRES_ADMIN_URL, 5432
    elif backend == "redis":
        url, port = REDIS_URL, 6379
    else:
        return
    host, port = _host_port(url, port)
    try:
        with socket.create_connection((host, port), timeout=2.0):
            pass
    except OSError as exc:
        raise StoreUnavailable(f"{backend} not reachable at {host}:{port}: {exc}") from None


def _execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.encode())


async def delete_redis_prefix(url: str, prefix: str) -> int:
    """Delete every key starting with `prefix`; returns how many were deleted."""
    deleted = 0
    async with coredis.Redis.from_url(url) as client:
        batch: list[str | bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(batch)
                batch = []
        if batch:
            deleted += await client.delete(batch)
    return deleted


def _with_query(url: str, key: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{key}={value}"


@contextmanager
def fresh_store(backend: str, workdir: Path, tag: str = "bench") -> Iterator[str]:
    """The storage URL of a new, empty store of `backend`; removed on exit (also after an
    error or Ctrl-C). `workdir` holds SQLite files (the caller deletes it)."""
    check_reachable(backend)
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        path = workdir / f"{unique_name(tag)}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif backend == "postgresql":
        name = unique_name(f"hs_bench_{tag}")
        _execute(POSTGRES_ADMIN_URL, f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_ADMIN_URL).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            _execute(POSTGRES_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif backend == "redis":
        prefix = unique_name(f"hs_bench_{tag}")
        try:
            yield _with_query(REDIS_URL, "prefix", prefix)
        finally:
            trio.run(_delete_with_timeout, REDIS_URL, prefix)
    else:
        raise ValueError(f"unknown backend {backend!r}")


async def _delete_with_timeout(url: str, prefix: str) -> None:
    with trio.fail_after(CLEANUP_TIMEOUT_S):
        await delete_redis_prefix(url, prefix)


def make_database(tag: str, *, collate_c: bool = False) -> str:
    """A new, empty PostgreSQL database (`hs_bench_<tag>_*`); returns its URL.
    `collate_c`: UTF8 with C collation, as Synapse requires."""
    name = unique_name(f"hs_bench_{tag}")
    options = " ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" if collate_c else ""
    _execute(POSTGRES_ADMIN_URL, f'CREATE DATABASE "{name}"{options}')
    url = make_url(POSTGRES_ADMIN_URL).set(database=name)
    return url.render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    _execute(POSTGRES_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
