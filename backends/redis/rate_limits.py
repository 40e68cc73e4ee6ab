"""Rate-limit buckets in Redis.

A bucket is a hash (tokens, updated_ms) that one script (`lua/take_token.lua`, the
arithmetic of `backends.ratelimit_math` in Lua) refills and takes from, so concurrent
takers across processes never share a token; it expires once it would be full again
(plus a margin, see the script).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from backends.errors import StorageError
from backends.redis.base import RedisStore, ScriptCall, once, unexpected_reply
from backends.redis.keys import Keys


def _number(value: float) -> str:
    """A number as text Lua's `tonumber` reads back as the same double."""
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class TakeTokenCall(ScriptCall[int]):
    """`lua/take_token.lua`: refill a bucket and take `cost` tokens from it."""

    script: ClassVar[str] = "take_token"

    @classmethod
    def build(
        cls, k: Keys, key: str, *, capacity: float, refill_per_s: float, now_ms: int, cost: float
    ) -> TakeTokenCall:
        return cls(
            [k.rate_limit(key)],
            [_number(capacity), _number(refill_per_s), str(now_ms), _number(cost)],
        )

    def parse(self, reply: object) -> int:
        """0 if taken, else the milliseconds to wait."""
        if not isinstance(reply, str | bytes):
            raise unexpected_reply(reply)
        try:
            wait = float(reply)
        except ValueError as exc:
            raise unexpected_reply(reply) from exc
        if not math.isfinite(wait):
            raise StorageError(f"unusable rate limit (wait {reply!r} ms)")
        # The script's result is a whole number in exact `%.17g` form.
        return int(wait)


class RedisRateLimitStore(RedisStore):
    @once
    async def take_token(
        self, key: str, *, capacity: float, refill_per_s: float, now_ms: int, cost: float = 1.0
    ) -> int:
        """Not retried: a repeat after a lost reply could take a second time."""
        call = TakeTokenCall.build(
            self._k, key, capacity=capacity, refill_per_s=refill_per_s, now_ms=now_ms, cost=cost
        )
        return await self._ctx.run(call)
