"""Result files: JSON (everything, raw per round), Markdown tables, PNG charts,
benchmarks/RESULTS.md and the README's backend table generated from it."""

from benchmarks.output.charts import compare_charts, scale_chart, store_chart
from benchmarks.output.files import (
    BENCH_DIR,
    DEFAULT_OUT,
    HEADLINE_MARK,
    RESULTS_MD,
    SCHEMA_VERSION,
    command_line,
    document,
    utc_stamp,
    write_json,
)
from benchmarks.output.markdown import (
    compare_markdown,
    headline_value,
    scale_markdown,
    store_markdown,
)
from benchmarks.output.results_md import parse_headline, readme_table, write_results_md

__all__ = [
    "BENCH_DIR",
    "DEFAULT_OUT",
    "HEADLINE_MARK",
    "RESULTS_MD",
    "SCHEMA_VERSION",
    "command_line",
    "compare_charts",
    "compare_markdown",
    "document",
    "headline_value",
    "parse_headline",
    "readme_table",
    "scale_chart",
    "scale_markdown",
    "store_chart",
    "store_markdown",
    "utc_stamp",
    "write_json",
    "write_results_md",
]
