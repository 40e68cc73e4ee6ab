"""The engine: everything the HTTP layer delegates to. No HTTP in here.

Every service is built once, complete, in dependency order: nothing is assigned to a
service after it is constructed. The plugins come last (their façades may reach the
gatekeeper, the event sources, rooms' membership query and server events); the
gatekeeper and event sources they register with exist from the start, so the services
that ask or announce hold them from their own construction.

Every change /sync reports, and every cache invalidation, is published on one change
feed (`homeserver/changefeed.py`), built first: the read model and the notifier
consume it (in that order: a woken /sync reads caches already current), the services
publish to it and call neither directly.
"""

from __future__ import annotations

import logging

import trio

from backends import Storage, StorageError
from homeserver.changefeed import ChangeFeed, InProcessFeed
from homeserver.clock import Clock, SystemClock
from homeserver.config import Config
from homeserver.engine.account_data import AccountData
from homeserver.engine.accounts import Accounts
from homeserver.engine.ephemeral import EphemeralStream
from homeserver.engine.event_sources import EventSources
from homeserver.engine.filters import Filters
from homeserver.engine.gatekeeper import Gatekeeper
from homeserver.engine.notices import ServerNotices
from homeserver.engine.notifier import Notifier
from homeserver.engine.plugin_host import PluginHost, PluginServices
from homeserver.engine.presence import PresenceService
from homeserver.engine.rooms import Rooms
from homeserver.engine.server_events import ServerEvents
from homeserver.engine.sessions import SessionConfig, Sessions
from homeserver.engine.sync import Sync
from homeserver.engine.typing_state import TypingService
from homeserver.readmodel import ReadModel

__all__ = ["Engine"]

log = logging.getLogger("homeserver.engine")

# After a failed read of the store's position (settling a gap in the change feed).
RESYNC_RETRY_S = 1.0


class Engine:
    """Composition of the engine services over one storage backend."""

    def __init__(self, config: Config, storage: Storage, clock: Clock | None = None) -> None:
        self.config = config
        self.feed: ChangeFeed = InProcessFeed()
        # Every service reads and writes through the read model (homeserver/readmodel).
        self.read_model = ReadModel(feed=self.feed)
        self.storage = storage = self.read_model.wrap(storage)
        self.clock = clock or SystemClock()
        self.notifier = Notifier()
        self.feed.subscribe(self.notifier)
        self.gatekeeper = Gatekeeper(config.plugin_timeout_ms)
        self.event_sources = EventSources(config.plugin_timeout_ms)
        self.accounts = Accounts(
            storage,
            self.clock,
            config.server_name,
            hash_time_cost=config.password_hash_time_cost,
            hash_memory_kib=config.password_hash_memory_kib,
            signal=self.event_sources.signal,
            reserved_localparts=frozenset({config.server_notices_localpart}),
        )
        self.rooms = Rooms(
            storage,
            self.clock,
            self.feed,
            self.accounts,
            server_name=config.server_name,
            default_room_version=config.default_room_version,
            invite_state_types=config.invite_state_types,
            gatekeeper=self.gatekeeper,
            signal=self.event_sources.signal,
        )
        self.account_data = AccountData(storage, self.feed)
        self.filters = Filters(storage)
        # Positions of what /sync reports but the store does not order.
        self.ephemeral = EphemeralStream(self.clock)
        self.presence = PresenceService(
            storage, self.clock, self.feed, self.ephemeral, enabled=config.presence_enabled
        )
        self.typing = TypingService(
            storage,
            self.clock,
            self.feed,
            self.ephemeral,
            timeout_cap_ms=config.typing_timeout_cap_ms,
        )
        self.sessions = Sessions(
            storage,
            self.clock,
            self.presence,
            self.typing,
            SessionConfig(
                enabled=config.sessions_enabled,
                timeout_ms=config.session_timeout_ms,
                touch_coalesce_ms=config.session_touch_coalesce_ms,
            ),
            signal=self.event_sources.signal,
        )
        self.notices = ServerNotices(
            storage,
            self.clock,
            self.rooms,
            self.feed,
            server_name=config.server_name,
            localpart=config.server_notices_localpart,
            enabled=config.server_notices,
        )
        self.server_events = ServerEvents(
            storage,
            self.clock,
            self.feed,
            server_name=config.server_name,
            notices=self.notices,
        )
        self.sync = Sync(
            storage,
            self.clock,
            self.notifier,
            self.presence,
            self.server_events,
            self.typing,
            self.read_model.watermark,
        )
        self.plugins = PluginHost(
            config.plugins,
            PluginServices(
                server_name=config.server_name,
                clock=self.clock,
                gatekeeper=self.gatekeeper,
                event_sources=self.event_sources,
                rate_limits=storage.rate_limits,
                share_a_room=self.rooms.core.share_a_room,
                server_events=self.server_events,
            ),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The engine's background loops: session expiry, typing expiry, keepalive of
        sessions with requests in flight, the plugins' event sources and loops. Runs
        until cancelled."""
        # From here on every change is notified with its position (see Notifier).
        start = await self.storage.rooms.current_stream_pos()
        self.read_model.watermark.start_at(start)
        self.notifier.start_at(start, self.ephemeral.current)
        async with trio.open_nursery() as nursery:
            await nursery.start(self._settle_gaps)
            await nursery.start(self.event_sources.run)
            await nursery.start(self.plugins.run)
            await nursery.start(self.notices.run)
            await nursery.start(self.sessions.expiry.run)
            await nursery.start(self.typing.expiry.run)
            await nursery.start(self.presence.write_behind)
            if self.config.sessions_enabled:
                await nursery.start(self.sessions.keepalive)
            task_status.started()

    async def _settle_gaps(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """After a gap in the change feed, the notifier counts everyone as "maybe"
        until it learns the store's position: read it, and settle the gap with it."""
        task_status.started()
        while True:
            gaps = await self.notifier.wait_unsettled()
            try:
                pos = await self.storage.rooms.current_stream_pos()
            except StorageError:
                log.warning("reading the stream position after a feed gap failed; retrying")
                await trio.sleep(RESYNC_RETRY_S)
                continue
            self.notifier.settle(gaps, pos, self.ephemeral.current)
