"""Token buckets: one row per bucket, read and rewritten under its row lock.

A take is one write transaction. On PostgreSQL it first locks the bucket's row
(SELECT ... FOR UPDATE): concurrent takes on one key queue behind each other and each
reads the row as the previous one committed it. A bucket without a row is full; its
first take creates the row with INSERT ... ON CONFLICT DO NOTHING, and if a concurrent
transaction created it first (the insert waits for that one to commit, then inserts
nothing) the take starts over and locks that row. On SQLite every write transaction
holds the database's write lock from BEGIN IMMEDIATE on, so takes are serial anyway.

The arithmetic (`backends.ratelimit_math`, shared with the memory backend) runs in
Python on the values read (doubles, as in every backend), so both dialects compute
exactly the same results.

Buckets full again are deleted every `prune_every` takes of a store, a bounded batch
at a time, before the take (so a failure there is the take's failure, not a token
taken and an error reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update

from backends import ratelimit_math
from backends.sql.common import MAX_POSITION, insert_for
from backends.sql.database import Database
from backends.sql.schema import rate_limits

PRUNE_EVERY = 1_000
PRUNE_BATCH = 1_000


def full_at_ms(tokens: float, updated_ms: int, capacity: float, rate: float) -> int:
    """When a bucket holding `tokens` at `updated_ms` is full again."""
    if tokens >= capacity:
        return updated_ms
    if rate <= 0:
        return MAX_POSITION
    return min(MAX_POSITION, updated_ms + math.ceil((capacity - tokens) / rate * 1000))


@dataclass(frozen=True, slots=True)
class _Bucket:
    tokens: float
    updated_ms: int


class SqlRateLimitStore:
    def __init__(self, db: Database, *, prune_every: int = PRUNE_EVERY) -> None:
        self._db = db
        self._prune_every = prune_every
        self._takes = 0

    async def take_token(
        self, key: str, *, capacity: float, refill_per_s: float, now_ms: int, cost: float = 1.0
    ) -> int:
        self._takes += 1
        if self._takes % self._prune_every == 0:
            await self.forget_full_buckets(now_ms, PRUNE_BATCH)

        def run(conn: Connection) -> int:
            while True:
                stored = _lock_bucket(conn, key)
                taken = ratelimit_math.take(
                    None if stored is None else (stored.tokens, stored.updated_ms),
                    capacity=capacity,
                    rate=refill_per_s,
                    now_ms=now_ms,
                    cost=cost,
                )
                tokens, updated, result = taken.tokens, taken.updated_ms, taken.wait_ms
                values = {
                    "tokens": tokens,
                    "updated_ms": updated,
                    "full_at_ms": full_at_ms(tokens, updated, capacity, refill_per_s),
                }
                if stored is not None:
                    conn.execute(
                        update(rate_limits).where(rate_limits.c.bucket_key == key).values(**values)
                    )
                    return result
                created = conn.execute(
                    insert_for(conn, rate_limits)
                    .values(bucket_key=key, **values)
                    .on_conflict_do_nothing(index_elements=[rate_limits.c.bucket_key])
                    .returning(rate_limits.c.bucket_key)
                ).first()
                if created is not None:
                    return result
                # A concurrent take created the bucket after we looked: take from that.

        return await self._db.write(run)

    async def forget_full_buckets(self, now_ms: int, limit: int) -> int:
        """Delete up to `limit` buckets that are full again at `now_ms` (they behave
        exactly like missing ones); returns how many were deleted."""
        now_ms = min(now_ms, MAX_POSITION)

        def run(conn: Connection) -> int:
            due = select(rate_limits.c.bucket_key).where(rate_limits.c.full_at_ms <= now_ms)
            if conn.dialect.name == "postgresql":
                # Buckets being taken from right now are left alone.
                due = due.with_for_update(skip_locked=True)
            result = conn.execute(
                delete(rate_limits).where(
                    rate_limits.c.full_at_ms <= now_ms,
                    rate_limits.c.bucket_key.in_(due.limit(limit)),
                )
            )
            return int(result.rowcount)

        return await self._db.write(run)


def _lock_bucket(conn: Connection, key: str) -> _Bucket | None:
    """The bucket's row, locked until commit (PostgreSQL; SQLite's writer is alone)."""
    query = select(rate_limits.c.tokens, rate_limits.c.updated_ms).where(
        rate_limits.c.bucket_key == key
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else _Bucket(float(row.tokens), int(row.updated_ms))
