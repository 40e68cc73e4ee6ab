"""What every Redis store shares: the client, the key names, the scripts, and the edge
where driver exceptions become `backends.errors` exceptions.

Deadlines. Every store method as a whole (retries included) has a deadline,
`StorageTimeouts.operation_ms`; each reply also has coredis' own `stream_timeout`.
Either way the caller gets BackendUnavailable, and every pooled connection is dropped:
a connection that missed a reply may be across a partition that never heals (a silent
peer breaks no TCP timer), and coredis would keep multiplexing new requests onto it.
The next operation connects afresh, within the connect timeout. A command already sent
may still run on the server after the caller heard 503 (as with any lost reply).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

import coredis
import coredis.exceptions
import trio

from backends.errors import BackendUnavailable, StorageError
from backends.redis.keys import Keys
from backends.redis.scripts import Scripts

_T = TypeVar("_T")


class RedisContext:
    """One open connection pool under one key prefix, shared by the stores."""

    def __init__(
        self, client: coredis.Redis[str], keys: Keys, *, timeout_s: float = math.inf
    ) -> None:
        self.client = client
        self.keys = keys
        self.scripts = Scripts(client)
        self.closed = False
        self.timeout_s = timeout_s

    def drop_connections(self) -> None:
        """Invalidate every pooled connection (requests still waiting on them fail with
        a ConnectionError); new ones are opened on demand."""
        self.client.connection_pool.disconnect()

    async def run(self, call: ScriptCall[_T]) -> _T:
        """Run a call's script with its KEYS and ARGV, and parse the reply."""
        reply: object = await self.scripts[call.script](keys=call.keys, args=call.args)
        return call.parse(reply)


@dataclass(frozen=True, slots=True)
class ScriptCall(ABC, Generic[_T]):
    """One call of the script `lua/<script>.lua`: its KEYS and ARGV, built by the
    subclass's `build` from named, typed parameters in the layout the script's header
    describes, and `parse`, which makes the script's reply (an `object`) a `_T`,
    raising `unexpected_reply` (StorageError) for a shape the script never returns.
    Each subclass sits next to the store that uses it."""

    script: ClassVar[str]
    keys: list[str]
    args: list[str]

    @abstractmethod
    def parse(self, reply: object) -> _T:
        """The script's reply as a `_T`."""


class RedisStore:
    def __init__(self, ctx: RedisContext) -> None:
        self._ctx = ctx
        self._r = ctx.client
        self._k = ctx.keys

    async def _earliest_deadline(self, zset: str) -> int | None:
        """The lowest score of a deadline set (its first member: O(log n)), or None."""
        first = await self._r.zrange(zset, 0, 0, withscores=True)
        return int(first[0].score) if first else None


_S = TypeVar("_S", bound=RedisStore)
_P = ParamSpec("_P")
_R = TypeVar("_R")
_Method = Callable[Concatenate[_S, _P], Awaitable[_R]]
_Wrapped = Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]

# A lost or refused connection is retried this often (idempotent operations only).
_RETRY_DELAYS_S = (0.01, 0.05)


def _edge(method: _Method[_S, _P, _R], *, retry: bool) -> _Wrapped[_S, _P, _R]:
    @functools.wraps(method)
    async def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        ctx = self._ctx
        with trio.move_on_after(ctx.timeout_s):
            try:
                return await _attempts(ctx, functools.partial(method, self, *args, **kwargs), retry)
            except BackendUnavailable:
                # coredis reports a connection attempt cancelled under it as a
                # ConnectionError: a cancelled caller hears Cancelled instead (and one
                # past the deadline, the deadline's error below).
                await trio.lowlevel.checkpoint_if_cancelled()
                raise
        ctx.drop_connections()
        # A caller cancelled meanwhile hears that rather than our error.
        await trio.lowlevel.checkpoint_if_cancelled()
        raise BackendUnavailable(f"Redis did not answer within {ctx.timeout_s:g} s")

    return wrapper


async def _attempts(ctx: RedisContext, call: Callable[[], Awaitable[_R]], retry: bool) -> _R:
    delays = iter(_RETRY_DELAYS_S if retry else ())
    while True:
        if ctx.closed:
            raise StorageError("the Redis storage is closed")
        try:
            return await call()
        except StorageError:
            raise
        except coredis.exceptions.ConnectionError as exc:
            delay = next(delays, None)
            if delay is None:
                raise BackendUnavailable(f"Redis unavailable: {exc}") from exc
        except TimeoutError as exc:  # a reply later than coredis' stream_timeout
            ctx.drop_connections()
            raise BackendUnavailable(f"Redis unavailable: {exc}") from exc
        except OSError as exc:
            raise BackendUnavailable(f"Redis unavailable: {exc}") from exc
        except coredis.exceptions.RedisError as exc:
            raise StorageError(f"Redis error: {exc}") from exc
        await trio.sleep(delay)


def once(method: _Method[_S, _P, _R]) -> _Wrapped[_S, _P, _R]:
    """Run a store method so that only `backends.errors` exceptions leave it.

    Unreachable server, lost connection, no answer by the deadline ->
    BackendUnavailable; any other driver error (a script error, an unexpected reply)
    -> StorageError. Cancellation (a BaseException) passes through untouched.

    Never retried: if the connection drops after a write was sent, the write may or
    may not have happened, and repeating it could report Conflict for our own write.
    (The client is built with coredis' retries off for the same reason.)
    """
    return _edge(method, retry=False)


def idempotent(method: _Method[_S, _P, _R]) -> _Wrapped[_S, _P, _R]:
    """Like `once`, but a lost or refused connection is retried (twice, briefly): for
    reads and for writes whose repetition changes nothing. Timeouts are not retried."""
    return _edge(method, retry=True)


def unexpected_reply(reply: object) -> StorageError:
    """The error for a script reply of a shape its script never returns."""
    return StorageError(f"unexpected reply from Redis: {reply!r}")


def reply_int(reply: object) -> int:
    """A script's integer reply (a Lua number, or its decimal text)."""
    if isinstance(reply, bool) or not isinstance(reply, int | str | bytes):
        raise unexpected_reply(reply)
    try:
        return int(reply)
    except ValueError as exc:
        raise unexpected_reply(reply) from exc


def reply_flag(reply: object) -> bool:
    """A script's 0/1 reply."""
    if isinstance(reply, bool) or reply not in (0, 1):
        raise unexpected_reply(reply)
    return reply == 1


def reply_list(reply: object) -> list[object]:
    """A script's table reply."""
    if not isinstance(reply, list | tuple):
        raise unexpected_reply(reply)
    return list(reply)
