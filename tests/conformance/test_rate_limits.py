"""Token buckets: start full, refill with the caller's clock, atomic per key.

Rates and times are chosen so that the float arithmetic is exact (halves and quarters
of tokens): every backend computes with doubles, and the boundaries tested here must
not depend on rounding.
"""

from __future__ import annotations

from functools import partial

from backends import Storage

from .support import gather

T0 = 1_000_000


async def _drain(
    storage: Storage, key: str, capacity: int, refill_per_s: float, now_ms: int
) -> None:
    """Take every token of a full bucket (asserting each take succeeds)."""
    for _ in range(capacity):
        assert (
            await storage.rate_limits.take_token(
                key, capacity=capacity, refill_per_s=refill_per_s, now_ms=now_ms
            )
            == 0
        )


async def test_a_new_bucket_starts_full(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "k", capacity=3, refill_per_s=1, now_ms=T0)
    assert [await take() for _ in range(3)] == [0, 0, 0]
    # Empty: one token comes back after 1/refill_per_s seconds.
    assert await take() == 1_000
    assert await take() == 1_000


async def test_refill_is_exact(storage: Storage) -> None:
    """Two tokens a second: one token 500 ms after the bucket ran dry, not a ms earlier.
    Each probe uses its own key, so that no probe's update affects another."""
    take = partial(storage.rate_limits.take_token, capacity=2, refill_per_s=2)
    for key in ("early", "half", "exact"):
        await _drain(storage, key, 2, 2, T0)
        assert await take(key, now_ms=T0) == 500
    assert await take("early", now_ms=T0 + 499) > 0
    assert await take("half", now_ms=T0 + 250) == 250
    assert await take("half", now_ms=T0 + 500) == 0
    assert await take("exact", now_ms=T0 + 500) == 0
    # That was the only token: the next is 500 ms away again, then comes on time.
    assert await take("exact", now_ms=T0 + 500) == 500
    assert await take("exact", now_ms=T0 + 1_000) == 0
    assert await take("exact", now_ms=T0 + 1_000) == 500


async def test_refill_accumulates_over_several_tokens(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "k", capacity=4, refill_per_s=0.5)
    await _drain(storage, "k", 4, 0.5, T0)
    # 0.5 tokens a second: 2 s a token; after 4 s two tokens are there, not three.
    assert await take(now_ms=T0 + 4_000) == 0
    assert await take(now_ms=T0 + 4_000) == 0
    assert await take(now_ms=T0 + 4_000) == 2_000
    # A failed take does not hold back the refill.
    assert await take(now_ms=T0 + 5_000) == 1_000
    assert await take(now_ms=T0 + 6_000) == 0


async def test_tokens_never_exceed_capacity(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "k", capacity=3, refill_per_s=1)
    assert await take(now_ms=T0) == 0
    # Idle for far longer than it takes to fill: full, not fuller.
    later = T0 + 10_000_000
    assert [await take(now_ms=later) for _ in range(3)] == [0, 0, 0]
    assert await take(now_ms=later) == 1_000
    # Full again (and perhaps forgotten): it behaves exactly like a new bucket.
    again = later + 3_000
    assert [await take(now_ms=again) for _ in range(3)] == [0, 0, 0]
    assert await take(now_ms=again) == 1_000


async def test_a_failed_take_takes_nothing_and_says_when(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "k", capacity=4, refill_per_s=1, now_ms=T0)
    assert await take(cost=3) == 0
    # One token left: two are there in 1 s; asking again changes nothing.
    assert await take(cost=2) == 1_000
    assert await take(cost=2) == 1_000
    assert await take(cost=1) == 0
    assert await take(cost=2) == 2_000
    assert await take(cost=1) == 1_000
    assert (
        await storage.rate_limits.take_token(
            "k", capacity=4, refill_per_s=1, now_ms=T0 + 2_000, cost=2
        )
        == 0
    )


async def test_fractional_costs(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "k", capacity=1, refill_per_s=1, now_ms=T0)
    assert await take(cost=0.5) == 0
    assert await take(cost=0.25) == 0
    assert await take(cost=0.5) == 250
    assert await take(cost=0.25) == 0
    assert await take(cost=0.25) == 250


async def test_the_wait_is_at_least_one_ms(storage: Storage) -> None:
    # A million tokens a second: the next token is a microsecond away, answered as 1 ms.
    take = partial(
        storage.rate_limits.take_token, "k", capacity=1, refill_per_s=1_000_000, now_ms=T0
    )
    assert await take() == 0
    assert await take() == 1


