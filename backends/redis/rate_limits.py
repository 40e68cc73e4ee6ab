"""Rate-limit buckets in Redis.

A bucket is a hash (tokens, updated_ms) that one script (`lua/take_token.lua`, the
arithmetic of `backends.ratelimit_math` in Lua) refills and takes from, so concurrent
takers across processes never share a token; it expires once it would be full again
(plus a margin, see the script).
"""

from __future__ import annotations

import math

from backends.errors import StorageError
from backends.redis.base import RedisStore, once, unexpected_reply


def _number(value: float) -> str:
    """A number as text Lua's `tonumber` reads back as the same double."""
    return repr(float(value))


class RedisRateLimitStore(RedisStore):
    @once
    async def take_token(
        self, key: str, *, capacity: float, refill_per_s: float, now_ms: int, cost: float = 1.0
    ) -> int:
        """Not retried: a repeat after a lost reply could take a second time."""
        reply = await self._ctx.run(
            self._scripts.take_token,
            [self._k.rate_limit(key)],
            [_number(capacity), _number(refill_per_s), str(now_ms), _number(cost)],
        )
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
