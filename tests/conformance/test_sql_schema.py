"""SQL backend only: migrations, schema revision checks and driver failures.

The behaviour shared with the other backends is in the other test modules; these tests
cover what only SQLite and PostgreSQL have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text

from backends import BackendUnavailable, StorageError, open_storage
from backends.protocols import AuthLookup, SessionStart
from backends.sql import head_revision, migrate, open_sql
from backends.sql.database import open_database
from backends.sql.migrate import alembic_config
from backends.sql.presence import SqlPresenceStore
from backends.sql.rate_limits import SqlRateLimitStore
from backends.sql.rooms import SqlRoomStore
from backends.sql.schema import metadata, rate_limits
from backends.sql.sessions import SqlSessionStore
from backends.sql.typing_state import SqlTypingStore
from backends.sql.user_data import SqlAccountDataStore
from backends.sql.users import SqlDeviceStore, SqlUserStore
from tests.services import require_postgres, unique_name

from .records import (
    ALICE,
    BOB,
    ROOM,
    as_stored,
    device,
    make_room,
    member,
    message,
    room,
    server_event,
    session,
    token,
    user,
)
from .support import Backend, PostgresDatabase, execute


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """SQLite (a file URL) or PostgreSQL (the admin URL); sync so skips keep their reason."""
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path / 'empty.db'}")
    return Backend("postgresql", require_postgres())


@pytest.fixture
def postgres_admin_url() -> str:
    return require_postgres()


@pytest.fixture
async def empty_url(
    sql_backend: Backend, postgres_database: PostgresDatabase
) -> AsyncIterator[str]:
    """The URL of an empty database (no schema at all): a fresh SQLite file, or a fresh
    PostgreSQL schema in the session's database (first on the search path)."""
    if sql_backend.name == "sqlite":
        yield sql_backend.url
        return
    database_url = await postgres_database.ensure(sql_backend.url)
    schema = unique_name("schema")
    await trio.to_thread.run_sync(execute, database_url, f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{database_url}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(execute, database_url, f'DROP SCHEMA "{schema}" CASCADE')


async def _run(url: str, fn: Any) -> Any:
    async with open_database(url) as db:
        return await db.write(fn)


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _schema_diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrate_builds_the_declared_schema(empty_url: str) -> None:
    await migrate(empty_url)
    assert await _run(empty_url, _revision) == head_revision()
    assert await _run(empty_url, _schema_diff) == []


async def test_migrate_is_idempotent_and_keeps_data(empty_url: str) -> None:
    await migrate(empty_url)
    async with open_sql(empty_url) as storage:
        await storage.users.create_user(user(ALICE))
    await migrate(empty_url)
    async with open_sql(empty_url, migrate=False) as storage:
        assert await storage.users.get_user(ALICE) == user(ALICE)


def _upgrade_to(revision: str) -> Any:
    def run(conn: Connection) -> None:
        command.upgrade(alembic_config(conn), revision)

    return run


def _downgrade_to(revision: str) -> Any:
    def run(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), revision)

    return run


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def test_a_database_at_0001_migrates_to_head_and_keeps_its_data(empty_url: str) -> None:
    await _run(empty_url, _upgrade_to("0001"))
    assert await _run(empty_url, _revision) == "0001"
    # Data written by the 0001-era stores, straight into the 0001 schema.
    async with open_database(empty_url) as db:
        await SqlUserStore(db).create_user(user(ALICE))
        await SqlDeviceStore(db).add_device_with_token(device(ALICE, "DEV"), token("t"))
        rooms = SqlRoomStore(db)
        await rooms.create_room(room(ROOM))
        old_events = await rooms.append_events([message(ROOM, body="before")])
        old_pos = await SqlAccountDataStore(db).put_account_data(ALICE, None, "m.x", {"a": 1})
    with pytest.raises(StorageError, match="migrate"):
        async with open_sql(empty_url, migrate=False):
            pass  # pragma: no cover

    async with open_sql(empty_url) as storage:
        assert await storage.users.get_user(ALICE) == user(ALICE)
        assert await storage.devices.get_token("t") == token("t")
        assert await storage.rooms.get_room(ROOM) == room(ROOM)
        assert await storage.rooms.get_event(old_events[0].event_id) == old_events[0]
        assert await storage.account_data.get_account_data(ALICE, None, "m.x") == {"a": 1}
        assert await storage.rooms.current_stream_pos() == old_pos
        # The new stores work and continue the stream where it was.
        started = await storage.sessions.start_session(session("s"), replace=False)
        assert started == SessionStart(session=session("s"), replaced=None)
        assert await storage.sessions.authenticate("t", None) == AuthLookup(
            token=token("t"), session=session("s")
        )
        change = await storage.typing.set_typing(ROOM, ALICE, "s", 1_000)
        assert change is not None and change.stream_pos == old_pos + 1
        published = await storage.presence.put_presence(ALICE, "online", None, 1)
        assert published.stream_pos == old_pos + 2
    assert await _run(empty_url, _revision) == head_revision()
    assert await _run(empty_url, _schema_diff) == []


