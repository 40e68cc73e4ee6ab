"""Run one async operation from N concurrent Trio tasks, bounded in time and count."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from benchmarks.report import percentile

# Latencies kept per run (enough for a stable p99, bounded memory).
MAX_SAMPLES = 200_000


@dataclass
class OpStats:
    op: str
    concurrency: int
    ops: int
    seconds: float
    ops_per_s: float
    p50_us: float
    p99_us: float
    # Cores this process used (the benchmark's own Python, plus SQL worker threads).
    client_cpu: float


async def run_op(
    name: str,
    op: Callable[[int], Awaitable[object]],
    *,
    concurrency: int,
    seconds: float,
    max_ops: int,
) -> OpStats:
    """Call `op(i)` (i = 0, 1, 2, ... unique across tasks) from `concurrency` tasks until
    `seconds` have passed or `max_ops` calls were started; ops/s over the wall time until
    the last call returned."""
    latencies: list[float] = []
    started_calls = 0
    done = 0
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        nonlocal started_calls, done
        while started_calls < max_ops and trio.current_time() < deadline:
            index = started_calls
            started_calls += 1
            t0 = time.perf_counter()
            await op(index)
            if len(latencies) < MAX_SAMPLES:
                latencies.append(time.perf_counter() - t0)
            done += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    latencies.sort()
    return OpStats(
        op=name,
        concurrency=concurrency,
        ops=done,
        seconds=round(wall, 3),
        ops_per_s=round(done / wall, 1) if wall > 0 else 0.0,
        p50_us=round(percentile(latencies, 50) * 1e6, 1),
        p99_us=round(percentile(latencies, 99) * 1e6, 1),
        client_cpu=round(cpu / wall, 2) if wall > 0 else 0.0,
    )