async def test_a_cost_above_capacity_answers_the_time_to_fill(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "k", capacity=2, refill_per_s=1)
    # Full already: the time to fill is nothing, answered as the minimum of 1 ms ...
    assert await take(now_ms=T0, cost=3) == 1
    # ... and nothing was taken.
    assert await take(now_ms=T0, cost=2) == 0
    assert await take(now_ms=T0, cost=3) == 2_000
    assert await take(now_ms=T0 + 500, cost=3) == 1_500
    assert await take(now_ms=T0 + 2_000, cost=3) == 1
    assert await take(now_ms=T0 + 2_000, cost=2) == 0


async def test_keys_are_independent(storage: Storage) -> None:
    take = storage.rate_limits.take_token
    await _drain(storage, "a", 2, 1, T0)
    assert await take("a", capacity=2, refill_per_s=1, now_ms=T0) == 1_000
    # Another key is still full, whatever its own parameters.
    assert await take("b", capacity=2, refill_per_s=1, now_ms=T0) == 0
    assert await take("b", capacity=2, refill_per_s=1, now_ms=T0) == 0
    assert await take("c", capacity=1, refill_per_s=4, now_ms=T0) == 0
    assert await take("c", capacity=1, refill_per_s=4, now_ms=T0) == 250
    # Keys that differ only in case or a suffix are different keys.
    assert await take("A", capacity=2, refill_per_s=1, now_ms=T0) == 0
    assert await take("a:1", capacity=2, refill_per_s=1, now_ms=T0) == 0
    assert await take("a", capacity=2, refill_per_s=1, now_ms=T0) == 1_000


async def test_concurrent_takes_on_one_key_take_exactly_capacity(storage: Storage) -> None:
    capacity, takers = 5, 24
    take = partial(storage.rate_limits.take_token, "shared", capacity=capacity, refill_per_s=1)
    # A new bucket (concurrent first takes race to create it) ...
    results = await gather(*[partial(take, now_ms=T0) for _ in range(takers)])
    assert results.count(0) == capacity
    assert sorted(results)[capacity:] == [1_000] * (takers - capacity)
    # ... and an existing one, full again.
    later = T0 + capacity * 1_000
    results = await gather(*[partial(take, now_ms=later) for _ in range(takers)])
    assert results.count(0) == capacity
    assert sorted(results)[capacity:] == [1_000] * (takers - capacity)


async def test_concurrent_takes_with_costs(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "shared", capacity=10, refill_per_s=1, now_ms=T0)
    results = await gather(*[partial(take, cost=3) for _ in range(8)])
    # Three takes of 3 fit in 10; one token is left.
    assert results.count(0) == 3
    assert sorted(results)[3:] == [2_000] * 5
    assert await take(cost=1) == 0
    assert await take(cost=1) == 1_000


async def test_a_clock_going_backwards_adds_no_tokens(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "k", capacity=2, refill_per_s=1)
    await _drain(storage, "k", 2, 1, T0)
    assert await take(now_ms=T0 - 5_000) > 0
    assert await take(now_ms=T0 - 10_000_000) > 0


async def test_a_clock_going_backwards_and_forwards_again_adds_no_tokens(
    storage: Storage,
) -> None:
    """The time between an earlier clock reading and the latest update was refilled
    already: a caller whose clock is behind must not make it count twice."""
    take = partial(storage.rate_limits.take_token, "k", capacity=2, refill_per_s=1)
    await _drain(storage, "k", 2, 1, T0)
    assert await take(now_ms=T0 - 5_000) > 0
    assert await take(now_ms=T0) > 0
    assert await take(now_ms=T0 + 500) == 500
    assert await take(now_ms=T0 + 1_000) == 0
    assert await take(now_ms=T0 + 1_000) > 0
    # A take that succeeds with a clock behind does not move the bucket back either.
    assert await take(now_ms=T0 + 3_000) == 0  # full again: one token left
    assert await take(now_ms=T0 + 1_000) == 0
    assert await take(now_ms=T0 + 3_000) > 0
    assert await take(now_ms=T0 + 4_000) == 0


async def test_rate_limits_take_no_stream_positions(storage: Storage) -> None:
    take = partial(storage.rate_limits.take_token, "k", capacity=1, refill_per_s=1, now_ms=T0)
    await take()
    await take()
    assert await storage.rooms.current_stream_pos() == 0
