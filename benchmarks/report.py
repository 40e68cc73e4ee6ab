"""Reporting: number formats, Markdown tables, PNG charts (matplotlib, Agg), percentiles,
and the signal handling that lets a run unwind and clean up."""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


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
        present = [v for values in panel.series.values() for v in values if v and v > 0]
        if panel.log and present:
            ax.set_yscale("log")
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


def distribution_chart(
    path: Path, title: str, panels: Sequence[tuple[str, dict[str, Sequence[float]]]], xlabel: str
) -> Path:
    """Latency distributions: one panel per scenario, one empirical CDF per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(2, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    for index, (panel_title, series) in enumerate(panels):
        ax = axes[index // columns][index % columns]
        for name, values in series.items():
            data = sorted(v for v in values if v > 0)
            if not data:
                continue
            ys = [(i + 1) / len(data) for i in range(len(data))]
            ax.step(data, ys, where="post", label=f"{name} (n={len(data)})")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of listeners woken")
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
