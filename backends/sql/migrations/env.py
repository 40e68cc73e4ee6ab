"""Alembic environment, loaded by Alembic for every migration command.

The server passes an open connection (already inside a transaction) through
`config.attributes["connection"]`, so no alembic.ini is needed at runtime. For
developers running the alembic CLI (e.g. `alembic revision --autogenerate`), an
`sqlalchemy.url` main option is used instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from backends.sql.engine import parse_url
from backends.sql.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        transaction_per_migration=False,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url_option = config.get_main_option("sqlalchemy.url")
    if url_option is None:
        raise RuntimeError("alembic: set sqlalchemy.url or pass a connection")
    url, _ = parse_url(url_option)
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


_main()
