"""Client-Server API calls the scenarios need for their setup, on `HttpConn`.

Only standard v3 endpoints (plus our session API, probed with `has_sessions`), so that
any homeserver can be the target. Registration uses the `m.login.dummy` flow, answering
a 401 User-Interactive Auth challenge with its session when a server sends one.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import trio

from benchmarks.httpload import HttpConn, HttpError

CLIENT = "/_matrix/client/v3"
PASSWORD = "bench-password-1"
SETUP_CONCURRENCY = 8

T = TypeVar("T")


class SetupError(RuntimeError):
    """The target refused a setup request: it cannot run this scenario."""


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str
    device_id: str
    localpart: str


def q(value: str) -> str:
    return quote(value, safe="")


def room_path(room_id: str, rest: str) -> str:
    return f"{CLIENT}/rooms/{q(room_id)}/{rest}"


def sync_path(since: str | None, timeout_ms: int, extra: dict[str, str] | None = None) -> str:
    params: dict[str, str] = {"timeout": str(timeout_ms)}
    if since is not None:
        params["since"] = since
    params.update(extra or {})
    return f"{CLIENT}/sync?{urlencode(params)}"


async def expect(
    conn: HttpConn, method: str, path: str, *, token: str | None = None, body: object = None
) -> Any:
    try:
        status, payload = await conn.json(method, path, token=token, body=body)
    except HttpError as exc:
        raise SetupError(str(exc)) from None
    if not 200 <= status < 300:
        raise SetupError(f"{method} {path.split('?')[0]} -> {status}: {payload}")
    return payload


async def register(conn: HttpConn, localpart: str) -> Account:
    body: dict[str, Any] = {
        "username": localpart,
        "password": PASSWORD,
        "auth": {"type": "m.login.dummy"},
    }
    status, payload = await conn.json("POST", f"{CLIENT}/register", body=body)
    if status == 401 and isinstance(payload, dict) and "session" in payload:
        body["auth"] = {"type": "m.login.dummy", "session": payload["session"]}
        status, payload = await conn.json("POST", f"{CLIENT}/register", body=body)
    if status != 200:
        raise SetupError(f"register {localpart} -> {status}: {payload}")
    return Account(payload["user_id"], payload["access_token"], payload["device_id"], localpart)


async def gather(
    count: int, make: Callable[[int, HttpConn], Awaitable[T]], host: str, port: int
) -> list[T]:
    """make(i, conn) for i in range(count), SETUP_CONCURRENCY at a time, in order."""
    results: dict[int, T] = {}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        conn = HttpConn(host, port)
        try:
            while next_index < count:
                index = next_index
                next_index += 1
                results[index] = await make(index, conn)
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(min(SETUP_CONCURRENCY, count)):
            nursery.start_soon(worker)
    return [results[i] for i in range(count)]


async def register_many(host: str, port: int, prefix: str, count: int) -> list[Account]:
    tag = secrets.token_hex(3)

    async def one(index: int, conn: HttpConn) -> Account:
        return await register(conn, f"{prefix}{tag}x{index}")

    return await gather(count, one, host, port)


async def create_room(conn: HttpConn, owner: Account, **extra: Any) -> str:
    body = {"preset": "public_chat", "name": "benchmark room", **extra}
    reply = await expect(conn, "POST", f"{CLIENT}/createRoom", token=owner.token, body=body)
    room_id: str = reply["room_id"]
    return room_id


async def join_all(host: str, port: int, room_id: str, accounts: Sequence[Account]) -> None:
    async def one(index: int, conn: HttpConn) -> None:
        await expect(
            conn, "POST", f"{CLIENT}/join/{q(room_id)}", token=accounts[index].token, body={}
        )

    await gather(len(accounts), one, host, port)


async def initial_syncs(host: str, port: int, accounts: Sequence[Account]) -> list[str]:
    """Each account's next_batch after an initial sync and one catch-up."""

    async def one(index: int, conn: HttpConn) -> str:
        token = accounts[index].token
        first = await expect(conn, "GET", sync_path(None, 0), token=token)
        again = await expect(conn, "GET", sync_path(first["next_batch"], 0), token=token)
        since: str = again["next_batch"]
        return since

    return await gather(len(accounts), one, host, port)


async def has_sessions(conn: HttpConn, account: Account) -> bool:
    """Whether the target has our session API (start one, then end it)."""
    try:
        status, payload = await conn.json(
            "POST", f"{CLIENT}/sessions", token=account.token, body={}
        )
    except HttpError:
        return False
    if status != 200 or not isinstance(payload, dict) or "session_id" not in payload:
        return False
    await expect(
        conn, "DELETE", f"{CLIENT}/sessions/{q(payload['session_id'])}", token=account.token
    )
    return True
