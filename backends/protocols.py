"""The storage interface: one small protocol per area, grouped in `Storage`.

Every backend (memory, SQLite, PostgreSQL, Redis) implements all of it with the same
observable behaviour; `tests/conformance/` is the executable form of these docstrings.

Shared rules:
- Methods take and return `homeserver.types` values; returned objects are never
  aliased to the store's own state (mutating a returned dict changes nothing stored).
- Stream positions come from one server-wide counter shared by room events and account
  data: strictly increasing, never reused, starting above 0. Position 0 means "before
  everything".
- Failures raise `backends.errors` exceptions only: `NotFound`, `Conflict`,
  `BackendUnavailable` (store unreachable), or `StorageError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from homeserver.types import (
    AccessToken,
    AccountDataRecord,
    DeviceRecord,
    Event,
    JsonDict,
    MembershipRecord,
    NewEvent,
    RoomRecord,
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

    async def append_events(self, events: Sequence[NewEvent]) -> list[Event]:
        """Append events to their rooms atomically, all or nothing.

        Each event gets the next stream position, in the order given. A state event
        replaces the room's current state for its (type, state_key) and its stored
        `prev_content` is the content it replaced. An `m.room.member` event also sets the
        membership of `state_key` (to `content.membership`) and clears `forgotten`.
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
        """Record the event id of a client transaction (first write wins)."""


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
    closer: Callable[[], Awaitable[None]]

    async def aclose(self) -> None:
        await self.closer()
