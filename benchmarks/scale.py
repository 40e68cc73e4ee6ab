"""`bench scale`: many live sessions per backend, through the storage interface.

For each backend and each size (10k / 100k / 1M by default), on a fresh store: insert
that many sessions sharing one deadline (16 tasks, `start_session`; bounded by
`insert_cap_s`: a size not reached in time is reported as such), then measure

- bytes per session: the store's growth over the sessions (memory: Python
  allocations by tracemalloc, which slows its inserts; SQLite: the database files;
  PostgreSQL: pg_database_size; Redis: used_memory, which includes anything else
  using that Redis at the time);
- touch cost: `touch_session` of random live sessions from 16 tasks for `touch_s`;
- idle tick: what the expiry loop does when nothing is due (`next_session_deadline`
  + an empty `take_expired_sessions`), p50 of 100 ticks;
- expiry sweep: all of them expire at once; `take_expired_sessions` in batches of
  1,000 (the engine's) until none is left: seconds in all and sessions/s.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import coredis
import psycopg
import trio

from backends import Storage, open_storage
from benchmarks.opsrun import run_op
from benchmarks.report import percentile
from benchmarks.store import SERVER, new_session
from benchmarks.stores import StoreUnavailable, fresh_store

BATCH = 1000
INSERT_TASKS = 16
TICKS = 100


def _files_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))


async def _store_bytes(backend: str, url: str) -> int:
    if backend == "memory":
        # Python allocations (tracemalloc is on while the memory backend is filled).
        gc.collect()
        return tracemalloc.get_traced_memory()[0]
    if backend == "sqlite":
        path = url.split("sqlite:///", 1)[1]
        return await trio.to_thread.run_sync(_files_size, path)
    if backend == "postgresql":
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)

        def size() -> int:
            with psycopg.connect(plain, autocommit=True, connect_timeout=10) as conn:
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                return int(row[0]) if row else 0

        return await trio.to_thread.run_sync(size)
    base = url.split("?", 1)[0]
    async with coredis.Redis.from_url(base) as client:
        info = await client.info("memory")
        return int(str(info["used_memory"]))


async def _insert(
    storage: Storage, start: int, end: int, now: int, deadline: int, cap: float
) -> int:
    next_index = start

    async def worker() -> None:
        nonlocal next_index
        while next_index < end and trio.current_time() < cap:
            i = next_index
            next_index += 1
            # Fresh strings per session, as if parsed from a request.
            record = new_session(f"@user{i % 10_000:05d}:{SERVER}", f"DEV{i:07d}", now, deadline)
            await storage.sessions.start_session(record, replace=False)

    async with trio.open_nursery() as nursery:
        for _ in range(INSERT_TASKS):
            nursery.start_soon(worker)
    return next_index - start


async def _idle_tick(storage: Storage, now: int) -> float:
    samples = []
    for _ in range(TICKS):
        t0 = time.perf_counter()
        await storage.sessions.next_session_deadline()
        taken = await storage.sessions.take_expired_sessions(now, BATCH)
        samples.append(time.perf_counter() - t0)
        if taken:
            raise RuntimeError("a session expired during the idle-tick measurement")
    samples.sort()
    return round(percentile(samples, 50) * 1e6, 1)


async def _one_size(
    backend: str, url: str, size: int, insert_cap_s: float, touch_s: float
) -> dict[str, Any]:
    async with open_storage(url) as storage:
        now = int(time.time() * 1000)
        deadline = now + 3_600_000
        if backend == "memory":
            tracemalloc.start()
        before = await _store_bytes(backend, url)
        t0 = time.perf_counter()
        ids: list[str] = []
        inserted = await _insert(
            storage, 0, size, now, deadline, trio.current_time() + insert_cap_s
        )
        insert_s = time.perf_counter() - t0
        after = await _store_bytes(backend, url)
        if backend == "memory":
            # Only the inserts are traced: the other figures are timed without it.
            tracemalloc.stop()
        result: dict[str, Any] = {
            "size": size,
            "inserted": inserted,
            "reached": inserted >= size,
            "insert_s": round(insert_s, 2),
            "insert_per_s": round(inserted / insert_s, 1) if insert_s > 0 else None,
            "bytes_per_session": round((after - before) / inserted, 1) if inserted else None,
        }
        # Sessions to touch: the ones of a sample of users (no per-session bookkeeping
        # here, which would weigh on the memory figure).
        sample_users = {f"@user{i % 10_000:05d}:{SERVER}" for i in range(min(inserted, 200))}
        for user_id in sample_users:
            ids.extend(s.session_id for s in await storage.sessions.list_user_sessions(user_id))
        rng = random.Random(1)

        async def touch(i: int) -> object:
            return await storage.sessions.touch_session(rng.choice(ids), now + i, deadline)

        if ids:
            stats = await run_op("touch", touch, concurrency=16, seconds=touch_s, max_ops=200_000)
            result["touch_per_s"] = stats.ops_per_s
            result["touch_p50_us"] = stats.p50_us
            result["touch_p99_us"] = stats.p99_us
        result["idle_tick_p50_us"] = await _idle_tick(storage, now)
        drained = 0
        batch_ms = []
        t0 = time.perf_counter()
        for _ in range(inserted // BATCH + 2):  # bounded: one more than needed
            b0 = time.perf_counter()
            taken = await storage.sessions.take_expired_sessions(deadline, BATCH)
            batch_ms.append((time.perf_counter() - b0) * 1000)
            drained += len(taken)
            if len(taken) < BATCH:
                break
        sweep_s = time.perf_counter() - t0
        result.update(
            {
                "sweep_s": round(sweep_s, 3),
                "swept": drained,
                "sweep_per_s": round(drained / sweep_s, 1) if sweep_s > 0 else None,
                "sweep_batch_mean_ms": round(statistics.fmean(batch_ms), 2),
                "sweep_batch_max_ms": round(max(batch_ms), 2),
            }
        )
        if drained != inserted:
            result["error"] = f"swept {drained} of {inserted}"
        return result


def run_scale(
    backends: list[str],
    sizes: list[int],
    insert_cap_s: float,
    touch_s: float,
    workdir: Path,
    progress: Callable[[str], None],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    results: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for backend in backends:
        results[backend] = []
        for size in sizes:
            try:
                with fresh_store(backend, workdir, "scale") as url:
                    figures = trio.run(_one_size, backend, url, size, insert_cap_s, touch_s)
            except StoreUnavailable as exc:
                skipped[backend] = str(exc)
                break
            results[backend].append(figures)
            progress(
                f"scale {backend:10} {size:>9,}: inserted {figures['inserted']:,} in "
                f"{figures['insert_s']} s, {figures['bytes_per_session']} B/session, "
                f"touch {figures.get('touch_per_s')}/s, idle tick "
                f"{figures['idle_tick_p50_us']} us, sweep {figures['sweep_s']} s"
            )
            if not figures["reached"]:
                break  # a bigger size would not be reached either
        gc.collect()
    return results, skipped
