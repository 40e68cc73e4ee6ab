"""The engine: everything the HTTP layer delegates to. No HTTP in here."""

from __future__ import annotations

from backends import Storage
from homeserver.clock import Clock, SystemClock
from homeserver.config import Config
from homeserver.engine.account_data import AccountData
from homeserver.engine.accounts import Accounts
from homeserver.engine.filters import Filters
from homeserver.engine.notifier import Notifier
from homeserver.engine.rooms import Rooms
from homeserver.engine.sync import Sync

__all__ = ["Engine"]


class Engine:
    """Composition of the engine services over one storage backend."""

    def __init__(self, config: Config, storage: Storage, clock: Clock | None = None) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock or SystemClock()
        self.notifier = Notifier()
        self.accounts = Accounts(
            storage,
            self.clock,
            config.server_name,
            hash_time_cost=config.password_hash_time_cost,
            hash_memory_kib=config.password_hash_memory_kib,
        )
        self.rooms = Rooms(
            storage,
            self.clock,
            self.notifier,
            self.accounts,
            server_name=config.server_name,
            default_room_version=config.default_room_version,
        )
        self.account_data = AccountData(storage, self.notifier)
        self.filters = Filters(storage)
        self.sync = Sync(storage, self.clock, self.notifier)
