"""The gatekeeping hooks of the plugins: what rooms ask before an invite, a room
creation, a join or a message goes ahead.

Hooks run in configured order, each call under a timeout; the first answer other than
allow wins, and an exception, a timeout or an answer of the wrong type denies (fail
closed), logged with the plugin's name. Plugins register here while they are built
(homeserver.engine.plugin_host); the engine's services only ask.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeGuard, TypeVar

import trio

from homeserver.errors import LimitExceeded, MatrixError
from plugins.api import (
    Decision,
    EventCheck,
    EventDecision,
    InviteCheck,
    InviteDecision,
    InviteRedaction,
    JoinCheck,
    RoomCreationCheck,
    Verdict,
)

log = logging.getLogger("homeserver.plugins")

D = TypeVar("D", bound=Decision)
FAIL_CLOSED_MESSAGE = "Refused by server policy"
HOOK_KINDS = ("check_invite", "check_room_creation", "check_join", "check_event")


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


class Gatekeeper:
    def __init__(self, timeout_ms: int) -> None:
        self.timeout_s = timeout_ms / 1000
        self.hooks: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
            kind: [] for kind in HOOK_KINDS
        }

    def register(self, plugin: str, kind: str, hook: Callable[[Any], Any] | None) -> None:
        if hook is not None:
            if not callable(hook):
                raise TypeError(f"plugin {plugin}: {kind} must be callable")
            self.hooks[kind].append((plugin, hook))

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
