"""PNG charts of a run (matplotlib, through `benchmarks.report`): `compare` / `http`,
`store` and `scale`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import Panel, bar_chart, distribution_chart
from benchmarks.scenarios import core as sc

# ---------------------------------------------------------------------------- compare


def compare_charts(doc: dict[str, Any], stem: Path) -> list[Path]:
    summary = doc["summary"]
    names: list[str] = doc["targets"]
    panels = []
    throughput = [s for s in sc.THROUGHPUT if summary.get(s)]
    if throughput:
        panels.append(
            Panel(
                "Throughput (req/s, closed loop)",
                throughput,
                {n: [_get(summary, s, n, "rps") for s in throughput] for n in names},
                "requests/s (log)",
                log=True,
            )
        )
    wake = [s for s in sc.WAKE if summary.get(s)]
    if wake:
        for field, title in (("p50_ms", "p50"), ("p99_ms", "p99")):
            panels.append(
                Panel(
                    f"Wake latency {title}, ms from the writer's request start",
                    wake,
                    {n: [_get(summary, s, n, field) for s in wake] for n in names},
                    "ms (log)",
                    log=True,
                    label=lambda v: f"{v:,.1f}",
                )
            )
    if summary.get("chat"):
        panels.append(
            Panel(
                "Chat room: deliveries/s",
                ["chat"],
                {n: [_get(summary, "chat", n, "deliveries_per_s")] for n in names},
                "deliveries/s",
            )
        )
    paths = []
    if panels:
        paths.append(bar_chart(stem.with_name(stem.name + "_bars.png"), "bench compare", panels))
    dist: list[tuple[str, dict[str, Sequence[float]]]] = []
    for scenario in sc.WAKE:
        series: dict[str, Sequence[float]] = {
            name: [v for r in rounds for p in r["per_round"] for v in p["from_start_ms"]]
            for name, rounds in doc["raw"].get(scenario, {}).items()
            if rounds
        }
        if series:
            dist.append((scenario, series))
    if dist:
        paths.append(
            distribution_chart(
                stem.with_name(stem.name + "_wake.png"),
                "Wake latency per listener (ms from the writer's request start)",
                dist,
                "ms (log)",
            )
        )
    return paths


def _get(summary: dict[str, Any], scenario: str, name: str, field: str) -> float | None:
    value = summary.get(scenario, {}).get(name, {}).get(field)
    return float(value) if value is not None else None


# ---------------------------------------------------------------------------- store, scale


def store_chart(doc: dict[str, Any], path: Path) -> Path:
    results: dict[str, list[dict[str, Any]]] = doc["results"]
    levels = sorted({s["concurrency"] for stats in results.values() for s in stats})
    ops = list(dict.fromkeys(s["op"] for stats in results.values() for s in stats))
    panels = [
        Panel(
            f"{level} task{'s' if level > 1 else ''}",
            ops,
            {
                backend: [
                    next(
                        (
                            s["ops_per_s"]
                            for s in stats
                            if s["op"] == op and s["concurrency"] == level
                        ),
                        None,
                    )
                    for op in ops
                ]
                for backend, stats in results.items()
            },
            "operations/s (log)",
            log=True,
        )
        for level in levels
    ]
    return bar_chart(path, "Storage interface: ops/s per backend", panels)


def scale_chart(doc: dict[str, Any], path: Path) -> Path:
    results: dict[str, list[dict[str, Any]]] = doc["results"]
    sizes = sorted({r["size"] for rs in results.values() for r in rs})
    groups = [f"{s:,}" for s in sizes]

    def series(field: str) -> dict[str, list[float | None]]:
        return {
            backend: [next((r.get(field) for r in rs if r["size"] == s), None) for s in sizes]
            for backend, rs in results.items()
        }

    panels = [
        Panel("bytes per session", groups, series("bytes_per_session"), "bytes (log)", log=True),
        Panel(
            "expiry sweep of all, s",
            groups,
            series("sweep_s"),
            "s (log)",
            log=True,
            label=lambda v: f"{v:.2f}",
        ),
        Panel("touch ops/s (16 tasks)", groups, series("touch_per_s"), "ops/s (log)", log=True),
        Panel(
            "idle tick µs",
            groups,
            series("idle_tick_p50_us"),
            "µs (log)",
            log=True,
            label=lambda v: f"{v:.1f}",
        ),
    ]
    return bar_chart(path, "Live sessions at scale", panels)
