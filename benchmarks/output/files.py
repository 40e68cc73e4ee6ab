"""Where result files go, and the JSON document (everything, raw per round)."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# benchmarks/ (this module is benchmarks/output/files.py).
BENCH_DIR = Path(__file__).resolve().parent.parent
DEFAULT_OUT = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
SCHEMA_VERSION = 1
HEADLINE_MARK = "<!-- headline table: `python -m benchmarks readme-table` reads it -->"


def utc_stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def command_line(argv: Sequence[str] | None = None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return "python -m benchmarks " + " ".join(shlex.quote(a) for a in args)


def document(
    benchmark: str,
    started_at: datetime,
    machine: dict[str, Any],
    command: str,
    results: dict[str, Any],
    quick: bool,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "benchmark": benchmark,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": quick,
        "machine": machine,
        **results,
    }


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
