"""Invite rate limit: token buckets per inviter, per invitee and per room.

Config (every table optional, at least one required)::

    [[plugins]]
    module = "plugins.builtin.ratelimit:InviteRateLimit"
    config.inviter = { capacity = 10, per_second = 0.1 }   # each user's invites
    config.invitee = { capacity = 5,  per_second = 0.05 }  # invites to each user
    config.room    = { capacity = 50, per_second = 1 }     # invites in each room

`capacity` (a number >= 1) is the burst a bucket allows when full; `per_second` (> 0)
the tokens it gets back each second, up to `capacity`. Each invite costs one token from
every configured bucket it falls in. An invite refused answers 429 `M_LIMIT_EXCEEDED`
with `retry_after_ms`: when the bucket that refused will have a token again.

The counters live in the server's storage (`PluginApi.take_token`), so every worker
process of the server shares them; a bucket left alone refills (and may be forgotten
once full).

Order and cost of a refusal: the storage takes a token atomically per bucket, with no
way to look without taking, so the buckets are asked one by one in the order inviter,
room, invitee, stopping at the first empty one (an empty bucket loses nothing). So a
refused invite costs tokens only from the buckets asked before the empty one: an
inviter who is over the limit costs no one else anything; an invite refused for the
room costs the inviter a token; and the invitee's bucket, which protects the invitee
and is shared by everyone inviting them, is only ever spent by invites this plugin
lets through. `retry_after_ms` is the wait of the bucket that refused (a later bucket
may then refuse in turn). Invites another plugin later denies or drops still count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugins.api import InviteCheck, InviteDecision, PluginApi, PluginConfigError
from plugins.builtin._config import ConfigReader
from plugins.builtin._decisions import invite_rate_limited

SCOPES = ("inviter", "room", "invitee")  # the order in which the buckets are asked

MESSAGES = {
    "inviter": "Too many invites sent: try again later",
    "room": "Too many invites in this room: try again later",
    "invitee": "Too many invites to this user: try again later",
}


@dataclass(frozen=True)
class Bucket:
    capacity: float
    per_second: float


@dataclass(frozen=True)
class RateLimitConfig:
    inviter: Bucket | None = None
    invitee: Bucket | None = None
    room: Bucket | None = None


def _bucket(reader: ConfigReader, name: str) -> Bucket | None:
    table = reader.table(name)
    if table is None:
        return None
    bucket = Bucket(
        capacity=table.number("capacity", minimum=1),
        per_second=table.number("per_second", minimum=0, exclusive=True),
    )
    table.finish()
    return bucket


class InviteRateLimit:
    """Token buckets per inviter, per invitee and per room (see the module docstring)."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> RateLimitConfig:
        reader = ConfigReader(raw)
        config = RateLimitConfig(
            inviter=_bucket(reader, "inviter"),
            invitee=_bucket(reader, "invitee"),
            room=_bucket(reader, "room"),
        )
        reader.finish()
        if config.inviter is None and config.invitee is None and config.room is None:
            raise PluginConfigError("inviter", "configure at least one of inviter, invitee, room")
        return config

    def __init__(self, config: RateLimitConfig, api: PluginApi) -> None:
        self._config = config
        self._api = api
        api.register_spam_checks(check_invite=self.check_invite)

    async def check_invite(self, invite: InviteCheck) -> InviteDecision:
        subjects = {"inviter": invite.inviter, "room": invite.room_id, "invitee": invite.invitee}
        for scope in SCOPES:
            bucket: Bucket | None = getattr(self._config, scope)
            if bucket is None:
                continue
            wait_ms = await self._api.take_token(
                f"{scope}:{subjects[scope]}",
                capacity=bucket.capacity,
                refill_per_s=bucket.per_second,
            )
            if wait_ms > 0:
                self._api.log.info(
                    "invite %s -> %s in %s: %s bucket empty (retry in %d ms)",
                    invite.inviter,
                    invite.invitee,
                    invite.room_id,
                    scope,
                    wait_ms,
                )
                return invite_rate_limited(wait_ms, MESSAGES[scope])
        return InviteDecision.allow()
