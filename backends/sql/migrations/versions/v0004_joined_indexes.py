"""Partial indexes of the "join" memberships (`get_joined_members`, `get_joined_rooms`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Indexes only: a database at 0003 keeps every row, and the new indexes cover the rows
already there. Spelled out rather than built from `backends.sql.schema`, so that later
schema changes cannot alter this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JOINED = sa.text("membership = 'join'")


def upgrade() -> None:
    op.create_index(
        "ix_memberships_joined_room_id_user_id",
        "memberships",
        ["room_id", "user_id"],
        sqlite_where=_JOINED,
        postgresql_where=_JOINED,
    )
    op.create_index(
        "ix_memberships_joined_user_id_room_id",
        "memberships",
        ["user_id", "room_id"],
        sqlite_where=_JOINED,
        postgresql_where=_JOINED,
    )


def downgrade() -> None:
    op.drop_index("ix_memberships_joined_user_id_room_id", table_name="memberships")
    op.drop_index("ix_memberships_joined_room_id_user_id", table_name="memberships")
