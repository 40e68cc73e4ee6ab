"""Reporting for the backend, session and invite benchmarks: the machine's state, a
quiet-machine wait, Markdown tables, JSON + Markdown files and PNG bar charts.

Every result file is `results/<name>_<UTC timestamp>.{json,md,png}`.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.http_bench import machine_info, source_revision
from benchmarks.procs import busy_cores, system_busy_s

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
QUIET_LOADAVG = 0.5
QUIET_POLL_S = 10.0


def utc_stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def loadavg() -> list[float]:
    try:
        with open("/proc/loadavg") as fh:
            return [float(v) for v in fh.read().split()[:3]]
    except OSError:
        return []


def wait_for_quiet(max_wait_s: float, threshold: float = QUIET_LOADAVG) -> dict[str, Any]:
    """Poll /proc/loadavg until its 1-minute figure is below `threshold`, for at most
    `max_wait_s` (0: just look). Returns what was seen."""
    started = time.monotonic()
    first = loadavg()
    current = first
    while current and current[0] >= threshold and time.monotonic() - started < max_wait_s:
        print(
            f"waiting for a quiet machine: load {current[0]:.2f} >= {threshold} "
            f"({time.monotonic() - started:.0f}/{max_wait_s:.0f} s)",
            file=sys.stderr,
        )
        time.sleep(min(QUIET_POLL_S, max(0.1, max_wait_s - (time.monotonic() - started))))
        current = loadavg()
    return {
        "loadavg_at_start": first,
        "loadavg_before_run": current,
        "waited_s": round(time.monotonic() - started, 1),
        "quiet": bool(current) and current[0] < threshold,
        "quiet_threshold": threshold,
    }


@dataclass
class Run:
    """One benchmark run: its name, settings, machine state and where it writes."""

    name: str
    out: Path
    quick: bool
    settings: dict[str, Any]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    machine: dict[str, Any] = field(default_factory=dict)
    # (wall, machine busy CPU-s, this process's and its children's CPU-s) at the start.
    _cpu_start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def stamp(self) -> str:
        return utc_stamp(self.started_at)

    def path(self, suffix: str) -> Path:
        return self.out / f"{self.name}_{self.stamp}{suffix}"

    def begin(self, wait_quiet_s: float) -> None:
        quiet = wait_for_quiet(wait_quiet_s)
        self.machine = {
            **machine_info(),
            **quiet,
            "busy_cores_before": round(busy_cores(1.0), 2),
        }
        self._cpu_start = (time.monotonic(), system_busy_s(), _own_cpu_s())
        if not self.machine["quiet"]:
            print(
                f"warning: the machine is busy (load {self.machine['loadavg_before_run']}); "
                "figures will be low and noisy",
                file=sys.stderr,
            )

    def header(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": self.quick,
            "source": source_revision(),
            "machine": {**self.machine, "loadavg_after": loadavg(), **self._cpu_during()},
            "settings": self.settings,
        }

    def _cpu_during(self) -> dict[str, float]:
        """Cores busy during the run: ours (this process, its servers and wrk) and the
        rest (PostgreSQL and Redis doing our work, and anything else running)."""
        wall0, busy0, own0 = self._cpu_start
        wall = time.monotonic() - wall0
        if wall0 == 0.0 or wall <= 0:
            return {}
        busy = (system_busy_s() - busy0) / wall
        own = (_own_cpu_s() - own0) / wall
        return {
            "run_wall_s": round(wall, 1),
            "busy_cores_during_run": round(busy, 2),
            "own_cores_during_run": round(own, 2),
            "other_cores_during_run": round(max(0.0, busy - own), 2),
        }

    def write(self, results: Mapping[str, Any], markdown: str) -> list[Path]:
        """Write the JSON (header + results) and the Markdown; returns their paths."""
        self.out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = self.path(".json"), self.path(".md")
        json_path.write_text(json.dumps({**self.header(), **results}, indent=2) + "\n")
        md_path.write_text(markdown + "\n")
        return [json_path, md_path]

    def summary_line(self) -> str:
        m = self.machine
        return (
            f"{m.get('cpus')} CPUs ({m.get('cpu_model') or 'unknown model'}), "
            f"Python {m.get('python')}, load average before the run "
            f"{', '.join(f'{v:.2f}' for v in m.get('loadavg_before_run', []))}, "
            f"{m.get('busy_cores_before')} cores busy before start"
            + (" (quick mode: smoke figures only)" if self.quick else "")
        )


def sigterm_as_sigint() -> None:
    """Make SIGTERM act like Ctrl-C, so runs unwind and clean up. Re-raising SIGINT (rather
    than raising KeyboardInterrupt from a handler) lets Trio deliver it at a safe point
    while `trio.run` is active."""

    def forward(signum: int, frame: object) -> None:
        signal.raise_signal(signal.SIGINT)

    # A shell starts background jobs with SIGINT ignored; Ctrl-C semantics are wanted.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, forward)


def run_main(name: str, body: Callable[[], int], errors: tuple[type[Exception], ...]) -> int:
    """Run a benchmark's body: `errors` (also inside Trio's exception groups) print one
    line and give exit status 1; Ctrl-C or SIGTERM gives 130."""
    sigterm_as_sigint()
    try:
        return body()
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            print(f"{name}: interrupted", file=sys.stderr)
            return 130
        expected = group.subgroup(errors)
        if expected is None or group.subgroup(lambda e: not isinstance(e, errors)):
            raise
        for exc in _leaves(expected):
            print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except errors as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds in all: a smoke check, not figures"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="directory for JSON/Markdown/PNG"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help=f"wait up to S seconds for the 1-min load average to drop below {QUIET_LOADAVG}",
    )


# ---------------------------------------------------------------------------- tables


def fmt(value: object, digits: int = 0) -> str:
    """Numbers with thousands separators; None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def fmt_small(value: float | None) -> str:
    """Like fmt, with decimals for small figures (latencies of a few microseconds)."""
    if value is None:
        return "-"
    if abs(value) < 1:
        return f"{value:.2f}"
    if abs(value) < 10:
        return f"{value:.1f}"
    return fmt(float(value))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; columns whose first value is a number are right-aligned."""
    aligns = []
    for index in range(len(headers)):
        sample = next((row[index] for row in rows if row[index] not in (None, "-")), "")
        numeric = isinstance(sample, int | float) or (
            isinstance(sample, str) and sample.replace(",", "").replace(".", "").isdigit()
        )
        aligns.append("---:" if numeric else "---")
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(aligns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- charts


@dataclass
class Panel:
    """One bar chart: groups along x, one bar per series in each group."""

    title: str
    groups: list[str]
    series: dict[str, list[float | None]]
    ylabel: str
    log: bool = False
    # Written above each bar (default: the value rounded).
    label: Callable[[float], str] = field(default=lambda v: f"{v:,.0f}")


def bar_chart(path: Path, title: str, panels: Sequence[Panel]) -> Path:
    """Grouped bar charts side by side (or stacked when there are more than two)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.4 * rows), squeeze=False)
    for index, panel in enumerate(panels):
        ax = axes[index // columns][index % columns]
        names = list(panel.series)
        width = 0.8 / max(1, len(names))
        for s_index, name in enumerate(names):
            values = panel.series[name]
            xs = [g + (s_index - (len(names) - 1) / 2) * width for g in range(len(panel.groups))]
            heights = [v if v is not None else 0.0 for v in values]
            bars = ax.bar(xs, heights, width, label=name)
            for bar, value in zip(bars, values, strict=True):
                if value is None:
                    continue
                ax.annotate(
                    panel.label(value),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90 if len(names) * len(panel.groups) > 8 else 0,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        ax.set_xticks(range(len(panel.groups)))
        ax.set_xticklabels(panel.groups, fontsize=8)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title, fontsize=10)
        if panel.log:
            ax.set_yscale("log")
        present = [v for values in panel.series.values() for v in values if v]
        if panel.log and present:
            ax.set_ylim(min(present) / 2, max(present) * 8)
        elif present:
            ax.set_ylim(0, max(present) * 1.2)
        ax.grid(axis="y", alpha=0.3)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    shared = all(list(p.series) == list(panels[0].series) for p in panels)
    if shared:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8)
    else:
        for index in range(len(panels)):
            axes[index // columns][index % columns].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.05 if shared else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(pct / 100 * len(sorted_values)) - 1
    return sorted_values[min(len(sorted_values) - 1, max(0, rank))]


def repo_relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path)
