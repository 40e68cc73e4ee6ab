"""The SQL schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

This module describes the schema at the head revision; the migrations in
`backends.sql.migrations` build it. A test compares the two, so change both together
(a new Alembic revision, never an edit of an old one).

Conventions:
- Identifiers (user, device, room ids) sort by code point, as the memory backend does:
  on PostgreSQL their columns use the "C" collation (the database default may be a
  locale that ignores case and punctuation); SQLite's default BINARY collation already
  compares UTF-8 bytes, which is code-point order.
- JSON is stored as text (`json.dumps`).
- Global account data uses room key '' (room ids always start with '!').
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def id_type() -> TypeEngine[str]:
    """Text that orders by code point on every dialect."""
    return Text().with_variant(Text(collation="C"), "postgresql")


def pos_type() -> TypeEngine[int]:
    """A 64-bit integer that is SQLite's rowid when it is the primary key."""
    return BigInteger().with_variant(Integer(), "sqlite")


# One row (id = 1): the last stream position handed out. Writers bump it inside their
# transaction, so on PostgreSQL its row lock orders commits by position.
stream_counter = Table(
    "stream_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("pos", BigInteger, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", id_type(), primary_key=True),
    Column("password_hash", Text, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("displayname", Text, nullable=True),
    Column("avatar_url", Text, nullable=True),
    Column("is_admin", Boolean, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("user_id", id_type(), primary_key=True),
    Column("device_id", id_type(), primary_key=True),
    Column("display_name", Text, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("last_seen_ts", BigInteger, nullable=True),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("token", Text, primary_key=True),
    Column("user_id", id_type(), nullable=False),
    Column("device_id", id_type(), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["user_id", "device_id"],
        ["devices.user_id", "devices.device_id"],
        ondelete="CASCADE",
    ),
    Index(None, "user_id", "device_id"),
)

rooms = Table(
    "rooms",
    metadata,
    Column("room_id", id_type(), primary_key=True),
    Column("creator", Text, nullable=False),
    Column("room_version", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    # Stream position of the room's newest event; NULL until it has one.
    Column("latest_pos", BigInteger, nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("stream_pos", pos_type(), primary_key=True, autoincrement=False),
    Column("event_id", Text, nullable=False, unique=True),
    Column("room_id", id_type(), nullable=False),
    Column("sender", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("state_key", Text, nullable=True),
    Column("content", Text, nullable=False),
    Column("origin_server_ts", BigInteger, nullable=False),
    Column("txn_id", Text, nullable=True),
    Column("device_id", Text, nullable=True),
    Column("unsigned", Text, nullable=False),
    Column("redacts", Text, nullable=True),
    Column("prev_content", Text, nullable=True),
    ForeignKeyConstraint(["room_id"], ["rooms.room_id"]),
    Index(None, "room_id", "stream_pos"),
)

room_state = Table(
    "room_state",
    metadata,
    Column("room_id", id_type(), primary_key=True),
    Column("type", Text, primary_key=True),
    Column("state_key", Text, primary_key=True),
    Column("stream_pos", BigInteger, nullable=False),
    ForeignKeyConstraint(["room_id"], ["rooms.room_id"]),
    ForeignKeyConstraint(["stream_pos"], ["events.stream_pos"]),
)

memberships = Table(
    "memberships",
    metadata,
    Column("room_id", id_type(), primary_key=True),
    Column("user_id", id_type(), primary_key=True),
    Column("membership", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("stream_pos", BigInteger, nullable=False),
    Column("forgotten", Boolean, nullable=False),
    ForeignKeyConstraint(["room_id"], ["rooms.room_id"]),
    Index(None, "user_id", "room_id"),
    # The joined members of a room and the joined rooms of a user, read as one index
    # range each (revision 0004).
    Index(
        "ix_memberships_joined_room_id_user_id",
        "room_id",
        "user_id",
        sqlite_where=text("membership = 'join'"),
        postgresql_where=text("membership = 'join'"),
    ),
    Index(
        "ix_memberships_joined_user_id_room_id",
        "user_id",
        "room_id",
        sqlite_where=text("membership = 'join'"),
        postgresql_where=text("membership = 'join'"),
    ),
)

account_data = Table(
    "account_data",
    metadata,
    Column("user_id", id_type(), primary_key=True),
    Column("room_key", id_type(), primary_key=True),
    Column("type", Text, primary_key=True),
    Column("content", Text, nullable=False),
    Column("stream_pos", BigInteger, nullable=False),
    Index(None, "user_id", "stream_pos"),
)

filters = Table(
    "filters",
    metadata,
    Column("filter_id", pos_type(), primary_key=True, autoincrement=True),
    Column("user_id", id_type(), nullable=False),
    Column("definition", Text, nullable=False),
    sqlite_autoincrement=True,
)

txns = Table(
    "txns",
    metadata,
    Column("user_id", id_type(), primary_key=True),
    Column("device_id", id_type(), primary_key=True),
    Column("txn_key", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
)

# Sessions (revision 0002). No foreign key to devices: the session store does not
# require its device to exist, as in every other backend; logout ends sessions itself.
sessions = Table(
    "sessions",
    metadata,
    Column("session_id", id_type(), primary_key=True),
    Column("user_id", id_type(), nullable=False),
    Column("device_id", id_type(), nullable=False),
    Column("presence", Text, nullable=False),
    Column("status_msg", Text, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("last_active_ts", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    # The reaper takes the earliest deadlines first: it reads this index from its start.
    Index(None, "expires_at_ms", "session_id"),
    Index(None, "user_id", "device_id"),
)

# The device's active session. The primary key makes "one active session per device"
# a constraint (concurrent implicit starts meet on it); deleting a session deletes the
# pointer to it.
active_sessions = Table(
    "active_sessions",
    metadata,
    Column("user_id", id_type(), primary_key=True),
    Column("device_id", id_type(), primary_key=True),
    Column("session_id", id_type(), nullable=False, unique=True),
    ForeignKeyConstraint(["session_id"], ["sessions.session_id"], ondelete="CASCADE"),
)

# Who types where, for which session (or other owner id), until when.
typing = Table(
    "typing",
    metadata,
    Column("room_id", id_type(), primary_key=True),
    Column("user_id", id_type(), primary_key=True),
    Column("session_id", Text, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Index(None, "expires_at_ms"),
    Index(None, "session_id"),
)

# The stream position of each room's last typing change (kept when nobody types).
typing_rooms = Table(
    "typing_rooms",
    metadata,
    Column("room_id", id_type(), primary_key=True),
    Column("stream_pos", BigInteger, nullable=False),
)

# Each user's published presence at the position of its last change.
presence = Table(
    "presence",
    metadata,
    Column("user_id", id_type(), primary_key=True),
    Column("presence", Text, nullable=False),
    Column("status_msg", Text, nullable=True),
    Column("last_active_ts", BigInteger, nullable=False),
    Column("stream_pos", BigInteger, nullable=False),
)

# Token buckets (revision 0003): each row is a bucket as of its last update. A bucket
# full again is indistinguishable from a missing one, so rows whose `full_at_ms` has
# passed may be deleted (the index finds them).
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("bucket_key", Text, primary_key=True),
    Column("tokens", Double, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("full_at_ms", BigInteger, nullable=False),
    Index(None, "full_at_ms"),
)

# Server-generated events (revision 0003), at positions of the server-wide stream.
# target_kind "user" / "room": target is a user / room id; "all": target is NULL.
server_events = Table(
    "server_events",
    metadata,
    Column("stream_pos", pos_type(), primary_key=True, autoincrement=False),
    Column("event_id", Text, nullable=False, unique=True),
    Column("sender", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("origin_server_ts", BigInteger, nullable=False),
    Column("target_kind", Text, nullable=False),
    Column("target", id_type(), nullable=True),
    # Reading a user's (or a room's) window of positions: one range of this index each;
    Index(None, "target_kind", "target", "stream_pos"),
    # and the events aimed at every user, whatever their (absent) target.
    Index(None, "target_kind", "stream_pos"),
)
