"""Runs the plugins' gatekeeping hooks: in configured order, each call under a timeout,
the first answer other than allow wins, and an exception, a timeout or an answer of the
wrong type denies (fail closed), logged with the plugin's name. Only the engine calls
plugins, through this host."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import trio

from backends import Storage
from homeserver.clock import Clock
from homeserver.errors import LimitExceeded, MatrixError
from homeserver.types import JsonDict, Membership, ServerEventTarget
from plugins.api import (
    ALL_USERS,
    RUN_RESTART_DELAY_S,
    Decision,
    EventCheck,
    EventDecision,
    Hook,
    InviteCheck,
    InviteDecision,
    InviteRedaction,
    JoinCheck,
    PluginApi,
    RoomCreated,
    RoomCreationCheck,
    ServerState,
    SessionSignal,
    UserRegistered,
    Verdict,
)
from plugins.loader import LoadedPlugin, PluginSpec, load_plugins

if TYPE_CHECKING:
    from homeserver.engine.server_events import ServerEvents

log = logging.getLogger("homeserver.plugins")
SIGNAL_KINDS = (
    "on_session_started",
    "on_session_ended",
    "on_user_registered",
    "on_room_created",
    "on_server_state",
)
SIGNAL_BUFFER = 10_000

D = TypeVar("D", bound=Decision)
FAIL_CLOSED_MESSAGE = "Refused by server policy"


def raise_for(decision: Decision) -> None:
    """Turn a deny into the client's error (429 with retry_after_ms for rate limits)."""
    if decision.verdict is not Verdict.DENY:
        return
    if decision.errcode == "M_LIMIT_EXCEEDED" and decision.retry_after_ms is not None:
        raise LimitExceeded(decision.message or "Too many requests", decision.retry_after_ms)
    raise MatrixError(403, decision.errcode, decision.message or FAIL_CLOSED_MESSAGE)


def _well_formed(result: object, expected: type[D]) -> TypeGuard[D]:
    """Whether a hook's answer is its hook's decision type, with a real verdict. A plain
    Decision hook (joins, room creations) cannot drop, nor answer another hook's type:
    raise_for would let such an answer through (fail open)."""
    if not isinstance(result, expected) or not isinstance(result.verdict, Verdict):
        return False
    if isinstance(result, InviteDecision) and not isinstance(result.redaction, InviteRedaction):
        return False
    if expected is Decision:
        return (
            not isinstance(result, InviteDecision | EventDecision)
            and result.verdict is not Verdict.DROP
        )
    return True


