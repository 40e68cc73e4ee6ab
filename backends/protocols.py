"""The storage interface: one small protocol per area, grouped in `Storage`.

Every backend (memory, SQLite, PostgreSQL, Redis) implements all of it with the same
observable behaviour; `tests/conformance/` is the executable form of these docstrings.

Shared rules:
- Methods take and return `backends.records` values; returned objects are never
  aliased to the store's own state (mutating a returned dict changes nothing stored).
- Stream positions come from one server-wide counter shared by everything /sync
  reports: room events, account data, typing changes, presence changes and server
  events. Strictly
  increasing, never reused, starting above 0; position 0 means "before everything".
  Sessions, devices, filters and the like do not take positions.
- Failures raise `backends.errors` exceptions only: `NotFound`, `Conflict` (and its
  `DuplicateTransaction`), `BackendUnavailable` (store unreachable), or `StorageError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from backends.records import (
    AccessToken,
    AccountDataRecord,
    ClientTxn,
    DeviceRecord,
    Event,
    JsonDict,
    MembershipRecord,
    NewEvent,
    NewServerEvent,
    PresenceRecord,
    RoomRecord,
    ServerEvent,
    SessionRecord,
    TypingChange,
    UserRecord,
)

ProfileField = Literal["displayname", "avatar_url"]


class UserStore(Protocol):
    async def create_user(self, user: UserRecord) -> None:
        """Insert a user. Raises Conflict if the user id exists (nothing changes)."""

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, or None."""

    async def set_profile_field(self, user_id: str, field: ProfileField, value: str | None) -> None:
        """Set (or clear with None) one profile field. Raises NotFound for an unknown user."""

    async def list_user_ids(self, *, after: str | None, limit: int) -> list[str]:
        """User ids in code-point order, those greater than `after` (None: from the
        start), at most `limit`: a page of every user, for server-wide work."""


class DeviceStore(Protocol):
    async def add_device_with_token(self, device: DeviceRecord, token: AccessToken) -> None:
        """Create the device (or keep the existing one with that id, updating its display
        name when `device.display_name` is not None), revoke every token the device had,
        and add `token`, all at once. Raises Conflict if the token string exists."""

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        """The device, or None."""

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        """The user's devices, ordered by device_id."""

    async def update_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        """Raises NotFound for an unknown device."""

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        """Delete the device, its tokens and its transaction ids. True if it existed."""

    async def delete_all_devices(self, user_id: str) -> list[str]:
        """Delete every device of the user (and tokens). Returns the deleted ids, sorted."""

    async def get_token(self, token: str) -> AccessToken | None:
        """The token's owner, or None for an unknown or revoked token."""


class RoomStore(Protocol):
    async def create_room(self, room: RoomRecord) -> None:
        """Register a room. Raises Conflict if the id exists."""

    async def get_room(self, room_id: str) -> RoomRecord | None:
        """The room, or None."""

    async def append_events(
        self, events: Sequence[NewEvent], *, txn: ClientTxn | None = None
    ) -> list[Event]:
        """Append events to their rooms atomically, all or nothing.

        Each event gets the next stream position, in the order given. A state event
        replaces the room's current state for its (type, state_key) and its stored
        `prev_content` is the content it replaced. An `m.room.member` event also sets the
        membership of `state_key` (to `content.membership`) and clears `forgotten`.

        With `txn` (at least one event needed, else ValueError), the client transaction
        is recorded for the id of the first event in the same atomic write: no failure,
        crash or cancellation can leave the events stored without the record (or the
        record without the events). If that transaction is recorded already (by an
        earlier append or `TransactionStore.put_txn_event`), nothing at all is written
        and DuplicateTransaction carrying the recorded id is raised; this is checked
        before anything else, so a retry learns it is one whatever else has changed.

        Raises NotFound if a room is unknown and Conflict if an event id exists; in both
        cases nothing is written.
        """

    async def get_event(self, event_id: str) -> Event | None:
        """The event, or None."""

    async def get_current_state(self, room_id: str) -> list[Event]:
        """The current state events of the room, ordered by stream position."""

    async def get_state_event(self, room_id: str, type: str, state_key: str) -> Event | None:
        """The current state event for (type, state_key), or None."""

    async def get_room_events(
        self,
        room_id: str,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        newest_first: bool,
    ) -> list[Event]:
        """Events of the room with after < stream_pos < before (None: unbounded),
        at most `limit`, ordered by stream position (descending when newest_first).
        Starting from the newest when newest_first, else from the oldest."""

    async def get_latest_positions(self, room_ids: Sequence[str]) -> dict[str, int]:
        """The stream position of each room's newest event (rooms without events or
        unknown rooms are left out)."""

    async def get_membership(self, room_id: str, user_id: str) -> MembershipRecord | None:
        """The user's current membership in the room, or None if they never had one."""

    async def get_user_memberships(self, user_id: str) -> list[MembershipRecord]:
        """Every room the user has a membership in, forgotten ones included (the record
        says so), ordered by room id."""

    async def get_room_members(self, room_id: str) -> list[MembershipRecord]:
        """Every membership record of the room, ordered by user id."""

    async def get_joined_members(self, room_id: str) -> list[str]:
        """The user ids whose current membership of the room is "join", in code point
        order: exactly the `user_id`s of `get_room_members` whose membership is "join"
        (forgetting changes nothing), as one indexed read. Empty for an unknown room.
        Consistent with `append_events`: once a member event is stored, this reflects
        it."""

    async def get_joined_rooms(self, user_id: str) -> list[str]:
        """The room ids the user's current membership of is "join", in code point order:
        exactly the `room_id`s of `get_user_memberships` whose membership is "join", as
        one indexed read."""

    async def forget_room(self, user_id: str, room_id: str) -> None:
        """Mark the membership forgotten. Raises NotFound if there is none."""

    async def current_stream_pos(self) -> int:
        """The highest stream position handed out so far (0 if none)."""


