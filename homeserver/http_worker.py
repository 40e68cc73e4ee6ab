"""Hypercorn's trio worker, with every connection contained.

`hypercorn.trio.serve` runs each connection as a task of one nursery shared by the
whole server, and a connection task catches only `OSError`: any other exception that
escapes one client's connection (an `h11.LocalProtocolError` after a WebSocket upgrade
followed by a second request, for one) ends every connection and the process. This
module is the same worker (`hypercorn.trio.run.worker_serve`, pinned in pyproject.toml)
with these changes:

- each connection's task catches every `Exception` it raises, logs one line and closes
  that connection only; cancellation still propagates;
- the bare error responses Hypercorn's HTTP/1.1 protocol sends for requests it cannot
  parse (raw non-ASCII bytes in the target, no `Host` header, headers over the limit)
  carry a Matrix JSON body (`errcode`, `error`) instead of an empty one;
- bytes after a request with `Connection: close` are ignored, as RFC 9112 asks, instead
  of answering them with a 400 that went out in place of the request's own answer;
- closing a connection waits for a send in progress (Hypercorn's own EOF raced it).

Only what `homeserver.server` uses is supported: plain-TCP binds, no TLS, no QUIC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, parse_socket_addr, raise_shutdown, repr_socket_addr
from hypercorn.utils import wrap_app as hypercorn_wrap_app

log = logging.getLogger("homeserver.http")

# What a client is told when Hypercorn refuses a request before the app sees it.
_PROTOCOL_ERRORS: dict[int, tuple[str, str]] = {
    400: ("M_UNRECOGNIZED", "Malformed HTTP request"),
    413: ("M_TOO_LARGE", "Request too large"),
    414: ("M_TOO_LARGE", "Request target too long"),
    431: ("M_TOO_LARGE", "Request headers too large"),
}


def protocol_error_body(status: int) -> bytes:
    """The Matrix error body for a request refused at the HTTP layer."""
    errcode, message = _PROTOCOL_ERRORS.get(status, ("M_UNKNOWN", "HTTP protocol error"))
    return json.dumps({"errcode": errcode, "error": message}).encode()


class _H11Connection(h11.Connection):
    """h11's server connection, ignoring what a client sends after a request with
    `Connection: close` (RFC 9112 section 9.6). h11 raises on such bytes, and Hypercorn's
    400 for that went out before, and instead of, the answer to the request itself."""

    def receive_data(self, data: bytes) -> None:
        if data and self.their_state is h11.MUST_CLOSE:
            return
        super().receive_data(data)

    def next_event(self) -> Any:
        if self.their_state is h11.MUST_CLOSE and self.trailing_data[0]:
            # Bytes that arrived with the request itself (pipelined behind it).
            self._receive_buffer = type(self._receive_buffer)()
            return h11.NEED_DATA
        return super().next_event()


class _MatrixErrorsH11Protocol(H11Protocol):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.connection = _H11Connection(
            h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size
        )

    async def _send_error_response(self, status_code: int) -> None:
        body = protocol_error_body(status_code)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


class _ContainedTCPServer(TCPServer):
    """One connection; an error in it ends it and nothing else."""

    async def run(self) -> None:
        peer = "?"
        try:
            peer = repr_socket_addr(self.stream.socket.family, self.stream.socket.getpeername())
            await self._serve()
        except* Exception as group:
            # A client can cause these at will: one line, no traceback (unless debugging).
            first = group.exceptions[0]
            log.warning(
                "connection from %s closed after an error: %s: %s",
                peer,
                type(first).__name__,
                first,
                exc_info=group if log.isEnabledFor(logging.DEBUG) else None,
            )
        finally:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _close(self) -> None:
        # Hypercorn sends EOF outside the lock that serialises sends: a concurrent send
        # then failed with BusyResourceError (a client closing its side mid-request).
        if self.send_lock.statistics().owner is trio.lowlevel.current_task():
            await super()._close()
        else:
            async with self.send_lock:
                await super()._close()

    async def _serve(self) -> None:
        # TCPServer.run for a plain TCP stream, with our HTTP/1.1 protocol.
        socket = self.stream.socket
        try:
            client = parse_socket_addr(socket.family, socket.getpeername())
            server = parse_socket_addr(socket.family, socket.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    False,
                    client,
                    server,
                    self.protocol_send,
                    "http/1.1",
                )
                if isinstance(self.protocol.protocol, H11Protocol):
                    self.protocol.protocol = _MatrixErrorsH11Protocol(
                        self.app,
                        self.config,
                        self.context,
                        task_group,
                        ConnectionState(self.state),
                        False,
                        client,
                        server,
                        self.protocol_send,
                    )
                await self.protocol.initiate()
                await self.idle_task.restart(self._task_group, self._idle_timeout)
                await self._read_data()
        except OSError:
            pass
        finally:
            await self._close()


async def serve(
    app: Any,
    config: HypercornConfig,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI `app` on `config.bind` until `shutdown_trigger` returns, then
    drain open connections for up to `config.graceful_timeout`. Reports the bound
    addresses through `task_status`."""
    wrapped: AppWrapper = hypercorn_wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)

    async def handle(stream: trio.SocketStream) -> None:
        state = ConnectionState(lifespan_state.copy())
        # TCPServer's annotation names SSLStream; it takes plain streams as well.
        await _ContainedTCPServer(wrapped, config, context, state, cast(Any, stream)).run()

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            sockets = config.create_sockets()
            listeners: list[trio.SocketListener] = []
            binds: list[str] = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            task_status.started(binds)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    nursery.start_soon(
                        partial(
                            trio.serve_listeners, handle, listeners, handler_nursery=server_nursery
                        )
                    )
                    await trio.sleep_forever()
            except* ShutdownError:
                pass
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