async def test_downgrade_to_0001_drops_only_the_new_tables(empty_url: str) -> None:
    await migrate(empty_url)
    async with open_sql(empty_url) as storage:
        await storage.users.create_user(user(ALICE))
        await storage.sessions.start_session(session("s"), replace=False)
    await _run(empty_url, _downgrade_to("0001"))
    tables = await _run(empty_url, _tables)
    assert not tables & {"sessions", "active_sessions", "typing", "typing_rooms", "presence"}
    await migrate(empty_url)
    async with open_sql(empty_url, migrate=False) as storage:
        assert await storage.users.get_user(ALICE) == user(ALICE)
        assert await storage.sessions.list_user_sessions(ALICE) == []


async def test_a_database_at_0002_migrates_to_head_and_keeps_its_data(empty_url: str) -> None:
    await _run(empty_url, _upgrade_to("0002"))
    assert await _run(empty_url, _revision) == "0002"
    # Data written by the 0002-era stores, straight into the 0002 schema.
    async with open_database(empty_url) as db:
        await SqlDeviceStore(db).add_device_with_token(device(ALICE, "DEV"), token("t"))
        await SqlRoomStore(db).create_room(room(ROOM))
        await SqlSessionStore(db).start_session(session("s"), replace=False)
        typing = await SqlTypingStore(db).set_typing(ROOM, ALICE, "s", 50_000)
        published = await SqlPresenceStore(db).put_presence(ALICE, "online", "hi", 1)
    assert typing is not None
    with pytest.raises(StorageError, match="migrate"):
        async with open_sql(empty_url, migrate=False):
            pass  # pragma: no cover

    async with open_sql(empty_url) as storage:
        assert await storage.sessions.authenticate("t", None) == AuthLookup(
            token=token("t"), session=session("s")
        )
        assert await storage.typing.get_typing([ROOM]) == {ROOM: typing}
        assert await storage.presence.get_presence(ALICE) == published
        assert await storage.rooms.current_stream_pos() == published.stream_pos
        # The new stores work, and server events continue the stream where it was.
        new = server_event()
        added = await storage.server_events.add_server_event(new)
        assert added == as_stored(new, published.stream_pos + 1)
        assert await storage.server_events.get_server_events(
            ALICE, [], after=0, upto=added.stream_pos, limit=10
        ) == [added]
        take = storage.rate_limits.take_token
        assert await take("k", capacity=1, refill_per_s=1, now_ms=0) == 0
        assert await take("k", capacity=1, refill_per_s=1, now_ms=0) == 1_000
    assert await _run(empty_url, _revision) == head_revision()
    assert await _run(empty_url, _schema_diff) == []


async def test_downgrade_to_0002_drops_only_the_new_tables(empty_url: str) -> None:
    await migrate(empty_url)
    async with open_sql(empty_url) as storage:
        await storage.sessions.start_session(session("s"), replace=False)
        await storage.server_events.add_server_event(server_event())
        await storage.rate_limits.take_token("k", capacity=1, refill_per_s=1, now_ms=0)
    await _run(empty_url, _downgrade_to("0002"))
    tables = await _run(empty_url, _tables)
    assert not tables & {"rate_limits", "server_events"}
    assert "sessions" in tables
    await migrate(empty_url)
    async with open_sql(empty_url, migrate=False) as storage:
        assert await storage.sessions.get_session("s") == session("s")
        assert (
            await storage.server_events.get_server_events(ALICE, [], after=0, upto=2**62, limit=10)
            == []
        )