class PolicyHost:
    def __init__(self, storage: Storage, clock: Clock, server_name: str, timeout_ms: int) -> None:
        self._storage = storage
        self._clock = clock
        self.server_name = server_name
        self.timeout_s = timeout_ms / 1000
        self.hooks: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
            "check_invite": [],
            "check_room_creation": [],
            "check_join": [],
            "check_event": [],
        }
        self.plugins: list[LoadedPlugin] = []
        self.sources: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
            kind: [] for kind in SIGNAL_KINDS
        }
        self.loops: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._signals_in, self._signals_out = trio.open_memory_channel[tuple[str, object]](
            SIGNAL_BUFFER
        )
        # Set by the engine once it exists (plugins send server events through it).
        self.server_events: ServerEvents | None = None

    def load(self, specs: Sequence[PluginSpec]) -> None:
        seen: dict[str, int] = {}

        def make_api(name: str) -> _Facade:
            # The n-th entry of the same class gets its own storage namespace, so two
            # differently configured rate limits never share counters.
            count = seen[name] = seen.get(name, -1) + 1
            return _Facade(self, name, name if count == 0 else f"{name}#{count}")

        self.plugins = load_plugins(specs, make_api)

    def register(self, plugin: str, kind: str, hook: Callable[[Any], Any] | None) -> None:
        if hook is not None:
            if not callable(hook):
                raise TypeError(f"plugin {plugin}: {kind} must be callable")
            self.hooks[kind].append((plugin, hook))

    # -- event sources ------------------------------------------------------------------

    def signal(self, kind: str, payload: object) -> None:
        """Tell the event sources something happened. Never blocks the caller: the
        hooks run later in the background; a full queue drops the signal (logged)."""
        if not self.sources[kind]:
            return
        try:
            self._signals_in.send_nowait((kind, payload))
        except trio.WouldBlock:
            log.warning("event-source queue full: dropping a %s signal", kind)

    async def server_state(self, state: str) -> None:
        """Run the on_server_state hooks now, each under the timeout."""
        for plugin, hook in self.sources["on_server_state"]:
            await self._notify(plugin, "on_server_state", hook, ServerState(state))

    async def _notify(
        self, plugin: str, kind: str, hook: Callable[[Any], Any], payload: object
    ) -> None:
        try:
            with trio.move_on_after(self.timeout_s) as scope:
                result = hook(payload)
                if inspect.isawaitable(result):
                    await result
            if scope.cancelled_caught:
                log.warning("plugin %s: %s timed out", plugin, kind)
        except Exception:
            log.exception("plugin %s: %s failed", plugin, kind)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The event-source dispatcher and the plugins' `run` loops."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._dispatch)
            for plugin, loop in self.loops:
                nursery.start_soon(self._supervise, plugin, loop)
            task_status.started()

    async def _dispatch(self) -> None:
        async for kind, payload in self._signals_out:
            for plugin, hook in self.sources[kind]:
                await self._notify(plugin, kind, hook, payload)

    @staticmethod
    async def _supervise(plugin: str, loop: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await loop()
                return
            except Exception:
                log.exception(
                    "plugin %s: run failed; restarting in %s s", plugin, RUN_RESTART_DELAY_S
                )
            await trio.sleep(RUN_RESTART_DELAY_S)

    async def send_server_event(self, target: str, event_type: str, content: JsonDict) -> str:
        if self.server_events is None:
            raise RuntimeError("server events are not available yet")
        if target == ALL_USERS:
            kind, target_id = ServerEventTarget.ALL_USERS, None
        elif target.startswith("@"):
            kind, target_id = ServerEventTarget.USER, target
        elif target.startswith("!"):
            kind, target_id = ServerEventTarget.ROOM, target
        else:
            raise ValueError(f"target must be a user id, a room id or ALL_USERS: {target!r}")
        event = await self.server_events.send(kind, target_id, event_type, content)
        return event.event_id

    # -- gatekeeping ----------------------------------------------------------------------

    async def _run(self, kind: str, check: object, expected: type[D], allow: D) -> D:
        redaction = InviteRedaction()
        for plugin, hook in self.hooks[kind]:
            try:
                with trio.fail_after(self.timeout_s):
                    result = hook(check)
                    if inspect.isawaitable(result):
                        result = await result
            except trio.TooSlowError:
                log.warning("plugin %s: %s timed out; denying (fail closed)", plugin, kind)
                return expected(Verdict.DENY, "M_FORBIDDEN", FAIL_CLOSED_MESSAGE)
            except Exception:
                log.exception("plugin %s: %s failed; denying (fail closed)", plugin, kind)
                return expected(Verdict.DENY, "M_FORBIDDEN", FAIL_CLOSED_MESSAGE)
            if not _well_formed(result, expected):
                log.error(
                    "plugin %s: %s returned %r, not a %s; denying (fail closed)",
                    plugin,
                    kind,
                    result,
                    expected.__name__,
                )
                return expected(Verdict.DENY, "M_FORBIDDEN", FAIL_CLOSED_MESSAGE)
            if result.verdict is not Verdict.ALLOW:
                log.info(
                    "plugin %s: %s -> %s %s",
                    plugin,
                    kind,
                    result.verdict.value,
                    result.errcode if result.verdict is Verdict.DENY else "",
                )
                return result
            if isinstance(result, InviteDecision):
                redaction = redaction.merge(result.redaction)
        if isinstance(allow, InviteDecision):
            return InviteDecision.allow(redaction)  # type: ignore[return-value]
        return allow

    async def check_invite(self, check: InviteCheck) -> InviteDecision:
        return await self._run("check_invite", check, InviteDecision, InviteDecision.allow())

    async def check_room_creation(self, check: RoomCreationCheck) -> Decision:
        return await self._run("check_room_creation", check, Decision, Decision.allow())

    async def check_join(self, check: JoinCheck) -> Decision:
        return await self._run("check_join", check, Decision, Decision.allow())

    async def check_event(self, check: EventCheck) -> EventDecision:
        allow = EventDecision(Verdict.ALLOW)
        return await self._run("check_event", check, EventDecision, allow)

    async def share_a_room(self, user_a: str, user_b: str) -> bool:
        joined_a = {
            m.room_id
            for m in await self._storage.rooms.get_user_memberships(user_a)
            if m.membership == Membership.JOIN
        }
        if not joined_a:
            return False
        return any(
            m.membership == Membership.JOIN and m.room_id in joined_a
            for m in await self._storage.rooms.get_user_memberships(user_b)
        )


class _Facade:
    """The PluginApi handed to one plugin."""

    def __init__(self, host: PolicyHost, name: str, namespace: str) -> None:
        self._host = host
        self._name = name
        self._namespace = namespace
        self._log = logging.getLogger(f"homeserver.plugins.{name}")

    @property
    def server_name(self) -> str:
        return self._host.server_name

    @property
    def plugin_name(self) -> str:
        return self._name

    @property
    def log(self) -> logging.Logger:
        return self._log

    def now_ms(self) -> int:
        return self._host._clock.now_ms()

    def register_spam_checks(
        self,
        *,
        check_invite: Hook[InviteCheck] | None = None,
        check_room_creation: Hook[RoomCreationCheck] | None = None,
        check_join: Hook[JoinCheck] | None = None,
        check_event: Hook[EventCheck] | None = None,
    ) -> None:
        self._host.register(self._name, "check_invite", check_invite)
        self._host.register(self._name, "check_room_creation", check_room_creation)
        self._host.register(self._name, "check_join", check_join)
        self._host.register(self._name, "check_event", check_event)

    async def take_token(
        self, bucket: str, *, capacity: float, refill_per_s: float, cost: float = 1.0
    ) -> int:
        return await self._host._storage.rate_limits.take_token(
            f"plugin:{self._namespace}:{bucket}",
            capacity=capacity,
            refill_per_s=refill_per_s,
            now_ms=self.now_ms(),
            cost=cost,
        )

    async def share_a_room(self, user_a: str, user_b: str) -> bool:
        return await self._host.share_a_room(user_a, user_b)

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
                if not callable(hook):
                    raise TypeError(f"plugin {self._name}: {kind} must be callable")
                self._host.sources[kind].append((self._name, hook))
        if run is not None:
            self._host.loops.append((self._name, run))

    async def send_server_event(self, target: str, type: str, content: JsonDict) -> str:
        return await self._host.send_server_event(target, type, content)


def _facade_is_plugin_api(facade: _Facade) -> PluginApi:
    return facade  # mypy checks _Facade against the protocol here
