"""Sessions, typing and presence.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01

New tables only: a database at 0001 keeps every row. Spelled out rather than built
from `backends.sql.schema`, so that later schema changes cannot alter this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import TypeEngine

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> TypeEngine[str]:
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("session_id", _id(), nullable=False),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("device_id", _id(), nullable=False),
        sa.Column("presence", sa.Text(), nullable=False),
        sa.Column("status_msg", sa.Text(), nullable=True),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_active_ts", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_sessions"),
    )
    op.create_index(
        "ix_sessions_expires_at_ms_session_id", "sessions", ["expires_at_ms", "session_id"]
    )
    op.create_index("ix_sessions_user_id_device_id", "sessions", ["user_id", "device_id"])
    op.create_table(
        "active_sessions",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("device_id", _id(), nullable=False),
        sa.Column("session_id", _id(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.session_id"],
            name="fk_active_sessions_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "device_id", name="pk_active_sessions"),
        sa.UniqueConstraint("session_id", name="uq_active_sessions_session_id"),
    )
    op.create_table(
        "typing",
        sa.Column("room_id", _id(), nullable=False),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "user_id", name="pk_typing"),
    )
    op.create_index("ix_typing_expires_at_ms", "typing", ["expires_at_ms"])
    op.create_index("ix_typing_session_id", "typing", ["session_id"])
    op.create_table(
        "typing_rooms",
        sa.Column("room_id", _id(), nullable=False),
        sa.Column("stream_pos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("room_id", name="pk_typing_rooms"),
    )
    op.create_table(
        "presence",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("presence", sa.Text(), nullable=False),
        sa.Column("status_msg", sa.Text(), nullable=True),
        sa.Column("last_active_ts", sa.BigInteger(), nullable=False),
        sa.Column("stream_pos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_presence"),
    )


def downgrade() -> None:
    for table in ("presence", "typing_rooms", "typing", "active_sessions", "sessions"):
        op.drop_table(table)
