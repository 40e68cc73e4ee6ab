"""Rate-limit buckets and server-generated events.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-08

New tables only: a database at 0002 keeps every row. Spelled out rather than built
from `backends.sql.schema`, so that later schema changes cannot alter this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import TypeEngine

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> TypeEngine[str]:
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _pos() -> TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("bucket_key", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("full_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_key", name="pk_rate_limits"),
    )
    op.create_index("ix_rate_limits_full_at_ms", "rate_limits", ["full_at_ms"])
    op.create_table(
        "server_events",
        sa.Column("stream_pos", _pos(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("origin_server_ts", sa.BigInteger(), nullable=False),
        sa.Column("target_kind", sa.Text(), nullable=False),
        sa.Column("target", _id(), nullable=True),
        sa.PrimaryKeyConstraint("stream_pos", name="pk_server_events"),
        sa.UniqueConstraint("event_id", name="uq_server_events_event_id"),
    )
    op.create_index(
        "ix_server_events_target_kind_target_stream_pos",
        "server_events",
        ["target_kind", "target", "stream_pos"],
    )
    op.create_index(
        "ix_server_events_target_kind_stream_pos", "server_events", ["target_kind", "stream_pos"]
    )


def downgrade() -> None:
    for table in ("server_events", "rate_limits"):
        op.drop_table(table)
