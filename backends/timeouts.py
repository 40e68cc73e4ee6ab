"""How long the storage layer waits for its database server.

A silent server (a network partition: packets dropped, no reset) is not an unreachable
one: without these bounds a request waits for as long as the partition lasts. Every
backend applies them its own way (see `backends.sql.database`, `backends.redis.base`);
past them an operation raises BackendUnavailable.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CONNECT_TIMEOUT_MS = 5000
DEFAULT_OPERATION_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class StorageTimeouts:
    """`connect_ms`: opening one connection (TCP connect and the protocol's handshake).
    PostgreSQL counts it in whole seconds, at least 2 (libpq's rule).

    `operation_ms`: one storage operation as a whole, from the call to its answer:
    waiting for a free connection, connecting, every round trip, the commit. Also the
    server-side statement, lock and idle-in-transaction limits on PostgreSQL, the
    per-reply timeout on Redis and the TCP user timeout on both.
    """

    connect_ms: int = DEFAULT_CONNECT_TIMEOUT_MS
    operation_ms: int = DEFAULT_OPERATION_TIMEOUT_MS

    def __post_init__(self) -> None:
        for name in ("connect_ms", "operation_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StorageTimeouts.{name} must be a positive integer: {value!r}")

    @property
    def connect_s(self) -> float:
        return self.connect_ms / 1000

    @property
    def operation_s(self) -> float:
        return self.operation_ms / 1000
