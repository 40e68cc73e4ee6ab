"""The read model: what the hot paths read, from memory, kept current by the writes.

`ReadModel.wrap(storage)` gives a `Storage` whose stores answer the hot reads from
bounded in-process caches and pass everything else to the real stores: the token ->
requester and session lookups (`auth`), room memberships, joined members and rooms, and
each room's newest position (`rooms`), the store's copy of each user's published
presence (`presence`), each user's account data (`streams`), and how far the stream
is safe to read (`positions`: every position-taking write passes through it).
The store stays the source of truth: every write goes to it first, and a cache follows
only what the store answered. The engine
builds every service over the wrapped storage, so no call site can bypass the caches.

The read model publishes its invalidations (a token revoked, a device deleted, a
membership changed) on the change feed (`homeserver/changefeed.py`) when the write
returns, and consumes the feed (`changes.ForeignChanges`): changes from other origins
drop the entries they affect, a gap drops everything. The feed is in-process for now:
a second process writing the same store does not reach these caches until the feed
crosses processes (issue #14), which is why the README asks for one server process
per store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from backends import Storage
from backends.records import AccountDataRecord, PresenceRecord
from homeserver.changefeed import ChangeFeed, InProcessFeed
from homeserver.readmodel.auth import AuthLimits, AuthModel, CachedDevices, CachedSessions
from homeserver.readmodel.cache import BoundedCache, CacheStats
from homeserver.readmodel.changes import ForeignChanges
from homeserver.readmodel.positions import Watermark
from homeserver.readmodel.presence import CachedPresence
from homeserver.readmodel.rooms import CachedRooms, RoomLimits, RoomModel
from homeserver.readmodel.streams import CachedAccountData, Key, TrackedServerEvents

__all__ = ["ReadModel", "ReadModelLimits"]


@dataclass(frozen=True)
class ReadModelLimits:
    auth: AuthLimits = field(default_factory=AuthLimits)
    rooms: RoomLimits = field(default_factory=RoomLimits)
    presence_users: int = 100_000
    account_data_users: int = 10_000


class ReadModel:
    """The caches, and the feed they publish to and consume (`feed`: the engine's; by
    default one of its own)."""

    def __init__(
        self, limits: ReadModelLimits | None = None, *, feed: ChangeFeed | None = None
    ) -> None:
        limits = limits or ReadModelLimits()
        self.auth = AuthModel(limits.auth)
        self.rooms = RoomModel(limits.rooms)
        self.presence: BoundedCache[str, PresenceRecord] = BoundedCache(
            "presence", limits.presence_users
        )
        self.account_data: BoundedCache[str, dict[Key, AccountDataRecord]] = BoundedCache(
            "account_data", limits.account_data_users
        )
        self.watermark = Watermark()
        self.feed: ChangeFeed = feed if feed is not None else InProcessFeed()
        self.changes = ForeignChanges(
            self.feed.origin,
            auth=self.auth,
            rooms=self.rooms,
            presence=self.presence,
            account_data=self.account_data,
            clear=self.clear,
        )
        self.feed.subscribe(self.changes)

    def wrap(self, storage: Storage) -> Storage:
        return dataclasses.replace(
            storage,
            devices=CachedDevices(storage.devices, self.auth, self.feed),
            sessions=CachedSessions(storage.sessions, self.auth),
            rooms=CachedRooms(storage.rooms, self.rooms, self.watermark, self.feed),
            presence=CachedPresence(storage.presence, self.presence, self.watermark),
            account_data=CachedAccountData(storage.account_data, self.account_data, self.watermark),
            server_events=TrackedServerEvents(storage.server_events, self.watermark),
        )

    def caches(self) -> list[BoundedCache[Any, Any]]:
        return [*self.auth.caches(), *self.rooms.caches(), self.presence, self.account_data]

    def stats(self) -> dict[str, tuple[int, CacheStats]]:
        """Per cache: its size and counters."""
        return {cache.name: (len(cache), cache.stats) for cache in self.caches()}

    def clear(self) -> None:
        """Drop every entry (each is read again on its next use)."""
        self.auth.clear()
        self.rooms.clear()
        self.presence.clear()
        self.account_data.clear()
