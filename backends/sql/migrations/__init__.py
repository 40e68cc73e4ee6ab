"""Alembic migrations of the SQL schema (run programmatically by `backends.sql.migrate`)."""