class AccountDataStore(Protocol):
    async def put_account_data(
        self, user_id: str, room_id: str | None, type: str, content: JsonDict
    ) -> int:
        """Set (replace) the content for (user, room or global, type) and return the
        stream position of the change."""

    async def get_account_data(
        self, user_id: str, room_id: str | None, type: str
    ) -> JsonDict | None:
        """The content, or None."""

    async def get_account_data_since(self, user_id: str, after: int) -> list[AccountDataRecord]:
        """The latest value of every (room, type) of the user changed after `after`,
        ordered by stream position."""


class FilterStore(Protocol):
    async def create_filter(self, user_id: str, definition: JsonDict) -> str:
        """Store a filter and return its id (unique for the user, never reused)."""

    async def get_filter(self, user_id: str, filter_id: str) -> JsonDict | None:
        """The user's filter, or None (another user's id answers None)."""


class TransactionStore(Protocol):
    async def get_txn_event(self, user_id: str, device_id: str, txn_key: str) -> str | None:
        """The event id recorded for this client transaction, or None."""

    async def put_txn_event(
        self, user_id: str, device_id: str, txn_key: str, event_id: str
    ) -> None:
        """Record the event id of a client transaction (first write wins), on its own:
        for a transaction that stores no event. One that stores events records itself
        with them (`RoomStore.append_events(txn=...)`)."""


@dataclass(frozen=True, slots=True)
class AuthLookup:
    """What the hot path needs to know about a request, from one round trip."""

    token: AccessToken
    session: SessionRecord | None


@dataclass(frozen=True, slots=True)
class SessionStart:
    """The device's active session after a start, and the one it replaced (if any)."""

    session: SessionRecord
    replaced: SessionRecord | None


class SessionStore(Protocol):
    """Live sessions. A session is stored until it is ended or taken as expired; its
    device has at most one *active* session (the one requests without an id run in)."""

    async def authenticate(self, token: str, session_id: str | None) -> AuthLookup | None:
        """The hot path, in one round trip. None for an unknown token. Otherwise the
        token and: the stored session named `session_id` (whoever owns it: the caller
        checks ownership and the deadline), or, when `session_id` is None, the token's
        device's active session; None where there is no such session."""

    async def start_session(self, session: SessionRecord, *, replace: bool) -> SessionStart:
        """Make `session` its device's active session, atomically.

        replace=False (implicit start): if the device already has an active session,
        nothing is stored and that session is returned (create-if-absent).
        replace=True (explicit start): `session` is stored and becomes active; the
        previous active session, if any, is returned as `replaced` and stays stored
        (the caller ends it)."""

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The stored session, or None."""

    async def touch_session(self, session_id: str, last_active_ts: int, expires_at_ms: int) -> bool:
        """Set the session's last activity and deadline. False if it is not stored."""

    async def set_session_presence(
        self, session_id: str, presence: str, status_msg: str | None
    ) -> SessionRecord | None:
        """Set the desired presence of a session; the updated record, or None if gone."""

    async def end_session(self, session_id: str) -> SessionRecord | None:
        """Remove the session (and the device's active pointer to it). Returns the
        record if this call removed it: of concurrent callers exactly one gets it."""

    async def end_device_sessions(self, user_id: str, device_id: str) -> list[SessionRecord]:
        """Remove every session of the device; returns those removed."""

    async def list_user_sessions(self, user_id: str) -> list[SessionRecord]:
        """The user's stored sessions, ordered by (created_ts, session_id)."""

    async def take_expired_sessions(self, now_ms: int, limit: int) -> list[SessionRecord]:
        """Remove and return up to `limit` sessions with expires_at_ms <= now_ms,
        earliest deadline first. Each session is returned by exactly one call. Costs in
        proportion to the sessions returned, not to the sessions stored."""

    async def next_session_deadline(self) -> int | None:
        """The earliest expires_at_ms among stored sessions, or None."""


