"""Token-bucket arithmetic, once: the memory and SQL backends call `take`; the Redis
backend runs the same steps in Lua (`backends/redis/lua/take_token.lua`), operation for
operation, because it must run inside Redis. `tests/conformance/test_rate_limits.py`
holds all of them to the same answers.

Every number is a double (Python float, Lua number), so the backends agree exactly.

A bucket's update time never moves backwards: a caller whose clock is behind the last
update refills nothing, and cannot make the time up to the latest update count twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The wait answered when tokens never come back (a refill rate of zero or less).
NEVER_MS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Take:
    """The outcome of one take: the bucket to store, and the caller's answer."""

    tokens: float
    updated_ms: int
    wait_ms: int  # 0 when the tokens were taken


def refill(tokens: float, updated_ms: int, now_ms: int, capacity: float, rate: float) -> float:
    """The tokens at `now_ms` of a bucket holding `tokens` at `updated_ms`."""
    elapsed_s = max(0, now_ms - updated_ms) / 1000
    return min(capacity, tokens + elapsed_s * rate)


def wait_ms(tokens: float, cost: float, capacity: float, rate: float) -> int:
    """Milliseconds until `cost` tokens are there (or the bucket is full, if `cost`
    exceeds the capacity); at least 1."""
    if rate <= 0:
        return NEVER_MS
    needed = min(cost, capacity) - tokens
    return max(1, math.ceil(needed / rate * 1000))


def take(
    stored: tuple[float, int] | None, *, capacity: float, rate: float, now_ms: int, cost: float
) -> Take:
    """Take `cost` tokens from a bucket holding `stored` = (tokens, updated_ms), or from
    a full one when it has none stored (never used, or forgotten once full again)."""
    if stored is None:
        tokens, updated = float(capacity), now_ms
    else:
        tokens = refill(stored[0], stored[1], now_ms, capacity, rate)
        updated = max(stored[1], now_ms)
    if tokens >= cost:
        return Take(tokens - cost, updated, 0)
    return Take(tokens, updated, wait_ms(tokens, cost, capacity, rate))


def is_full(tokens: float, updated_ms: int, now_ms: int, capacity: float, rate: float) -> bool:
    """Whether the bucket is full again at `now_ms` (it then behaves like a new one)."""
    return refill(tokens, updated_ms, now_ms, capacity, rate) >= capacity
