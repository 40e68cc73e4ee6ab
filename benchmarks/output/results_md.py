"""benchmarks/RESULTS.md and the README's backend table generated from it."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from benchmarks.output.files import HEADLINE_MARK, RESULTS_MD
from benchmarks.report import markdown_table, repo_relative
from benchmarks.stores import BACKENDS


def write_results_md(
    markdown: str, charts: Sequence[Path], json_path: Path, path: Path = RESULTS_MD
) -> Path:
    """benchmarks/RESULTS.md: the latest full comparison (charts linked from results/)."""
    text = markdown
    for chart in charts:
        text = text.replace(
            f"]({chart.name})", f"]({os.path.relpath(chart.resolve(), path.resolve().parent)})"
        )
    header = (
        "# Latest full comparison\n\n"
        "Written by `python -m benchmarks compare --write-results`; do not edit by hand. "
        f"Raw figures: `{repo_relative(json_path)}`.\n\n"
    )
    path.write_text(header + text)
    return path


# ---------------------------------------------------------------------------- README table


_ROW = re.compile(r"^\|(.*)\|\s*$")


def parse_headline(text: str) -> tuple[list[str], list[list[str]]]:
    """The headline table of a RESULTS.md: its header cells and rows."""
    if HEADLINE_MARK not in text:
        raise ValueError("no headline table in RESULTS.md (run `compare --write-results`)")
    after = text.split(HEADLINE_MARK, 1)[1].lstrip("\n").splitlines()
    table = []
    for line in after:
        match = _ROW.match(line.strip())
        if not match:
            break
        table.append([cell.strip() for cell in match.group(1).split("|")])
    if len(table) < 3:
        raise ValueError("the headline table in RESULTS.md is empty")
    return table[0], table[2:]


def readme_table(text: str) -> str:
    """The README's backend table: our backends and Synapse from RESULTS.md's headline."""
    headers, rows = parse_headline(text)
    keep = [i for i, h in enumerate(headers) if h in BACKENDS or h.startswith("synapse")]
    ours = [i for i in keep if headers[i] in BACKENDS]
    ordered = [i for i in keep if i not in ours] + sorted(
        ours, key=lambda i: BACKENDS.index(headers[i])
    )
    date = re.search(r"Run of (\S+)", text)
    machine = re.search(r"Machine: ([^;]+);", text)
    out_rows = [[f"{r[0]} ({r[1]})", *[r[i] for i in ordered]] for r in rows]
    where = machine.group(1) if machine else "one machine"
    when = date.group(1)[:10] if date else "see benchmarks/RESULTS.md"
    lines = [
        f"Measured with `homeserver bench compare` on {where} ({when}); in brackets: times "
        "better than Synapse (above 1 is better). Full figures and charts: "
        "`benchmarks/RESULTS.md`.",
        "",
        markdown_table(["scenario", *[headers[i] for i in ordered]], out_rows),
    ]
    return "\n".join(lines) + "\n"
