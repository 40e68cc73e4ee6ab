"""Memory rate-limit buckets (the arithmetic is `backends.ratelimit_math`)."""

from __future__ import annotations

from backends import ratelimit_math

# Past this many buckets, a take first forgets the ones full again.
_PRUNE_AT = 10_000


class MemoryRateLimitStore:
    def __init__(self) -> None:
        # key -> (tokens, updated_ms, capacity, refill_per_s)
        self._buckets: dict[str, tuple[float, int, float, float]] = {}

    async def take_token(
        self, key: str, *, capacity: float, refill_per_s: float, now_ms: int, cost: float = 1.0
    ) -> int:
        bucket = self._buckets.get(key)
        result = ratelimit_math.take(
            None if bucket is None else (bucket[0], bucket[1]),
            capacity=capacity,
            rate=refill_per_s,
            now_ms=now_ms,
            cost=cost,
        )
        self._buckets[key] = (result.tokens, result.updated_ms, capacity, refill_per_s)
        if result.wait_ms == 0 and len(self._buckets) > _PRUNE_AT:
            self._prune(now_ms)
        return result.wait_ms

    def _prune(self, now_ms: int) -> None:
        """Forget buckets that are full again (they behave exactly like new ones)."""
        for key, (tokens, updated, capacity, rate) in list(self._buckets.items()):
            if ratelimit_math.is_full(tokens, updated, now_ms, capacity, rate):
                del self._buckets[key]
