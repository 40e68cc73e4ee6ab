"""The SQL backend: SQLAlchemy Core on SQLite (default) and PostgreSQL (psycopg 3).

`open_sql(url)` opens it as a `backends.protocols.Storage`; `migrate(url)` brings a
database to the head schema revision (Alembic migrations in `migrations/`).
"""

from __future__ import annotations

from backends.sql.migrate import head_revision, migrate
from backends.sql.opener import open_sql

__all__ = ["head_revision", "migrate", "open_sql"]
