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
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import coredis
import coredis.exceptions
import trio
from coredis.commands.script import Script

from backends.errors import BackendUnavailable, StorageError
from backends.redis import policy_scripts, scripts, session_scripts
from backends.redis.keys import Keys


class Scripts:
    """The Lua scripts, bound to one client (EVALSHA, loading the script on NOSCRIPT)."""

    def __init__(self, client: coredis.Redis[str]) -> None:
        def bind(source: str, *, readonly: bool = False) -> Script[str]:
            return Script(client, source, readonly=readonly)

        self.create_hash = bind(scripts.CREATE_HASH)
        self.create_user = bind(scripts.CREATE_USER)
        self.set_field_if_exists = bind(scripts.SET_FIELD_IF_EXISTS)
        self.add_device_with_token = bind(scripts.ADD_DEVICE_WITH_TOKEN)
        self.delete_devices = bind(scripts.DELETE_DEVICES)
        self.append_events = bind(scripts.APPEND_EVENTS)
        self.forget_room = bind(scripts.FORGET_ROOM)
        self.put_account_data = bind(scripts.PUT_ACCOUNT_DATA)
        self.create_filter = bind(scripts.CREATE_FILTER)
        self.hgetall_each = bind(scripts.HGETALL_EACH, readonly=True)
        self.room_events = bind(scripts.ROOM_EVENTS, readonly=True)
        self.current_state = bind(scripts.CURRENT_STATE, readonly=True)
        self.state_event = bind(scripts.STATE_EVENT, readonly=True)
        self.account_data_since = bind(scripts.ACCOUNT_DATA_SINCE, readonly=True)

        s = session_scripts
        self.authenticate = bind(s.AUTHENTICATE, readonly=True)
        self.start_session = bind(s.START_SESSION)
        self.touch_session = bind(s.TOUCH_SESSION)
        self.set_session_presence = bind(s.SET_SESSION_PRESENCE)
        self.end_session = bind(s.END_SESSION)
        self.end_device_sessions = bind(s.END_DEVICE_SESSIONS)
        self.take_expired_sessions = bind(s.TAKE_EXPIRED_SESSIONS)
        self.set_typing = bind(s.SET_TYPING)
        self.clear_typing = bind(s.CLEAR_TYPING)
        self.clear_session_typing = bind(s.CLEAR_SESSION_TYPING)
        self.take_expired_typing = bind(s.TAKE_EXPIRED_TYPING)
        self.put_presence = bind(s.PUT_PRESENCE)
        self.set_members_hgetall = bind(s.SET_MEMBERS_HGETALL, readonly=True)
        self.get_typing = bind(s.GET_TYPING, readonly=True)

        p = policy_scripts
        self.take_token = bind(p.TAKE_TOKEN)
        self.add_server_event = bind(p.ADD_SERVER_EVENT)
        self.server_events = bind(p.SERVER_EVENTS, readonly=True)


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

    async def run(self, script: Script[str], keys: Sequence[str], args: Sequence[str]) -> Any:
        """Run a script; its reply is untyped (the caller knows the script's shape)."""
        return await script(keys=keys, args=args)


class RedisStore:
    def __init__(self, ctx: RedisContext) -> None:
        self._ctx = ctx
        self._r = ctx.client
        self._k = ctx.keys
        self._scripts = ctx.scripts


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
