"""The read model as a consumer of the change feed: what other processes changed.

A write through this process's read model updates its caches precisely when it
returns, so changes published by this process (its origin) are skipped here. A change
from another origin (a second process sharing the store, once the feed crosses
processes) drops the entries it affects; the next read goes to the store and refills
them. A gap in the feed (changes lost) drops everything (`ReadModel.clear`).

Entries are dropped after `guard.moved()`, so a read already in flight, which may
have read the store before the other process wrote, cannot put the old answer back.
"""

from __future__ import annotations

from collections.abc import Callable

from backends.records import AccountDataRecord, PresenceRecord
from homeserver.changefeed import Change, FeedConsumer
from homeserver.readmodel.auth import AuthModel
from homeserver.readmodel.cache import BoundedCache
from homeserver.readmodel.rooms import RoomModel
from homeserver.readmodel.streams import Key


def _str(payload: object, key: str) -> str | None:
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


class ForeignChanges(FeedConsumer):
    def __init__(
        self,
        own_origin: str,
        *,
        auth: AuthModel,
        rooms: RoomModel,
        presence: BoundedCache[str, PresenceRecord],
        account_data: BoundedCache[str, dict[Key, AccountDataRecord]],
        clear: Callable[[], None],
    ) -> None:
        super().__init__()
        self.own_origin = own_origin
        self._auth = auth
        self._rooms = rooms
        self._presence = presence
        self._account_data = account_data
        self._clear = clear
        self._handlers: dict[str, Callable[[Change], None]] = {
            "token_revoked": self._token_revoked,
            "device_deleted": self._device_deleted,
            "membership": self._membership,
            "room_event": self._room_event,
            "account_data": self._account_data_changed,
            "presence": self._presence_stored,
        }

    def __repr__(self) -> str:
        return f"<read model of {self.own_origin}>"

    def apply(self, change: Change) -> None:
        if change.origin == self.own_origin:
            return  # applied precisely at the write's return
        handler = self._handlers.get(change.kind)
        if handler is not None:
            handler(change)

    def on_gap(self, origin: str | None) -> None:
        self._clear()

    def _token_revoked(self, change: Change) -> None:
        device_id = _str(change.payload, "device_id")
        for user_id in change.user_ids:
            if device_id is None:
                self._auth.revoke_user(user_id)
            else:
                self._auth.revoke_device(user_id, device_id)

    def _device_deleted(self, change: Change) -> None:
        device_id = _str(change.payload, "device_id")
        for user_id in change.user_ids:
            if device_id is None:  # every device of the user
                self._auth.revoke_user(user_id)
                self._auth.forget_user_sessions(user_id)
            else:
                self._auth.revoke_device(user_id, device_id)
                self._auth.forget_device_sessions(user_id, device_id)

    def _membership(self, change: Change) -> None:
        rooms = [change.room_id] if change.room_id is not None else []
        self._rooms.member_events_stored(rooms, list(change.user_ids))

    def _room_event(self, change: Change) -> None:
        room_id = change.room_id
        if room_id is None:
            return
        latest = self._rooms.latest
        latest.guard.moved()
        latest.pop(room_id)
        if change.payload is None or "state" not in change.payload:
            return
        state = self._rooms.state
        state.guard.moved()
        keys = change.payload["state"]
        if isinstance(keys, list):
            for key in keys:
                if isinstance(key, list) and len(key) == 2:
                    state.pop((room_id, str(key[0]), str(key[1])))
        else:  # state changed, the keys did not fit: all of the room's
            for cached in state:
                if cached[0] == room_id:
                    state.pop(cached)

    def _account_data_changed(self, change: Change) -> None:
        self._account_data.guard.moved()
        for user_id in change.user_ids:
            self._account_data.pop(user_id)

    def _presence_stored(self, change: Change) -> None:
        # The store's copy of a user's presence (a durable change); the published
        # presence itself (ephemeral) lives in the presence service, not here.
        user_id = _str(change.payload, "user_id")
        if change.stream == "durable" and user_id is not None:
            self._presence.guard.moved()
            self._presence.pop(user_id)
