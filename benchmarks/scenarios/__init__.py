"""The HTTP scenarios: the same code for every target, setup outside the timed window.

Kinds:
- throughput (closed loop, `connections` connections with one user each, for
  `duration_s` after a `warmup_s` warm-up): versions, whoami, typing, presence, send,
  login, session_churn;
- wake (listeners long-poll /sync in one room; a writer makes one change per round;
  latency of each listener from the START of the writer's request to the response
  that carries the change, and from the writer's response): wake_typing,
  wake_message (50 listeners), fanout_presence (200 listeners);
- chat: a few senders (typing on, message, typing off, closed loop) and many readers
  (long-poll /sync, and every 10th response a /messages page), for `duration_s`.

`setup()` builds a scenario's users and rooms once per target (timed and reported
apart); `measure()` runs one round on that fixture and returns a JSON-ready dict.
"""

from benchmarks.scenarios.chat import measure_chat
from benchmarks.scenarios.core import (
    CHAT,
    LONG_POLL_MS,
    SCENARIOS,
    THROUGHPUT,
    WAKE,
    Fixture,
    Params,
    fixture_key,
    kind_of,
    setup,
    unsupported,
)
from benchmarks.scenarios.dispatch import measure
from benchmarks.scenarios.throughput import LEAK_WAIT_S, measure_throughput
from benchmarks.scenarios.wake import (
    Match,
    measure_wake,
    message_match,
    presence_match,
    typing_match,
)

__all__ = [
    "CHAT",
    "LEAK_WAIT_S",
    "LONG_POLL_MS",
    "SCENARIOS",
    "THROUGHPUT",
    "WAKE",
    "Fixture",
    "Match",
    "Params",
    "fixture_key",
    "kind_of",
    "measure",
    "measure_chat",
    "measure_throughput",
    "measure_wake",
    "message_match",
    "presence_match",
    "setup",
    "typing_match",
    "unsupported",
]