_JOINED_INDEXES = {
    "ix_memberships_joined_room_id_user_id",
    "ix_memberships_joined_user_id_room_id",
}


def _membership_indexes(conn: Connection) -> set[str]:
    return {str(index["name"]) for index in inspect(conn).get_indexes("memberships")}


async def test_a_database_at_0003_migrates_to_head_and_keeps_its_joined_members(
    empty_url: str,
) -> None:
    await _run(empty_url, _upgrade_to("0003"))
    assert not await _run(empty_url, _membership_indexes) & _JOINED_INDEXES
    # Memberships written into the 0003 schema (its rows are what the indexes cover).
    async with open_database(empty_url) as db:
        rooms = SqlRoomStore(db)
        await rooms.create_room(room(ROOM))
        await rooms.append_events([member(ROOM, ALICE, "join"), member(ROOM, BOB, "invite")])
    await migrate(empty_url)
    assert await _run(empty_url, _revision) == head_revision()
    assert await _run(empty_url, _membership_indexes) >= _JOINED_INDEXES
    assert await _run(empty_url, _schema_diff) == []
    async with open_sql(empty_url, migrate=False) as storage:
        assert await storage.rooms.get_joined_members(ROOM) == [ALICE]
        assert await storage.rooms.get_joined_rooms(ALICE) == [ROOM]
        assert await storage.rooms.get_joined_rooms(BOB) == []


async def test_downgrade_to_0003_drops_only_the_joined_indexes(empty_url: str) -> None:
    await migrate(empty_url)
    async with open_sql(empty_url) as storage:
        await make_room(storage)
        await storage.rooms.append_events([member(ROOM, ALICE, "join")])
    await _run(empty_url, _downgrade_to("0003"))
    assert not await _run(empty_url, _membership_indexes) & _JOINED_INDEXES
    await migrate(empty_url)
    async with open_sql(empty_url, migrate=False) as storage:
        assert await storage.rooms.get_joined_members(ROOM) == [ALICE]


