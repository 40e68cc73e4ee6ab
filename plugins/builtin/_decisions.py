"""Typed constructors for answers whose classmethods are declared on the base class
(`Decision.deny` / `Decision.rate_limited` are typed as returning a `Decision`, but the
host requires the hook's own type: an InviteDecision from check_invite, an
EventDecision from check_event)."""

from __future__ import annotations

from plugins.api import EventDecision, InviteDecision, Verdict


def invite_deny(errcode: str, message: str) -> InviteDecision:
    return InviteDecision(Verdict.DENY, errcode, message)


def invite_rate_limited(retry_after_ms: int, message: str) -> InviteDecision:
    """Deny with 429 M_LIMIT_EXCEEDED and `retry_after_ms` (at least 1)."""
    return InviteDecision(Verdict.DENY, "M_LIMIT_EXCEEDED", message, max(1, retry_after_ms))


def event_deny(errcode: str, message: str) -> EventDecision:
    return EventDecision(Verdict.DENY, errcode, message)
