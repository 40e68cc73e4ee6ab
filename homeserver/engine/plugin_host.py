"""The plugin host: builds the configured plugins, each with its own façade (its
`PluginApi`), and runs their `run` loops.

It is built last, complete: everything a plugin may reach through its façade (the
gatekeeper and event sources its hooks register with, the rate-limit store, the
membership query, server events) is handed to it in its constructor. Only the engine
calls plugins: the gatekeeper and the event sources run what plugins registered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from backends.protocols import RateLimitStore
from backends.records import JsonDict, ServerEventTarget
from homeserver.clock import Clock
from homeserver.engine.event_sources import EventSources
from homeserver.engine.gatekeeper import Gatekeeper
from homeserver.engine.server_events import ServerEvents
from plugins.api import (
    ALL_USERS,
    RUN_RESTART_DELAY_S,
    EventCheck,
    Hook,
    InviteCheck,
    JoinCheck,
    PluginApi,
    RoomCreated,
    RoomCreationCheck,
    ServerState,
    SessionSignal,
    UserRegistered,
)
from plugins.loader import LoadedPlugin, PluginSpec, load_plugins

log = logging.getLogger("homeserver.plugins")


@dataclass(frozen=True)
class PluginServices:
    """What the façades of all plugins share."""

    server_name: str
    clock: Clock
    gatekeeper: Gatekeeper
    event_sources: EventSources
    rate_limits: RateLimitStore
    share_a_room: Callable[[str, str], Awaitable[bool]]
    server_events: ServerEvents


class PluginHost:
    def __init__(self, specs: Sequence[PluginSpec], services: PluginServices) -> None:
        self.loops: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        seen: dict[str, int] = {}

        def make_api(name: str) -> PluginApi:
            # The n-th entry of the same class gets its own storage namespace, so two
            # differently configured rate limits never share counters.
            count = seen[name] = seen.get(name, -1) + 1
            namespace = name if count == 0 else f"{name}#{count}"
            return _Facade(services, self.loops, name, namespace)

        self.plugins: list[LoadedPlugin] = load_plugins(specs, make_api)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The plugins' `run` loops, each restarted after a failure. Until cancelled."""
        async with trio.open_nursery() as nursery:
            for plugin, loop in self.loops:
                nursery.start_soon(_supervise, plugin, loop)
            task_status.started()


async def _supervise(plugin: str, loop: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await loop()
            return
        except Exception:
            log.exception("plugin %s: run failed; restarting in %s s", plugin, RUN_RESTART_DELAY_S)
        await trio.sleep(RUN_RESTART_DELAY_S)


class _Facade:
    """The PluginApi handed to one plugin."""

    def __init__(
        self,
        services: PluginServices,
        loops: list[tuple[str, Callable[[], Awaitable[None]]]],
        name: str,
        namespace: str,
    ) -> None:
        self._services = services
        self._loops = loops
        self._name = name
        self._namespace = namespace
        self._log = logging.getLogger(f"homeserver.plugins.{name}")

    @property
    def server_name(self) -> str:
        return self._services.server_name

    @property
    def plugin_name(self) -> str:
        return self._name

    @property
    def log(self) -> logging.Logger:
        return self._log

    def now_ms(self) -> int:
        return self._services.clock.now_ms()

    def register_spam_checks(
        self,
        *,
        check_invite: Hook[InviteCheck] | None = None,
        check_room_creation: Hook[RoomCreationCheck] | None = None,
        check_join: Hook[JoinCheck] | None = None,
        check_event: Hook[EventCheck] | None = None,
    ) -> None:
        gatekeeper = self._services.gatekeeper
        gatekeeper.register(self._name, "check_invite", check_invite)
        gatekeeper.register(self._name, "check_room_creation", check_room_creation)
        gatekeeper.register(self._name, "check_join", check_join)
        gatekeeper.register(self._name, "check_event", check_event)

    async def take_token(
        self, bucket: str, *, capacity: float, refill_per_s: float, cost: float = 1.0
    ) -> int:
        return await self._services.rate_limits.take_token(
            f"plugin:{self._namespace}:{bucket}",
            capacity=capacity,
            refill_per_s=refill_per_s,
            now_ms=self.now_ms(),
            cost=cost,
        )

    async def share_a_room(self, user_a: str, user_b: str) -> bool:
        return await self._services.share_a_room(user_a, user_b)

    def register_event_sources(
        self,
        *,
        on_session_started: Hook[SessionSignal] | None = None,
        on_session_ended: Hook[SessionSignal] | None = None,
        on_user_registered: Hook[UserRegistered] | None = None,
        on_room_created: Hook[RoomCreated] | None = None,
        on_server_state: Hook[ServerState] | None = None,
        run: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        hooks = {
            "on_session_started": on_session_started,
            "on_session_ended": on_session_ended,
            "on_user_registered": on_user_registered,
            "on_room_created": on_room_created,
            "on_server_state": on_server_state,
        }
        for kind, hook in hooks.items():
            if hook is not None:
                self._services.event_sources.register(self._name, kind, hook)
        if run is not None:
            self._loops.append((self._name, run))

    async def send_server_event(self, target: str, type: str, content: JsonDict) -> str:
        if target == ALL_USERS:
            kind, target_id = ServerEventTarget.ALL_USERS, None
        elif target.startswith("@"):
            kind, target_id = ServerEventTarget.USER, target
        elif target.startswith("!"):
            kind, target_id = ServerEventTarget.ROOM, target
        else:
            raise ValueError(f"target must be a user id, a room id or ALL_USERS: {target!r}")
        event = await self._services.server_events.send(kind, target_id, type, content)
        return event.event_id


def _facade_is_plugin_api(facade: _Facade) -> PluginApi:
    return facade  # mypy checks _Facade against the protocol here
