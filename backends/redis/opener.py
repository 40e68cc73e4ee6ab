"""`open_redis(url)`: the Redis backend's opener.

URL: `redis://[user:password@]host[:port][/db][?prefix=NAME]` (or `rediss://` for TLS).
Every key lives under `NAME:` (default `hs`), so several servers or test runs can
share one database. Other query parameters go to coredis unchanged (e.g.
`max_connections`, or `connect_timeout` and `stream_timeout` in seconds, which win
over the `StorageTimeouts` given to the opener).
Needs Redis 7.0 or newer (read-only scripts run with EVALSHA_RO).

Connections get TCP keepalives and (Linux) a TCP user timeout of the operation
timeout, so a real partition breaks a connection with unacknowledged data; a peer that
ACKs and stays silent is caught by the deadlines (see `backends.redis.base`).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import coredis
import coredis.exceptions
import trio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from coredis.connection import TCPConnection
from coredis.retry import NoRetryPolicy

from backends.errors import BackendUnavailable, StorageError
from backends.protocols import Storage
from backends.redis.base import RedisContext
from backends.redis.keys import Keys
from backends.redis.presence import RedisPresenceStore
from backends.redis.rate_limits import RedisRateLimitStore
from backends.redis.rooms import RedisRoomStore
from backends.redis.server_events import RedisServerEventStore
from backends.redis.sessions import RedisSessionStore
from backends.redis.typing_state import RedisTypingStore
from backends.redis.user_data import (
    RedisAccountDataStore,
    RedisFilterStore,
    RedisTransactionStore,
)
from backends.redis.users import RedisDeviceStore, RedisUserStore
from backends.timeouts import StorageTimeouts

DEFAULT_PREFIX = "hs"
_SCHEMES = ("redis", "rediss")
# TCP keepalives: an idle pooled connection across a partition is found dead.
_KEEPALIVE_IDLE_S = 30
_KEEPALIVE_INTERVAL_S = 10
_KEEPALIVE_COUNT = 3


@dataclass(frozen=True, slots=True)
class RedisUrl:
    client_url: str  # what coredis gets: the URL without our own parameters
    prefix: str
    description: str  # the URL without credentials


def parse_redis_url(url: str) -> RedisUrl:
    """Split a storage URL into the coredis URL, the key prefix and a printable form.

    Raises ValueError for a URL this backend cannot use."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"not a Redis URL (expected redis:// or rediss://): {parts.scheme}://")
    if not parts.hostname:
        raise ValueError("Redis URL without a host")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix:
        raise ValueError("Redis URL with an empty prefix")
    rest = [(name, value) for name, value in query if name != "prefix"]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise ValueError(f"Redis URL with an invalid port: {exc}") from exc
    db = dict(rest).get("db") or parts.path.strip("/") or "0"
    return RedisUrl(
        client_url=urlunsplit(parts._replace(query=urlencode(rest))),
        prefix=prefix,
        description=f"{parts.scheme}://{host}:{port}/{db}?{urlencode({'prefix': prefix})}",
    )


class _TCPConnection(TCPConnection):
    """coredis 6.9 creates a connection's six memory streams in `__init__` but closes
    them only once connected: a refused, timed-out or cancelled connect leaks them
    (a ResourceWarning per stream, an error under `filterwarnings = error`)."""

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        try:
            await super().run(task_status=task_status)
        finally:
            for stream in (
                self._write_buffer_in,
                self._write_buffer_out,
                self._push_message_buffer_in,
                self._push_message_buffer_out,
                self._streamed_message_buffer_in,
                self._streamed_message_buffer_out,
            ):
                stream.close()  # idempotent


async def _persistence_warnings(client: coredis.Redis[str], description: str) -> tuple[str, ...]:
    """A warning when the server keeps nothing on disk (no AOF): a Redis restart would
    lose every acknowledged write. RDB snapshots alone lose the writes since the last."""
    try:
        settings = await client.config_get(["appendonly"])
    except (coredis.exceptions.RedisError, TimeoutError):
        # CONFIG may be disabled (managed Redis); we cannot tell, so we do not warn.
        return ()
    if str(settings.get("appendonly", "")).lower() == "yes":
        return ()
    return (
        f"Redis at {description} has append-only persistence off (appendonly no): "
        "a Redis restart loses data; set appendonly yes (see README, Storage backends)",
    )


def _keepalive_options(timeouts: StorageTimeouts) -> dict[int, int]:
    options = {
        getattr(socket, "TCP_KEEPIDLE", None): _KEEPALIVE_IDLE_S,
        getattr(socket, "TCP_KEEPINTVL", None): _KEEPALIVE_INTERVAL_S,
        getattr(socket, "TCP_KEEPCNT", None): _KEEPALIVE_COUNT,
        # Linux: unacknowledged data breaks the connection after this long.
        getattr(socket, "TCP_USER_TIMEOUT", None): timeouts.operation_ms,
    }
    return {name: value for name, value in options.items() if name is not None}


@asynccontextmanager
async def open_redis(
    url: str, *, timeouts: StorageTimeouts | None = None
) -> AsyncIterator[Storage]:
    """Connect to Redis (checked with a PING) and yield the storage.

    The coredis client (its connection pool and the tasks reading its connections)
    lives exactly as long as this context. Raises ValueError for an unusable URL and
    BackendUnavailable if the server does not answer (within `timeouts`, default
    `StorageTimeouts()`, which also bound every operation).
    """
    config = parse_redis_url(url)
    limits = timeouts or StorageTimeouts()
    client: coredis.Redis[str] = coredis.Redis.from_url(
        config.client_url,
        decode_responses=True,
        decode_components=True,
        # Retrying is the stores' decision (only idempotent operations retry).
        retry_policy=NoRetryPolicy(),
        # Query parameters of the URL win over these.
        connect_timeout=limits.connect_s,
        stream_timeout=limits.operation_s,
        pool_timeout=limits.operation_s,
    )
    pool = client.connection_pool
    pool.connection_class = _TCPConnection
    # Passed to _TCPConnection (coredis' TypedDict of connection parameters leaves
    # out those only its TCP connections take).
    connection_kwargs = cast(dict[str, Any], pool.connection_kwargs)
    connection_kwargs["socket_keepalive"] = True
    connection_kwargs["socket_keepalive_options"] = _keepalive_options(limits)
    try:
        async with client:
            try:
                # Connecting, the handshake's round trips and the PING, as one bound.
                with trio.fail_after(limits.connect_s + limits.operation_s):
                    await client.ping()
            except (
                coredis.exceptions.ConnectionError,
                TimeoutError,
                trio.TooSlowError,
                OSError,
            ) as exc:
                raise BackendUnavailable(
                    f"Redis unavailable at {config.description}: "
                    f"{exc or 'no answer within the timeouts'}"
                ) from exc
            except coredis.exceptions.RedisError as exc:
                raise StorageError(f"Redis error at {config.description}: {exc}") from exc
            ctx = RedisContext(client, Keys(config.prefix), timeout_s=limits.operation_s)
            warnings: tuple[str, ...] = ()
            with trio.move_on_after(limits.operation_s):
                warnings = await _persistence_warnings(client, config.description)

            async def close() -> None:
                # The stores refuse work from now on; the connections themselves close
                # when this context exits (they belong to its task group).
                ctx.closed = True

            rooms = RedisRoomStore(ctx)
            # Stores written before the joined-member zsets existed get them now.
            await rooms.backfill_joined()
            try:
                yield Storage(
                    description=config.description,
                    users=RedisUserStore(ctx),
                    devices=RedisDeviceStore(ctx),
                    rooms=rooms,
                    account_data=RedisAccountDataStore(ctx),
                    filters=RedisFilterStore(ctx),
                    txns=RedisTransactionStore(ctx),
                    sessions=RedisSessionStore(ctx),
                    typing=RedisTypingStore(ctx),
                    presence=RedisPresenceStore(ctx),
                    rate_limits=RedisRateLimitStore(ctx),
                    server_events=RedisServerEventStore(ctx),
                    closer=close,
                    warnings=warnings,
                )
            finally:
                ctx.closed = True
    except BaseExceptionGroup as group:
        # The client's task group (a Trio nursery) wraps whatever crosses it: the
        # caller's own exceptions from the `async with` body and our BackendUnavailable.
        # An opener should not change the type of what passes through it, so a lone
        # exception is unwrapped (keeping its own cause).
        if len(group.exceptions) == 1:
            inner = group.exceptions[0]
            raise inner from inner.__cause__
        raise
