"""Helpers of the conformance fixtures: backend descriptions, the session's PostgreSQL
database, and running jobs concurrently (fresh stores themselves: `backends.fresh`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
import trio
from sqlalchemy.engine import make_url

from backends.fresh import create_database, delete_redis_prefix, execute, unique_name
from backends.sql import migrate
from backends.sql.schema import metadata, stream_counter

__all__ = [
    "Backend",
    "PostgresDatabase",
    "delete_redis_prefix",
    "empty_database",
    "execute",
    "gather",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Backend:
    """A backend under test: its name (the fixture param) and where it lives."""

    name: str
    url: str


class PostgresDatabase:
    """One uniquely named database: created and migrated on first use, then reused;
    `drop()` (at session end) removes it."""

    def __init__(self) -> None:
        self._admin_url: str | None = None
        self._name: str | None = None
        self._migrated = False

    async def ensure(self, admin_url: str) -> str:
        """The database's URL, creating and migrating it if need be."""
        if self._admin_url is None or self._name is None:
            name = unique_name("hs_conformance")
            await trio.to_thread.run_sync(create_database, admin_url, name)
            self._admin_url, self._name = admin_url, name
        url = make_url(self._admin_url).set(database=self._name)
        url_text = url.render_as_string(hide_password=False)
        if not self._migrated:
            await migrate(url_text)
            self._migrated = True
        return url_text

    def drop(self) -> None:
        if self._admin_url is not None and self._name is not None:
            execute(self._admin_url, f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')
            self._admin_url = self._name = None
            self._migrated = False


def empty_database(url: str) -> None:
    """Delete every row of our schema, reset sequences and the stream counter.

    DELETE, not TRUNCATE: on tables this small it is several times faster.
    """
    statements = [
        f'DELETE FROM "{table.name}"'
        for table in reversed(metadata.sorted_tables)
        if table is not stream_counter
    ]
    statements += [
        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), 1, false)"
        for table in metadata.sorted_tables
        for column in table.primary_key.columns
        if column.autoincrement is True
    ]
    statements.append(f'UPDATE "{stream_counter.name}" SET pos = 0')
    with psycopg.connect(url) as conn:
        conn.execute("; ".join(statements).encode())


async def gather(*jobs: Callable[[], Awaitable[T]]) -> list[T]:
    """Run the jobs concurrently in one nursery; their results in job order (the first
    exception propagates, as nurseries do)."""
    results: dict[int, T] = {}

    async def run(index: int, job: Callable[[], Awaitable[T]]) -> None:
        results[index] = await job()

    async with trio.open_nursery() as nursery:
        for index, job in enumerate(jobs):
            nursery.start_soon(run, index, job)
    return [results[index] for index in range(len(jobs))]