class TypingStore(Protocol):
    """Who types in which room, per session, until when. Every change of a room's set
    of typing users takes a position from the server-wide stream."""

    async def set_typing(
        self, room_id: str, user_id: str, session_id: str, expires_at_ms: int
    ) -> TypingChange | None:
        """Record (or refresh) that the user types in the room for that session until
        `expires_at_ms`. Returns the room's new state if its set of typing users
        changed; None if only the deadline (or the session) moved."""

    async def clear_typing(self, room_id: str, user_id: str) -> TypingChange | None:
        """Stop the user typing in the room; None if they were not typing."""

    async def clear_session_typing(self, session_id: str) -> list[TypingChange]:
        """Stop every typing entry of the session; one change per room affected."""

    async def get_typing(self, room_ids: Sequence[str]) -> dict[str, TypingChange]:
        """For rooms whose typing ever changed: the current typing users (sorted,
        possibly none) and the position of the last change."""

    async def take_expired_typing(self, now_ms: int, limit: int) -> list[TypingChange]:
        """Remove up to `limit` entries with expires_at_ms <= now_ms; returns one change
        per room affected. Each entry is taken by exactly one call."""

    async def next_typing_deadline(self) -> int | None:
        """The earliest typing deadline stored, or None."""


class PresenceStore(Protocol):
    """Users' published (aggregated) presence, positioned in the server-wide stream."""

    async def get_presence(self, user_id: str) -> PresenceRecord | None:
        """The last published presence, or None if never published."""

    async def put_presence(
        self, user_id: str, presence: str, status_msg: str | None, last_active_ts: int
    ) -> PresenceRecord:
        """Publish a presence change at a new stream position; returns the record."""

    async def get_presence_since(self, user_ids: Sequence[str], after: int) -> list[PresenceRecord]:
        """The current presence of those users whose last change is after `after`,
        ordered by stream position."""


class RateLimitStore(Protocol):
    """Token buckets shared by every process using the store (e.g. the invite rate
    limit plugin's counters)."""

    async def take_token(
        self, key: str, *, capacity: float, refill_per_s: float, now_ms: int, cost: float = 1.0
    ) -> int:
        """Atomically for `key`: refill the bucket at `refill_per_s` (up to `capacity`,
        starting full) for the time since its last update, then take `cost` tokens if
        that many are there. Returns 0 when taken; otherwise nothing is taken and the
        result is the milliseconds until `cost` tokens will be there (at least 1; a
        `cost` above `capacity` can never be taken and answers the time to fill the
        bucket). A bucket may be forgotten once it would be full again."""


class ServerEventStore(Protocol):
    """Events the server sends itself, positioned in the server-wide stream."""

    async def add_server_event(self, event: NewServerEvent) -> ServerEvent:
        """Store the event at a new stream position. Raises Conflict if its id exists."""

    async def get_server_events(
        self, user_id: str, room_ids: Sequence[str], *, after: int, upto: int, limit: int
    ) -> list[ServerEvent]:
        """The events with after < stream_pos <= upto aimed at the user, at all users, or
        at one of `room_ids`; ordered by position, at most `limit` (the oldest)."""


@dataclass
class Storage:
    """Every store of one backend, and how to close it."""

    description: str
    users: UserStore
    devices: DeviceStore
    rooms: RoomStore
    account_data: AccountDataStore
    filters: FilterStore
    txns: TransactionStore
    sessions: SessionStore
    typing: TypingStore
    presence: PresenceStore
    rate_limits: RateLimitStore
    server_events: ServerEventStore
    closer: Callable[[], Awaitable[None]]
    # What the operator should know about this store (logged at start-up).
    warnings: tuple[str, ...] = ()

    async def aclose(self) -> None:
        await self.closer()
