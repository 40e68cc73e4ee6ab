"""`open_sql(url)`: the SQL backend (SQLite or PostgreSQL) as a `Storage`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backends.protocols import Storage
from backends.sql.database import open_database
from backends.sql.migrate import require_head, upgrade_to_head
from backends.sql.presence import SqlPresenceStore
from backends.sql.rate_limits import SqlRateLimitStore
from backends.sql.rooms import SqlRoomStore
from backends.sql.server_events import SqlServerEventStore
from backends.sql.sessions import SqlSessionStore
from backends.sql.typing_state import SqlTypingStore
from backends.sql.user_data import SqlAccountDataStore, SqlFilterStore, SqlTransactionStore
from backends.sql.users import SqlDeviceStore, SqlUserStore
from backends.timeouts import StorageTimeouts
from backends.urls import redact_url


@asynccontextmanager
async def open_sql(
    url: str,
    *,
    migrate: bool = True,
    pool_size: int | None = None,
    timeouts: StorageTimeouts | None = None,
) -> AsyncIterator[Storage]:
    """Open `sqlite:///PATH` or `postgresql://...` (query option `pool_size=N`).

    With `migrate` (the default) the schema is brought to the head revision first
    (without the operation deadline); without it, a database that is not at head is
    refused. A database migrated by a newer server is always refused. Raises
    BackendUnavailable if the database cannot be reached, or does not answer within
    `timeouts` (default `StorageTimeouts()`), which also bound every operation. The
    engine is disposed on exit.
    """
    async with open_database(url, pool_size, timeouts or StorageTimeouts()) as db:
        if migrate:
            await db.migrate(upgrade_to_head)
        else:
            await db.read(require_head)

        async def close() -> None:
            await db.dispose()

        yield Storage(
            description=redact_url(url),
            users=SqlUserStore(db),
            devices=SqlDeviceStore(db),
            rooms=SqlRoomStore(db),
            account_data=SqlAccountDataStore(db),
            filters=SqlFilterStore(db),
            txns=SqlTransactionStore(db),
            sessions=SqlSessionStore(db),
            typing=SqlTypingStore(db),
            presence=SqlPresenceStore(db),
            rate_limits=SqlRateLimitStore(db),
            server_events=SqlServerEventStore(db),
            closer=close,
        )
