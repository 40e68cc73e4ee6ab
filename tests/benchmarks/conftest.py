"""Smoke tests of the benchmark tool: every sub-command for a second or two against the
memory backend (never Synapse), checking the files it writes, not its figures."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bench_smoke: a short smoke run of `python -m benchmarks` (seconds)"
    )


@pytest.fixture(autouse=True)
def _restore_signals() -> Iterator[None]:
    """The tool turns SIGTERM into SIGINT for the run it makes; undo that."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
