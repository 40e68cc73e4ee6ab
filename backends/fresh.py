"""Fresh, isolated stores of every backend: the one backend list and store factory of
the conformance suite, the end-to-end tests and the benchmarks (which import this
module rather than the tests).

Isolation per backend:
- memory: `memory://` (a new instance per opening);
- sqlite: a new database file in a directory the caller gives;
- postgresql: a uniquely named database, created empty (the opener migrates it) and
  dropped `WITH (FORCE)` afterwards;
- redis: a unique key prefix; every key under it is deleted afterwards.

Where PostgreSQL and Redis live: HOMESERVER_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/postgres, an administrative connection) and
HOMESERVER_TEST_REDIS_URL (default redis://127.0.0.1:6379/0).

Nothing here is used by the server itself.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import coredis
import psycopg
import trio
from sqlalchemy.engine import make_url

# Every backend, in the canonical order (test ids, benchmark columns).
BACKENDS: tuple[str, ...] = ("memory", "sqlite", "postgresql", "redis")
# The backends whose data outlives the process, and those reached over the network.
DURABLE: tuple[str, ...] = ("sqlite", "postgresql", "redis")
NETWORKED: tuple[str, ...] = ("postgresql", "redis")

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
    """A name no other run uses (database names, Redis key prefixes)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """The host and port a PostgreSQL or Redis URL points at."""
    rest = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    return host or "127.0.0.1", int(port or default_port)


def reachable(url: str, default_port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection(host_port(url, default_port), timeout=timeout_s):
            return True
    except OSError:
        return False


def check_reachable(backend: str) -> None:
    """Raise StoreUnavailable if the backend's service does not accept connections."""
    if backend == "postgresql":
        url, port = POSTGRES_ADMIN_URL, 5432
    elif backend == "redis":
        url, port = REDIS_URL, 6379
    else:
        return
    if not reachable(url, port, timeout_s=2.0):
        host, port = host_port(url, port)
        raise StoreUnavailable(f"{backend} not reachable at {host}:{port}")


def with_query(url: str, key: str, value: str) -> str:
    """`url` with one more query parameter."""
    return f"{url}{'&' if '?' in url else '?'}{key}={value}"


def execute(url: str, sql: str) -> None:
    """Run `sql` (one or more statements) in autocommit mode."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.encode())


def database_url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def create_database(admin_url: str, name: str, *, collate_c: bool = False) -> str:
    """Create database `name`; returns its URL. By default with a locale whose default
    order is not code-point order (when the server has ICU), so that a missing collation
    on an ordered column shows up; `collate_c`: UTF8 with C collation (as Synapse
    requires)."""
    if collate_c:
        execute(
            admin_url,
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0",
        )
        return database_url(admin_url, name)
    try:
        execute(
            admin_url,
            f"CREATE DATABASE \"{name}\" LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
            "LOCALE 'C.UTF-8' TEMPLATE template0",
        )
    except psycopg.Error:
        execute(admin_url, f'CREATE DATABASE "{name}"')
    return database_url(admin_url, name)


def drop_database(url: str, admin_url: str = POSTGRES_ADMIN_URL) -> None:
    """Drop the database `url` names (connections to it are ended)."""
    execute(admin_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


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


async def _delete_with_timeout(url: str, prefix: str) -> None:
    with trio.fail_after(CLEANUP_TIMEOUT_S):
        await delete_redis_prefix(url, prefix)


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def fresh_store(
    backend: str,
    workdir: Path,
    tag: str = "fresh",
    *,
    postgres_url: str = POSTGRES_ADMIN_URL,
    redis_url: str = REDIS_URL,
) -> Iterator[str]:
    """The storage URL of a new, empty store of `backend`; removed on exit (also after an
    error or Ctrl-C). `workdir` holds SQLite files. Synchronous: enter it outside
    `trio.run` (the Redis cleanup runs its own short Trio run); inside Trio use
    `open_fresh_store`."""
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        path = workdir / f"{unique_name(tag)}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            _remove_sqlite(path)
    elif backend == "postgresql":
        url = create_database(postgres_url, unique_name(f"hs_{tag}"))
        try:
            yield url
        finally:
            drop_database(url, postgres_url)
    elif backend == "redis":
        prefix = unique_name(f"hs_{tag}")
        try:
            yield with_query(redis_url, "prefix", prefix)
        finally:
            trio.run(_delete_with_timeout, redis_url, prefix)
    else:
        raise ValueError(f"unknown backend {backend!r}")


@asynccontextmanager
async def open_fresh_store(
    backend: str,
    workdir: Path,
    tag: str = "fresh",
    *,
    postgres_url: str = POSTGRES_ADMIN_URL,
    redis_url: str = REDIS_URL,
) -> AsyncIterator[str]:
    """`fresh_store` inside Trio: blocking driver calls run in a thread, and the
    cleanup is shielded from cancellation."""
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        path = workdir / f"{unique_name(tag)}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            _remove_sqlite(path)
    elif backend == "postgresql":
        name = unique_name(f"hs_{tag}")
        url = await trio.to_thread.run_sync(create_database, postgres_url, name)
        try:
            yield url
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(drop_database, url, postgres_url)
    elif backend == "redis":
        prefix = unique_name(f"hs_{tag}")
        try:
            yield with_query(redis_url, "prefix", prefix)
        finally:
            with trio.CancelScope(shield=True):
                await _delete_with_timeout(redis_url, prefix)
    else:
        raise ValueError(f"unknown backend {backend!r}")
