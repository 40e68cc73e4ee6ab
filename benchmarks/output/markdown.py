"""Markdown tables of a run: `compare` / `http`, `store` and `scale`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import compare as cmp
from benchmarks.machine import machine_line
from benchmarks.output.files import HEADLINE_MARK
from benchmarks.report import fmt, fmt_small, markdown_table
from benchmarks.scenarios import core as sc

# ---------------------------------------------------------------------------- compare


def _cell(scenario: str, value: float | None, ratio: float | None, baseline: bool) -> str:
    if value is None:
        return "-"
    text = fmt_small(value) if sc.kind_of(scenario) == "wake" else fmt(value)
    if baseline:
        return f"{text} (1.00)"
    return text if ratio is None else f"{text} ({ratio:.2f}x)"


def compare_markdown(doc: dict[str, Any], baseline: str | None, charts: Sequence[Path]) -> str:
    summary = doc["summary"]
    names: list[str] = doc["targets"]
    lines = [
        f"Run of {doc['started_at']} to {doc['finished_at']} (UTC).",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {machine_line(doc['machine'])}; load average at start "
        f"{', '.join(str(v) for v in doc['machine'].get('loadavg_at_start', []))}.",
        "",
    ]
    for name, settings in doc["settings"].items():
        if settings.get("kind") == "synapse":
            lines.append(
                f"Synapse: `{name}` = matrix-synapse {settings.get('synapse_version')} "
                f"({settings.get('database')}; bcrypt_rounds={settings.get('bcrypt_rounds')}, "
                "which only affects setup and `login`; every rc_* limit raised; "
                "log level WARNING; presence on)."
            )
    lines += [
        "",
        f"Rounds: {doc['rounds']} (targets interleaved per scenario: "
        f"{' '.join(names)}, repeated); medians over rounds, wake latencies pooled over "
        "every listener of every round.",
        "",
        "## Headline",
        "",
        HEADLINE_MARK,
        "",
    ]
    base_name = baseline if baseline in names else None
    note = (
        f"In brackets: times better than `{base_name}` (throughput / its throughput, or its "
        "latency / latency: above 1 is better)."
        if base_name
        else "No baseline among the targets."
    )
    rows = []
    for scenario, by_target in summary.items():
        if not by_target:
            continue
        for label, unit, field in cmp.headlines(scenario):
            base = headline_value(summary, scenario, base_name, field)
            row: list[object] = [label, unit]
            for name in names:
                value = headline_value(summary, scenario, name, field)
                ratio = cmp.speed_ratio(scenario, value, base)
                row.append(_cell(scenario, value, ratio, name == base_name and value is not None))
            rows.append(row)
    lines += [markdown_table(["scenario", "figure", *names], rows), "", note, ""]
    lines += _throughput_table(summary, names)
    lines += _wake_table(summary, names)
    lines += _chat_table(summary, names)
    lines += _setup_table(doc, names)
    skipped = [
        f"- `{scenario}` on `{name}`: {reason}"
        for scenario, by_target in doc["skipped"].items()
        for name, reason in by_target.items()
    ]
    if skipped:
        lines += ["## Not measured", "", *skipped, ""]
    flags = [
        f"- `{scenario}` on `{name}`: {'; '.join(s['flags'])}"
        for scenario, by_target in summary.items()
        for name, s in by_target.items()
        if s.get("flags")
    ]
    lines += ["## Noise flags", ""]
    lines += flags or ["None: the load generator and other processes stayed under 0.3 core."]
    lines.append("")
    if charts:
        lines += ["## Charts", ""]
        lines += [f"![{p.stem}]({p.name})" for p in charts]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def headline_value(
    summary: dict[str, Any], scenario: str, name: str | None, field: str
) -> float | None:
    if name is None or name not in summary.get(scenario, {}):
        return None
    return cmp.headline(scenario, summary[scenario][name], field)


def _errors(s: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in s.get("errors", {}).items()) or "0"


def _throughput_table(summary: dict[str, Any], names: list[str]) -> list[str]:
    rows = []
    for scenario in sc.THROUGHPUT:
        for name in names:
            s = summary.get(scenario, {}).get(name)
            if s is None:
                continue
            rows.append(
                [
                    scenario,
                    name,
                    fmt(s["rps"]),
                    " / ".join(fmt(v) for v in s["rps_per_round"]),
                    fmt_small(s["p50_ms"]),
                    fmt_small(s["p99_ms"]),
                    f"{s['cpu_server']:.2f}",
                    fmt(s["server_cpu_us_per_request"]),
                    f"{s['cpu_services']:.2f}",
                    f"{s['cpu_loadgen']:.2f}",
                    f"{s['cpu_other']:.2f}",
                    f"{s['cpu_idle_targets']:.2f}",
                    fmt(s["cpu_server_rss_mib"]),
                    _errors(s),
                ]
            )
    if not rows:
        return []
    headers = [
        "scenario",
        "target",
        "req/s",
        "req/s per round",
        "p50 ms",
        "p99 ms",
        "server cores",
        "server CPU µs/req",
        "db cores",
        "loadgen cores",
        "other cores",
        "idle targets cores",
        "server RSS MiB",
        "errors",
    ]
    return [
        "## Throughput (closed loop, one user per connection)",
        "",
        markdown_table(headers, rows),
        "",
    ]


def _wake_table(summary: dict[str, Any], names: list[str]) -> list[str]:
    rows = []
    for scenario in sc.WAKE:
        for name in names:
            s = summary.get(scenario, {}).get(name)
            if s is None:
                continue
            ls, la, al, wr = (
                s["listener_from_start"],
                s["listener_from_answer"],
                s["all_seen"],
                s["writer"],
            )
            pl = s.get("per_listener", {})
            rows.append(
                [
                    scenario,
                    name,
                    f"{fmt_small(ls['p50_ms'])} / {fmt_small(ls['p99_ms'])}",
                    f"{fmt_small(la['p50_ms'])} / {fmt_small(la['p99_ms'])}",
                    f"{fmt_small(al['p50_ms'])} / {fmt_small(al['p99_ms'])} ({al['n']})",
                    f"{fmt_small(pl.get('median_p99_ms'))} / {fmt_small(pl.get('worst_p99_ms'))}",
                    f"{fmt_small(wr['p50_ms'])} / {fmt_small(wr['p99_ms'])}",
                    fmt_small(s["server_cpu_ms_per_round"]),
                    f"{s['cpu_loadgen']:.2f}",
                    f"{s['cpu_other']:.2f}",
                    f"{s['cpu_idle_targets']:.2f}",
                    _errors(s),
                ]
            )
    if not rows:
        return []
    headers = [
        "scenario",
        "target",
        "listener ms from writer start p50 / p99",
        "from writer's answer p50 / p99",
        "all listeners seen p50 / p99 (rounds)",
        "each listener's p99: median / worst",
        "writer request p50 / p99 ms",
        "server CPU ms/round",
        "loadgen cores",
        "other cores",
        "idle targets cores",
        "errors",
    ]
    return ["## Wake latency", "", markdown_table(headers, rows), ""]


def _chat_table(summary: dict[str, Any], names: list[str]) -> list[str]:
    rows = []
    for name in names:
        s = summary.get("chat", {}).get(name)
        if s is None:
            continue
        rows.append(
            [
                name,
                fmt(s["deliveries_per_s"]),
                fmt(s["messages_per_s"]),
                fmt(s["rps"]),
                f"{fmt_small(s['p50_ms'])} / {fmt_small(s['p99_ms'])}",
                fmt_small(s["delivered_fraction"]),
                f"{s['cpu_server']:.2f}",
                f"{s['cpu_loadgen']:.2f}",
                _errors(s),
            ]
        )
    if not rows:
        return []
    headers = [
        "target",
        "deliveries/s",
        "messages/s",
        "req/s",
        "delivery p50 / p99 ms",
        "delivered fraction",
        "server cores",
        "loadgen cores",
        "errors",
    ]
    return [
        "## Chat room (senders: typing, message, typing off; readers: /sync, /messages)",
        "",
        markdown_table(headers, rows),
        "",
    ]


def _setup_table(doc: dict[str, Any], names: list[str]) -> list[str]:
    groups = sorted({g for n in names for g in doc["setup_s"].get(n, {})})
    if not groups:
        return []
    rows = [[g, *[fmt_small(doc["setup_s"].get(n, {}).get(g)) for n in names]] for g in groups]
    return [
        "## Setup (not timed in any figure), seconds",
        "",
        markdown_table(["users and rooms for", *names], rows),
        "",
    ]


# ---------------------------------------------------------------------------- store, scale


def store_markdown(doc: dict[str, Any]) -> str:
    results: dict[str, list[dict[str, Any]]] = doc["results"]
    backends = list(results)
    levels = sorted({s["concurrency"] for stats in results.values() for s in stats})
    lines = [
        f"Storage interface, ops/s (p50 / p99 µs per call); {machine_line(doc['machine'])}; "
        f"run of {doc['started_at']}; command `{doc['command']}`.",
        "",
    ]
    ops = list(dict.fromkeys(s["op"] for stats in results.values() for s in stats))
    for level in levels:
        rows = []
        for op in ops:
            row: list[object] = [f"`{op}`"]
            for backend in backends:
                s = next(
                    (s for s in results[backend] if s["op"] == op and s["concurrency"] == level),
                    None,
                )
                if s is None:
                    row.append("-")
                else:
                    p50, p99 = fmt_small(s["p50_us"]), fmt_small(s["p99_us"])
                    row.append(f"{fmt(s['ops_per_s'])} ({p50} / {p99})")
            rows.append(row)
        lines += [
            f"**{level} task{'s' if level > 1 else ''}**",
            "",
            markdown_table(["operation", *backends], rows),
            "",
        ]
    for backend, reason in doc.get("skipped", {}).items():
        lines.append(f"- {backend} skipped: {reason}")
    return "\n".join(lines).rstrip() + "\n"


def scale_markdown(doc: dict[str, Any]) -> str:
    rows = []
    for backend, sizes in doc["results"].items():
        for r in sizes:
            rows.append(
                [
                    backend,
                    fmt(r["size"]),
                    f"{fmt(r['inserted'])}{'' if r['reached'] else ' (time cap)'}",
                    f"{fmt_small(r['insert_s'])} ({fmt(r['insert_per_s'])}/s)",
                    fmt(r["bytes_per_session"]),
                    f"{fmt(r.get('touch_per_s'))} ({fmt_small(r.get('touch_p50_us'))} µs)",
                    fmt_small(r["idle_tick_p50_us"]),
                    f"{fmt_small(r['sweep_s'])} ({fmt(r['sweep_per_s'])}/s)",
                    f"{fmt_small(r['sweep_batch_mean_ms'])} / {fmt_small(r['sweep_batch_max_ms'])}",
                ]
            )
    headers = [
        "backend",
        "sessions",
        "inserted",
        "insert s (rate)",
        "bytes/session",
        "touch/s (p50)",
        "idle tick µs",
        "sweep all s (rate)",
        "sweep batch ms mean / max",
    ]
    return (
        f"Live sessions at scale; {machine_line(doc['machine'])}; run of {doc['started_at']}; "
        f"command `{doc['command']}`.\n\n" + markdown_table(headers, rows) + "\n"
    )