async def test_sqlite_reads_joined_members_from_the_partial_indexes(tmp_path: Path) -> None:
    """The queries name `membership = 'join'` literally, so SQLite's planner can use
    the partial indexes (it cannot match a bound parameter against them)."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    await migrate(url)

    def plans(conn: Connection) -> list[str]:
        out = []
        for column, other in (("room_id", "user_id"), ("user_id", "room_id")):
            rows = conn.execute(
                text(
                    f"EXPLAIN QUERY PLAN SELECT {other} FROM memberships "
                    f"WHERE {column} = 'x' AND membership = 'join' ORDER BY {other}"
                )
            )
            out.append(" ".join(str(row[-1]) for row in rows))
        return out

    by_room, by_user = await _run(url, plans)
    assert "ix_memberships_joined_room_id_user_id" in by_room
    assert "ix_memberships_joined_user_id_room_id" in by_user


def _bucket_keys(conn: Connection) -> list[str]:
    return list(
        conn.execute(select(rate_limits.c.bucket_key).order_by(rate_limits.c.bucket_key)).scalars()
    )


async def test_buckets_full_again_are_forgotten(empty_url: str) -> None:
    await migrate(empty_url)
    async with open_database(empty_url) as db:
        store = SqlRateLimitStore(db)
        take = store.take_token
        await take("one-taken", capacity=2, refill_per_s=1, now_ms=0)  # full at 1 s
        for _ in range(2):
            await take("drained", capacity=2, refill_per_s=1, now_ms=0)  # full at 2 s
        await take("too-dear", capacity=2, refill_per_s=1, now_ms=0, cost=3)  # still full
        await take("no-refill", capacity=1, refill_per_s=0, now_ms=0)  # never full again
        assert await store.forget_full_buckets(999, 10) == 1
        assert await db.read(_bucket_keys) == ["drained", "no-refill", "one-taken"]
        assert await store.forget_full_buckets(1_999, 10) == 1
        assert await db.read(_bucket_keys) == ["drained", "no-refill"]
        # A forgotten bucket is a full one.
        assert await take("one-taken", capacity=2, refill_per_s=1, now_ms=1_999) == 0
        assert await store.forget_full_buckets(10**12, 1) == 1
        assert await store.forget_full_buckets(10**12, 10) == 1
        assert await db.read(_bucket_keys) == ["no-refill"]
        assert await take("drained", capacity=2, refill_per_s=1, now_ms=10**12) == 0
        assert await take("no-refill", capacity=1, refill_per_s=0, now_ms=10**12) == 2**31 - 1


async def test_takes_forget_full_buckets_now_and_then(empty_url: str) -> None:
    await migrate(empty_url)
    async with open_database(empty_url) as db:
        store = SqlRateLimitStore(db, prune_every=5)
        for i in range(4):
            await store.take_token(f"k{i}", capacity=1, refill_per_s=1, now_ms=0)
        assert await db.read(_bucket_keys) == ["k0", "k1", "k2", "k3"]
        # The fifth take first forgets the four (full again a second later).
        await store.take_token("k4", capacity=1, refill_per_s=1, now_ms=1_000)
        assert await db.read(_bucket_keys) == ["k4"]


async def test_concurrent_migrations_of_one_database(empty_url: str) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(migrate, empty_url)
    assert await _run(empty_url, _revision) == head_revision()


async def test_open_without_migrate_refuses_an_empty_database(empty_url: str) -> None:
    with pytest.raises(StorageError, match="migrate"):
        async with open_sql(empty_url, migrate=False):
            pass  # pragma: no cover


async def test_newer_schema_revision_is_refused(empty_url: str) -> None:
    await migrate(empty_url)

    def set_future_revision(conn: Connection) -> None:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))

    await _run(empty_url, set_future_revision)
    message_ = "database schema revision ffff9999 is newer than this server supports"
    with pytest.raises(StorageError, match=message_):
        await migrate(empty_url)
    for migrate_on_open in (True, False):
        with pytest.raises(StorageError, match=message_):
            async with open_sql(empty_url, migrate=migrate_on_open):
                pass  # pragma: no cover


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    async with open_sql(url):
        pass

    def journal_mode(conn: Connection) -> Any:
        return conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()

    assert await _run(url, journal_mode) == "wal"


async def test_sqlite_in_memory_database_works() -> None:
    async with open_storage("sqlite://") as storage:
        await make_room(storage)
        [event] = await storage.rooms.append_events([message(ROOM)])
        assert await storage.rooms.get_event(event.event_id) == event


async def test_unreachable_postgres_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable):
        async with open_sql("postgresql://postgres@127.0.0.1:1/nothing"):
            pass  # pragma: no cover


async def test_unopenable_sqlite_file_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable):
        async with open_sql(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}"):
            pass  # pragma: no cover


async def test_invalid_urls_are_storage_errors() -> None:
    for url in ["sqlite:///x.db?pool_size=0", "mysql://localhost/x", "not a url"]:
        with pytest.raises(StorageError):
            async with open_sql(url):
                pass  # pragma: no cover


async def test_driver_errors_surface_as_storage_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broken.db'}"
    async with open_sql(url) as storage:
        await make_room(storage)

        def drop_events(conn: Connection) -> None:
            conn.exec_driver_sql("DROP TABLE room_state")
            conn.exec_driver_sql("DROP TABLE events")

        await _run(url, drop_events)
        with pytest.raises(StorageError):
            await storage.rooms.append_events([message(ROOM)])
        with pytest.raises(StorageError):
            await storage.rooms.get_event("$x")
        # Other tables still work.
        await storage.users.create_user(user(ALICE))


@pytest.mark.postgres
async def test_postgres_connections_killed_under_the_pool_recover(
    postgres_admin_url: str, postgres_database: PostgresDatabase
) -> None:
    url = await postgres_database.ensure(postgres_admin_url)
    async with open_sql(url, pool_size=2) as storage:
        await storage.rooms.current_stream_pos()
        await trio.to_thread.run_sync(
            execute,
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        # The pool notices the dead connections and reconnects; the read is retried.
        assert await storage.rooms.current_stream_pos() >= 0
        await storage.users.create_user(user(ALICE))
        await trio.to_thread.run_sync(
            execute,
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        # A write that found its connection dead had not committed: retried as well.
        await storage.users.set_profile_field(ALICE, "displayname", "y")
        stored = await storage.users.get_user(ALICE)
        assert stored is not None and stored.displayname == "y"
        await trio.to_thread.run_sync(
            execute,
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        # So is a one-statement read outside a transaction (authentication's path).
        assert await storage.sessions.authenticate("unknown", None) is None
