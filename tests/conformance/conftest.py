"""The `storage` fixture: every conformance test runs once per backend, on an empty store.

Isolation per backend:
- memory: a new instance per test.
- sqlite: a new database file in the test's tmp_path, copied from one migrated once
  per test session (test_sql_schema.py covers migrating).
- postgresql: one uniquely named database per test session, created and migrated on
  first use and dropped when the session ends; before each test every row is deleted
  and the stream counter and sequences reset, so no test sees another's rows.
- redis: a unique key prefix per test; every key under it is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from backends import Storage, open_storage
from backends.fresh import delete_redis_prefix, unique_name, with_query
from backends.memory import open_memory
from backends.sql import migrate
from tests.services import backend_params, require_postgres, require_redis

from .support import Backend, PostgresDatabase, empty_database

# Every backend of `backends.fresh`, with its pytest mark.
BACKENDS = backend_params()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    database = PostgresDatabase()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database file migrated to head once; each test gets a copy (running
    the migrations costs ~20 ms a test, a copy well under 1 ms)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    trio.run(migrate, f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        # Everything into the main file, so that copying it alone copies the database.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Which backend and where it lives. A sync fixture, so that a skip keeps its reason
    (pytest-trio drops the reason of a skip raised inside the Trio run)."""
    name: str = request.param
    if name == "memory":
        return Backend(name, "memory://")
    if name == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "conformance.db"
        shutil.copyfile(template, path)
        return Backend(name, f"sqlite:///{path}")
    if name == "postgresql":
        return Backend(name, require_postgres())
    if name == "redis":
        try:
            importlib.import_module("backends.redis")
        except ImportError:
            pytest.skip("redis backend not built yet")
        return Backend(name, require_redis())
    raise AssertionError(name)  # pragma: no cover


@pytest.fixture
async def storage(backend: Backend, postgres_database: PostgresDatabase) -> AsyncIterator[Storage]:
    """A fresh, empty Storage of each backend."""
    if backend.name == "memory":
        async with open_memory(backend.url) as store:
            yield store
    elif backend.name == "postgresql":
        url = await postgres_database.ensure(backend.url)
        await trio.to_thread.run_sync(empty_database, url)
        # Migrated once by `ensure`: opening only checks the revision.
        async with open_storage(url, migrate=False) as store:
            yield store
    elif backend.name == "redis":
        prefix = unique_name("hs_conformance")
        try:
            async with open_storage(with_query(backend.url, "prefix", prefix)) as store:
                yield store
        finally:
            with trio.CancelScope(shield=True):
                await delete_redis_prefix(backend.url, prefix)
    else:
        async with open_storage(backend.url) as store:
            yield store
