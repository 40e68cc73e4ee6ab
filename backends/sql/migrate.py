"""Schema migrations: bring a database to the head revision, or refuse it.

Alembic is driven programmatically (no alembic.ini): its `Config` points at the
`migrations` package next to this module and receives an open connection whose
transaction the caller owns, so a migration commits or rolls back as a whole.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select

from backends.errors import StorageError
from backends.sql.database import open_database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Serializes concurrent migrations of one PostgreSQL database (any constant will do).
_PG_MIGRATION_LOCK = 0x6873_6D69  # "hsmi"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for our migrations; `connection` is used by env.py."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the initial revision always exists
        raise StorageError("no schema migrations found")
    return head


def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _script().walk_revisions())


def current_revision(conn: Connection) -> str | None:
    """The database's schema revision (None for a database without our schema).

    Raises StorageError for a revision this code does not know (a newer server
    migrated the database).
    """
    heads = MigrationContext.configure(conn).get_current_heads()
    known = _known_revisions()
    for revision in heads:
        if revision not in known:
            raise StorageError(
                f"database schema revision {revision} is newer than this server supports "
                f"(newest known: {head_revision()}); upgrade the server"
            )
    if len(heads) > 1:
        raise StorageError(f"database has several schema revisions: {', '.join(heads)}")
    return heads[0] if heads else None


def upgrade_to_head(conn: Connection) -> None:
    """Migrate the database to head inside the caller's (write) transaction."""
    if current_revision(conn) == head_revision():
        return
    if conn.dialect.name == "postgresql":
        # Another process may be migrating too; wait for it, then look again.
        conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        if current_revision(conn) == head_revision():
            return
    command.upgrade(alembic_config(conn), "head")


def require_head(conn: Connection) -> None:
    """Refuse a database that is not at the head revision."""
    current = current_revision(conn)
    if current != head_revision():
        raise StorageError(
            f"database schema revision is {current or 'none (empty database)'}, this server "
            f"needs {head_revision()}: migrate it first (backends.sql.migrate)"
        )


async def migrate(url: str) -> None:
    """Bring the database at `url` to the head schema revision.

    Raises StorageError if the database has a revision this code does not know.
    """
    async with open_database(url, pool_size=1) as db:
        await db.write(upgrade_to_head)
