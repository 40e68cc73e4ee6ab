"""Group commit (`backends/sql/database.py`): writes that queue up while one runs
share one transaction, every caller hears only after its COMMIT, and one failing write
fails no other. On a real SQLite file (every write) and a real PostgreSQL database
(`write_one` and `serialized` writes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from sqlalchemy import Connection, create_engine, text

from backends.errors import Conflict
from backends.fresh import open_fresh_store
from backends.sql.database import Database, open_database
from backends.timeouts import StorageTimeouts
from tests.services import require_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgresql":
        require_postgres()
    return name


@pytest.fixture
async def db(dialect: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with (
        open_fresh_store(dialect, tmp_path, "group") as url,
        open_database(url, timeouts=StorageTimeouts()) as database,
    ):
        await database.write(
            lambda conn: conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
        )
        yield database


def _grouped_write(db: Database) -> Callable[..., Awaitable[int]]:
    """The write that groups on this dialect: any on SQLite, `serialized` on PostgreSQL."""
    if db.dialect == "sqlite":
        return db.write
    return lambda fn, **kw: db.write(fn, serialized=True, **kw)


def _insert(key: str, value: int) -> Callable[[Connection], int]:
    def run(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (k, v) VALUES (:k, :v)"), {"k": key, "v": value})
        return value

    return run


def _rows(db: Database) -> dict[str, int]:
    # Another connection (not from the pool): only committed rows.
    other = create_engine(db.engine.url, poolclass=None)
    try:
        with other.connect() as conn:
            return {str(row[0]): int(row[1]) for row in conn.execute(text("SELECT k, v FROM t"))}
    finally:
        other.dispose()


async def test_writes_that_queue_up_share_one_commit_and_hear_after_it(db: Database) -> None:
    heard: dict[str, int] = {}

    async def write(i: int) -> None:
        heard[f"k{i}"] = await _grouped_write(db)(_insert(f"k{i}", i))
        # Heard only once committed: another connection sees it.
        assert _rows(db)[f"k{i}"] == i

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(write, i)
    assert heard == {f"k{i}": i for i in range(20)}
    assert _rows(db) == heard
    # 20 writes started at once: the first runs alone, the rest queue behind it.
    assert db.group_commits >= 1


async def test_a_failing_write_in_a_group_fails_no_other(db: Database) -> None:
    await db.write(_insert("taken", 0))
    results: dict[str, object] = {}

    async def write(key: str, value: int, conflict: str | None = None) -> None:
        try:
            results[key + str(value)] = await _grouped_write(db)(
                _insert(key, value), conflict=conflict
            )
        except Conflict as exc:
            results[key + str(value)] = exc

    blocker_started = trio.Event()
    release = trio.Event()

    def slow(conn: Connection) -> int:
        trio.from_thread.run_sync(blocker_started.set)
        trio.from_thread.run(release.wait)
        conn.execute(text("INSERT INTO t (k, v) VALUES ('slow', 1)"))
        return 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_grouped_write(db), slow)
        await blocker_started.wait()
        # These three queue behind the slow write and go as one group.
        nursery.start_soon(write, "a", 1)
        nursery.start_soon(write, "taken", 2, "key taken")
        nursery.start_soon(write, "b", 3)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    # They went together, the group was rolled back, and each then ran on its own.
    assert db.groups_rolled_back == 1
    assert results["a1"] == 1 and results["b3"] == 3
    failure = results["taken2"]
    assert isinstance(failure, Conflict) and "key taken" in str(failure)
    assert _rows(db) == {"taken": 0, "slow": 1, "a": 1, "b": 3}


async def test_a_write_cancelled_while_queued_is_never_run(db: Database) -> None:
    started = trio.Event()
    release = trio.Event()

    def slow(conn: Connection) -> int:
        trio.from_thread.run_sync(started.set)
        trio.from_thread.run(release.wait)
        return 0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_grouped_write(db), slow)
        await started.wait()
        scope = trio.CancelScope()

        async def cancelled() -> None:
            with scope:
                await _grouped_write(db)(_insert("dropped", 2))

        nursery.start_soon(_grouped_write(db), _insert("kept", 1))
        nursery.start_soon(cancelled)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert _rows(db) == {"kept": 1}


async def test_write_one_writes_are_grouped(db: Database) -> None:
    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(db.write_one, _insert(f"w{i}", i))
    assert _rows(db) == {f"w{i}": i for i in range(10)}
    assert db.group_commits >= 1
