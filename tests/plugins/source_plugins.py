"""Event-source plugins for the event-source tests, loaded by name like any third-party
plugin: `PluginSpec("tests.plugins.source_plugins:Source", {...})`.

Every hook call and loop step is recorded in RECORDS with the trio time it happened
at, so tests can see what was signalled, with which payload, and when. Tests clear it
(the `fresh_records` fixture of test_event_sources does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from plugins.api import (
    ALL_USERS,
    PluginApi,
    PluginConfigError,
    RoomCreated,
    SessionSignal,
)

GREETING = "org.example.greeting"
ROOM_NOTICE = "org.example.room_notice"
TICK = "org.example.tick"
KINDS = (
    "on_session_started",
    "on_session_ended",
    "on_user_registered",
    "on_room_created",
    "on_server_state",
)


@dataclass(frozen=True)
class Record:
    label: str
    what: str  # a hook's name, or a step such as "woke", "sent", "send_failed", "start"
    payload: object
    at: float  # trio.current_time()


RECORDS: list[Record] = []


def reset() -> None:
    RECORDS.clear()


def record(label: str, what: str, payload: object = None) -> None:
    RECORDS.append(Record(label, what, payload, trio.current_time()))


def recorded(what: str, label: str | None = None) -> list[Record]:
    return [r for r in RECORDS if r.what == what and (label is None or r.label == label)]


class Source:
    """Records every signal of the hooks it registers; per config:

    label    = "A"             # how its records are labelled (default: the plugin name)
    hooks    = [...]           # which of KINDS to register (default: all)
    sync     = false           # register plain functions (record only, never send)
    greet    = false           # on_session_started sends GREETING to `target`
    target   = "@bob:..."      # default: the session's user
    announce_rooms = false     # on_room_created sends ROOM_NOTICE to the new room
    seconds  = 5               # how long Sleeps sleeps in each hook
    """

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        self.api = api
        self.label: str = config.get("label", api.plugin_name)
        self.greet = bool(config.get("greet"))
        self.target: str | None = config.get("target")
        self.announce_rooms = bool(config.get("announce_rooms"))
        self.seconds = float(config.get("seconds", 5))
        make = self._sync_hook if config.get("sync") else self._hook
        hooks: dict[str, Any] = {kind: make(kind) for kind in config.get("hooks", KINDS)}
        api.register_event_sources(**hooks)

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> dict[str, Any]:
        for kind in raw.get("hooks", ()):
            if kind not in KINDS:
                raise PluginConfigError("hooks", f"unknown hook {kind!r}")
        return raw

    def _sync_hook(self, kind: str) -> Callable[[object], Any]:
        def hook(payload: object) -> None:
            record(self.label, kind, payload)
            self.misbehave(kind)

        return hook

    def _hook(self, kind: str) -> Callable[[object], Any]:
        async def hook(payload: object) -> None:
            record(self.label, kind, payload)
            self.misbehave(kind)
            await self.pause(kind)
            if self.greet and isinstance(payload, SessionSignal):
                await self.send(
                    payload.user_id if self.target is None else self.target,
                    GREETING,
                    {"device_id": payload.device_id, "session_id": payload.session_id},
                )
            if self.announce_rooms and isinstance(payload, RoomCreated):
                await self.send(payload.room_id, ROOM_NOTICE, {"creator": payload.creator})

        return hook

    def misbehave(self, kind: str) -> None:
        """Raises subclasses raise here."""

    async def pause(self, kind: str) -> None:
        """Sleeps subclasses sleep here."""
        await trio.lowlevel.checkpoint()

    async def send(self, target: str, event_type: str, content: dict[str, Any]) -> None:
        try:
            event_id = await self.api.send_server_event(target, event_type, content)
        except Exception as exc:
            record(self.label, "send_failed", exc)
            raise
        record(self.label, "sent", event_id)


class Raises(Source):
    """Every hook raises after recording its call."""

    def misbehave(self, kind: str) -> None:
        raise RuntimeError(f"{self.label}: the plugin's own bug in {kind}")


class Sleeps(Source):
    """Every async hook sleeps `seconds` (default 5), then records "woke"."""

    async def pause(self, kind: str) -> None:
        await trio.sleep(self.seconds)
        record(self.label, "woke", kind)


class Ticker:
    """A `run` loop: every `period_s` (default 60) a TICK server event to all users,
    with content {"n": 1, 2, ...}."""

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        self.api = api
        self.period_s = float(config.get("period_s", 60))
        api.register_event_sources(run=self.run)

    async def run(self) -> None:
        n = 0
        while True:
            await trio.sleep(self.period_s)
            n += 1
            event_id = await self.api.send_server_event(ALL_USERS, TICK, {"n": n})
            record("Ticker", "sent", (n, event_id))


class FlakyLoop:
    """A `run` loop that records "start", waits `seconds` (default 1), then raises
    (mode "raise") or returns (mode "return")."""

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        self.seconds = float(config.get("seconds", 1))
        self.mode = config.get("mode", "raise")
        api.register_event_sources(run=self.run)

    async def run(self) -> None:
        record("FlakyLoop", "start")
        await trio.sleep(self.seconds)
        if self.mode == "raise":
            raise RuntimeError("the loop's own bug")
        record("FlakyLoop", "returned")
