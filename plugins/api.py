"""The plugin API: what a plugin is given, what its hooks see, and what they answer.

A plugin is a class built as `Class(config, api)`: `config` is whatever its optional
`parse_config(raw: dict) -> object` classmethod returned (or the raw table), and `api`
is a `PluginApi`, the plugin's only handle on the server. Hooks are registered by
keyword through the api; they may be `async def` (awaited, so a slow plugin never
blocks other requests) or plain functions (called inline: they must be quick).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, Self, TypeVar

JsonDict = dict[str, Any]
T = TypeVar("T")
Hook = Callable[[T], "Awaitable[Any] | Any"]


class PluginConfigError(ValueError):
    """Raised by a plugin's parse_config for a bad value; names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key '{key}': {message}")
        self.key = key


# -- what the hooks see -------------------------------------------------------------


@dataclass(frozen=True)
class InviteCheck:
    """An invite about to be delivered."""

    inviter: str
    invitee: str
    room_id: str
    reason: str | None
    # The stripped state (type, state_key, sender, content) the invitee would receive.
    shared_state: tuple[JsonDict, ...]
    # Whether inviter and invitee are both joined to some room already.
    share_a_room: bool

    def shared(self, event_type: str, key: str) -> str | None:
        """A string field of the shared state, e.g. shared("m.room.name", "name")."""
        for event in self.shared_state:
            if event.get("type") == event_type:
                value = event.get("content", {}).get(key)
                return value if isinstance(value, str) else None
        return None


@dataclass(frozen=True)
class RoomCreationCheck:
    creator: str
    preset: str
    name: str | None
    topic: str | None
    invitees: tuple[str, ...]
    is_direct: bool


@dataclass(frozen=True)
class JoinCheck:
    user_id: str
    room_id: str


@dataclass(frozen=True)
class EventCheck:
    """A message (non-state event) about to be sent."""

    sender: str
    room_id: str
    type: str
    content: JsonDict


# -- what the hooks answer ----------------------------------------------------------


class Verdict(Enum):
    ALLOW = "allow"
    DENY = "deny"
    DROP = "drop"


@dataclass(frozen=True)
class InviteRedaction:
    """What to strip from an allowed invite before the invitee sees it."""

    reason: bool = False
    # Shared state event types to leave out entirely (e.g. "m.room.avatar").
    state_types: frozenset[str] = frozenset()
    # Content keys to strip from the shared state, as (event type, key).
    state_fields: frozenset[tuple[str, str]] = frozenset()

    def merge(self, other: InviteRedaction) -> InviteRedaction:
        return InviteRedaction(
            reason=self.reason or other.reason,
            state_types=self.state_types | other.state_types,
            state_fields=self.state_fields | other.state_fields,
        )

    @property
    def empty(self) -> bool:
        return not (self.reason or self.state_types or self.state_fields)


@dataclass(frozen=True)
class Decision:
    """The answer of a gatekeeping hook: allow, or deny with an errcode."""

    verdict: Verdict
    errcode: str = "M_FORBIDDEN"
    message: str = ""
    retry_after_ms: int | None = None

    # Typed `Self`: InviteDecision.deny(...) is an InviteDecision, EventDecision.allow()
    # an EventDecision, as the host requires of each hook.

    @classmethod
    def allow(cls) -> Self:
        return cls(Verdict.ALLOW)

    @classmethod
    def deny(cls, errcode: str = "M_FORBIDDEN", message: str = "Forbidden by policy") -> Self:
        return cls(Verdict.DENY, errcode, message)

    @classmethod
    def rate_limited(cls, retry_after_ms: int, message: str = "Too many requests") -> Self:
        """Deny with 429 M_LIMIT_EXCEEDED and `retry_after_ms`."""
        return cls(Verdict.DENY, "M_LIMIT_EXCEEDED", message, max(1, retry_after_ms))


@dataclass(frozen=True)
class EventDecision(Decision):
    """allow / deny, or drop: the sender sees success, nobody receives the event."""

    @classmethod
    def drop(cls) -> EventDecision:
        return cls(Verdict.DROP)


@dataclass(frozen=True)
class InviteDecision(Decision):
    """allow (optionally redacted) / deny / drop (the inviter sees success, the invitee
    never sees the invite: no tipping off a spammer)."""

    redaction: InviteRedaction = field(default_factory=InviteRedaction)

    @classmethod
    def allow(cls, redact: InviteRedaction | None = None) -> InviteDecision:
        return cls(Verdict.ALLOW, redaction=redact or InviteRedaction())

    @classmethod
    def drop(cls) -> InviteDecision:
        return cls(Verdict.DROP)


# -- the façade ---------------------------------------------------------------------


class PluginApi(Protocol):
    """The plugin's handle on the server (one per plugin)."""

    @property
    def server_name(self) -> str: ...

    @property
    def plugin_name(self) -> str: ...

    @property
    def log(self) -> logging.Logger: ...

    def now_ms(self) -> int:
        """Wall-clock milliseconds (the server's clock)."""

    def register_spam_checks(
        self,
        *,
        check_invite: Hook[InviteCheck] | None = None,
        check_room_creation: Hook[RoomCreationCheck] | None = None,
        check_join: Hook[JoinCheck] | None = None,
        check_event: Hook[EventCheck] | None = None,
    ) -> None:
        """Register gatekeeping hooks. They run in configured plugin order under the
        server's per-call timeout; the first answer other than allow wins; an
        exception, a timeout or an answer of the wrong type denies (fail closed)."""

    async def take_token(
        self, bucket: str, *, capacity: float, refill_per_s: float, cost: float = 1.0
    ) -> int:
        """A token bucket in the server's storage (shared by all its processes),
        private to this plugin. 0 when taken, else the ms until it would be."""

    async def share_a_room(self, user_a: str, user_b: str) -> bool:
        """Whether both users are joined to at least one common room."""

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
        """Register notification hooks and a periodic loop. Hooks run after the fact,
        in the server's background (never inside the request that caused them), each
        under the plugin timeout; a failure is logged and changes nothing else.
        on_server_state is awaited by the server itself (so "draining" goes out before
        connections are drained). `run` is started in the server's nursery and
        restarted after RUN_RESTART_DELAY_S if it raises."""

    async def send_server_event(self, target: str, type: str, content: JsonDict) -> str:
        """Send a server-generated event (sender: the server name) to a user id, a
        room id (its joined members), or ALL_USERS; returns its event id."""


PluginFactory = Callable[[Any, PluginApi], object]
RawConfig = Mapping[str, Any]


# -- event sources (server-generated events) ----------------------------------------

# The namespace of this server's own event and account-data types (for plugins that
# send them; homeserver.namespace re-exports these).
NAMESPACE = "org.triohomeserver"
SERVER_STATUS = f"{NAMESPACE}.server_status"

# The `target` of PluginApi.send_server_event: a user id ("@..."), a room id ("!...",
# delivered to its joined members), or ALL_USERS.
ALL_USERS = "*"
RUN_RESTART_DELAY_S = 10.0


@dataclass(frozen=True)
class SessionSignal:
    """A session started or ended (by its client, by logout, or by expiry)."""

    user_id: str
    device_id: str
    session_id: str
    presence: str


@dataclass(frozen=True)
class UserRegistered:
    user_id: str


@dataclass(frozen=True)
class RoomCreated:
    room_id: str
    creator: str


@dataclass(frozen=True)
class ServerState:
    """The server's lifecycle: "starting" (before it listens), "running" (listening),
    "draining" (graceful shutdown begun: told before connections are drained)."""

    state: str
