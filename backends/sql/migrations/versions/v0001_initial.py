"""Initial schema.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

Spelled out rather than built from `backends.sql.schema`, so that later schema changes
cannot alter what this revision creates.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import TypeEngine

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> TypeEngine[str]:
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _pos() -> TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    counter = op.create_table(
        "stream_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("pos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stream_counter"),
    )
    op.bulk_insert(counter, [{"id": 1, "pos": 0}])

    op.create_table(
        "users",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("displayname", sa.Text(), nullable=True),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
    )
    op.create_table(
        "devices",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("device_id", _id(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ts", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "device_id", name="pk_devices"),
    )
    op.create_table(
        "access_tokens",
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("device_id", _id(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            name="fk_access_tokens_user_id_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token", name="pk_access_tokens"),
    )
    op.create_index("ix_access_tokens_user_id_device_id", "access_tokens", ["user_id", "device_id"])
    op.create_table(
        "rooms",
        sa.Column("room_id", _id(), nullable=False),
        sa.Column("creator", sa.Text(), nullable=False),
        sa.Column("room_version", sa.Text(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("latest_pos", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("room_id", name="pk_rooms"),
    )
    op.create_table(
        "events",
        sa.Column("stream_pos", _pos(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("room_id", _id(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("state_key", sa.Text(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("origin_server_ts", sa.BigInteger(), nullable=False),
        sa.Column("txn_id", sa.Text(), nullable=True),
        sa.Column("device_id", sa.Text(), nullable=True),
        sa.Column("unsigned", sa.Text(), nullable=False),
        sa.Column("redacts", sa.Text(), nullable=True),
        sa.Column("prev_content", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.room_id"], name="fk_events_room_id_rooms"),
        sa.PrimaryKeyConstraint("stream_pos", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_room_id_stream_pos", "events", ["room_id", "stream_pos"])
    op.create_table(
        "room_state",
        sa.Column("room_id", _id(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("state_key", sa.Text(), nullable=False),
        sa.Column("stream_pos", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.room_id"], name="fk_room_state_room_id_rooms"),
        sa.ForeignKeyConstraint(
            ["stream_pos"], ["events.stream_pos"], name="fk_room_state_stream_pos_events"
        ),
        sa.PrimaryKeyConstraint("room_id", "type", "state_key", name="pk_room_state"),
    )
    op.create_table(
        "memberships",
        sa.Column("room_id", _id(), nullable=False),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("membership", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("stream_pos", sa.BigInteger(), nullable=False),
        sa.Column("forgotten", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.room_id"], name="fk_memberships_room_id_rooms"
        ),
        sa.PrimaryKeyConstraint("room_id", "user_id", name="pk_memberships"),
    )
    op.create_index("ix_memberships_user_id_room_id", "memberships", ["user_id", "room_id"])
    op.create_table(
        "account_data",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("room_key", _id(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("stream_pos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "room_key", "type", name="pk_account_data"),
    )
    op.create_index("ix_account_data_user_id_stream_pos", "account_data", ["user_id", "stream_pos"])
    op.create_table(
        "filters",
        sa.Column("filter_id", _pos(), autoincrement=True, nullable=False),
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("filter_id", name="pk_filters"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "txns",
        sa.Column("user_id", _id(), nullable=False),
        sa.Column("device_id", _id(), nullable=False),
        sa.Column("txn_key", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id", "txn_key", name="pk_txns"),
    )


def downgrade() -> None:
    for table in (
        "txns",
        "filters",
        "account_data",
        "memberships",
        "room_state",
        "events",
        "rooms",
        "access_tokens",
        "devices",
        "users",
        "stream_counter",
    ):
        op.drop_table(table)
