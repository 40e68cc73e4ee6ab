"""The fast path answers exactly as Quart does.

Every request here goes through the ASGI stack live servers use, twice: once through
`HomeserverASGI(app)` (every route served by Quart) and once through
`HomeserverASGI(FastPath(engine, app))` (the hot routes served from ASGI). Status,
headers and body must be the same, and the fast side must not have entered Quart for
a fast route (nor skipped it for anything else).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlencode

import pytest
import trio

from homeserver.app import HomeserverApp
from homeserver.asgi import ASGIApp, HomeserverASGI, Receive, Scope, Send
from homeserver.config import Config
from homeserver.engine import Engine
from homeserver.fastpath import ROUTES, FastPath
from tests.helpers import Api, User, make_config, q

V3 = "/_matrix/client/v3"
# Headers that may differ between two answers for reasons unrelated to the adapter.
_VARYING_HEADERS = {"date"}


@pytest.fixture
def config() -> Config:
    return make_config(max_request_bytes=4096)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def http_scope(
    method: str,
    path: str,
    *,
    query: dict[str, str] | bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Scope:
    """The scope Hypercorn would give the app for this request."""
    raw_query = query if isinstance(query, bytes) else urlencode(query or {}).encode()
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),  # as Hypercorn gives it: decoded
        "raw_path": path.encode(),
        "query_string": raw_query,
        "root_path": "",
        "headers": [
            (b"host", b"test.local"),
            *(
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in (headers or {}).items()
            ),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8008),
        "extensions": {},
    }


async def call(
    app: ASGIApp,
    method: str,
    path: str,
    *,
    query: dict[str, str] | bytes | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunk: int | None = None,
) -> Answer:
    """One request through an ASGI app, as Hypercorn would deliver it (the body in
    chunks of `chunk` bytes if given)."""
    scope = http_scope(method, path, query=query, headers=headers)
    size = chunk or max(1, len(body))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    sent: list[dict[str, Any]] = []
    finished = trio.Event()

    async def receive() -> dict[str, Any]:
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    with trio.fail_after(10):
        await app(scope, cast(Receive, receive), cast(Send, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    names = [k.decode("latin-1").lower() for k, _ in start["headers"]]
    assert len(names) == len(set(names)), names  # no header twice
    return Answer(
        start["status"],
        {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in start["headers"]
            if k.decode("latin-1").lower() not in _VARYING_HEADERS
        },
        json.loads(data) if data else None,
    )


class Sides:
    """The same engine and Quart app behind both ASGI stacks."""

    def __init__(self, engine: Engine, app: HomeserverApp) -> None:
        quart = cast(ASGIApp, app)
        self.quart_calls = 0

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            self.quart_calls += 1
            await quart(scope, receive, send)

        self.quart = HomeserverASGI(quart)
        self.fast = HomeserverASGI(FastPath(engine, counted))

    async def both(
        self, method: str, path: str, *, fast_route: bool = True, **kw: Any
    ) -> tuple[Answer, Answer]:
        by_quart = await call(self.quart, method, path, **kw)
        before = self.quart_calls
        by_fast = await call(self.fast, method, path, **kw)
        entered_quart = self.quart_calls - before
        assert entered_quart == (0 if fast_route else 1), (method, path, entered_quart)
        return by_quart, by_fast

    async def same(
        self,
        method: str,
        path: str,
        *,
        fast_route: bool = True,
        ignore: Callable[[Answer], Answer] | None = None,
        **kw: Any,
    ) -> Answer:
        by_quart, by_fast = await self.both(method, path, fast_route=fast_route, **kw)
        if ignore is not None:
            by_quart, by_fast = ignore(by_quart), ignore(by_fast)
        assert by_fast == by_quart, (method, path, _difference(by_quart, by_fast))
        return by_fast


def _difference(a: Answer, b: Answer) -> str:
    def lines(answer: Answer) -> list[str]:
        text = json.dumps(dataclasses.asdict(answer), indent=1, sort_keys=True)
        return text.splitlines()

    return "\n".join(difflib.unified_diff(lines(a), lines(b), "quart", "fast", lineterm=""))


@pytest.fixture
def sides(engine: Engine, app: HomeserverApp) -> Sides:
    return Sides(engine, app)


def bearer(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.access_token}"}


def without_last_active(answer: Answer) -> Answer:
    """Presence answers carry `last_active_ago`, which moves with the clock."""
    body = dict(answer.body)
    body.pop("last_active_ago", None)
    return Answer(answer.status, answer.headers, body)


async def test_every_fast_route_is_a_quart_route(app: HomeserverApp) -> None:
    """The fast path only serves paths Quart serves with the same method: each of its
    patterns, filled in, is routed by Quart's own URL map to a view."""
    adapter = app.url_map.bind("test.local")
    samples = {
        "versions": "/_matrix/client/versions",
        "whoami": f"{V3}/account/whoami",
        "sync": f"{V3}/sync",
        "typing": f"{V3}/rooms/!r:test.local/typing/@a:test.local",
        "status": f"{V3}/presence/@a:test.local/status",
    }
    for method, pattern, _handler in ROUTES:
        path = next(p for p in samples.values() if pattern.fullmatch(p))
        endpoint, _args = adapter.match(path, method=method)
        assert endpoint in app.view_functions, (method, path)


async def test_versions_and_whoami(sides: Sides, api: Api) -> None:
    alice = await api.register("alice")
    versions = await sides.same("GET", "/_matrix/client/versions")
    assert versions.status == 200 and "v1.11" in versions.body["versions"]
    mine = await sides.same("GET", f"{V3}/account/whoami", headers=bearer(alice))
    assert mine.body["user_id"] == alice.user_id
    assert mine.headers.get("matrix-session")  # ran in the device's session
    assert "access-control-allow-origin" in mine.headers
    await sides.same("GET", "/_matrix/client/r0/account/whoami", headers=bearer(alice))
    by_query = await sides.same(
        "GET", f"{V3}/account/whoami", query={"access_token": alice.access_token}
    )
    assert by_query.body == mine.body


async def test_authentication_errors(sides: Sides, api: Api) -> None:
    alice = await api.register("alice")
    whoami = f"{V3}/account/whoami"
    missing = await sides.same("GET", whoami)
    assert (missing.status, missing.body["errcode"]) == (401, "M_MISSING_TOKEN")
    empty = await sides.same("GET", whoami, headers={"Authorization": "Bearer  "})
    assert empty.body["errcode"] == "M_MISSING_TOKEN"
    unknown = await sides.same("GET", whoami, headers={"Authorization": "Bearer nope"})
    assert (unknown.status, unknown.body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    # Percent-encoded bytes that are not UTF-8: decoded as Werkzeug does. (Raw ones
    # never arrive: h11 refuses a request target that is not ASCII.)
    for query in (b"=%C2%80&access_token=x", b"a=%FF&access_token=%C3%A9"):
        odd = await sides.same("GET", whoami, query=query)
        assert odd.status == 401, query
    nul = await sides.same("GET", whoami, query=b"access_token=%00")
    assert (nul.status, nul.body["errcode"]) == (400, "M_INVALID_PARAM")
    malformed = await sides.same(
        "GET", whoami, headers={**bearer(alice), "Matrix-Session": "not a session id!"}
    )
    assert (malformed.status, malformed.body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_an_expired_session_is_answered_with_a_new_one(sides: Sides, api: Api) -> None:
    alice = await api.register("alice")
    whoami = f"{V3}/account/whoami"
    by_quart, by_fast = await sides.both(
        "GET", whoami, headers={**bearer(alice), "Matrix-Session": "s" * 20}
    )
    for answer in (by_quart, by_fast):
        assert (answer.status, answer.body["errcode"]) == (409, "M_SESSION_EXPIRED")
        assert answer.headers["matrix-session"] == answer.body["session_id"]
    assert by_fast.headers.keys() == by_quart.headers.keys()
    # Each answer names the session to use; that one works on the other adapter.
    retry = await sides.same(
        "GET", whoami, headers={**bearer(alice), "Matrix-Session": by_fast.body["session_id"]}
    )
    assert retry.status == 200
    assert retry.headers["matrix-session"] == by_fast.body["session_id"]


async def test_typing(sides: Sides, api: Api, engine: Engine) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await api.create_room(alice)
    path = f"{V3}/rooms/{q(room)}/typing/{q(alice.user_id)}"
    auth = bearer(alice)
    on = json.dumps({"typing": True, "timeout": 20000}).encode()
    ok = await sides.same("PUT", path, headers=auth, body=on, chunk=5)
    assert (ok.status, ok.body) == (200, {})
    assert alice.user_id in engine.typing.typing_in(room)
    bad_bodies = {
        b"": "M_NOT_JSON",
        b"{not json": "M_NOT_JSON",
        b"[1]": "M_BAD_JSON",
        b"{}": "M_BAD_JSON",
        b'{"typing": "yes"}': "M_BAD_JSON",
        b'{"typing": true, "timeout": -1}': "M_BAD_JSON",
        b'{"typing": true, "timeout": 1.5}': "M_BAD_JSON",
    }
    for body, errcode in bad_bodies.items():
        answer = await sides.same("PUT", path, headers=auth, body=body)
        assert (answer.status, answer.body["errcode"]) == (400, errcode), body
    bad_room = await sides.same(
        "PUT", f"{V3}/rooms/nope/typing/{q(alice.user_id)}", headers=auth, body=on
    )
    assert (bad_room.status, bad_room.body["errcode"]) == (400, "M_INVALID_PARAM")
    for_bob = await sides.same(
        "PUT", f"{V3}/rooms/{q(room)}/typing/{q(bob.user_id)}", headers=auth, body=on
    )
    assert for_bob.status == 403
    not_member = await sides.same(
        "PUT", f"{V3}/rooms/{q(room)}/typing/{q(bob.user_id)}", headers=bearer(bob), body=on
    )
    assert not_member.status == 403
    too_large = await sides.same(
        "PUT", path, headers=auth, body=b'{"typing": true, "x": "' + b"a" * 5000 + b'"}'
    )
    assert (too_large.status, too_large.body["errcode"]) == (413, "M_TOO_LARGE")
    off = await sides.same("PUT", path, headers=auth, body=b'{"typing": false}')
    assert off.status == 200
    assert alice.user_id not in engine.typing.typing_in(room)


async def test_presence(sides: Sides, api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    path = f"{V3}/presence/{q(alice.user_id)}/status"
    auth = bearer(alice)
    body = json.dumps({"presence": "unavailable", "status_msg": "away"}).encode()
    ok = await sides.same("PUT", path, headers=auth, body=body)
    assert (ok.status, ok.body) == (200, {})
    mine = await sides.same("GET", path, headers=auth, ignore=without_last_active)
    assert mine.body["presence"] == "unavailable" and mine.body["status_msg"] == "away"
    # No shared room: refused the same way by both.
    unseen = await sides.same("GET", path, headers=bearer(bob), ignore=without_last_active)
    assert unseen.status == 403
    other = await sides.same(
        "PUT", f"{V3}/presence/{q(bob.user_id)}/status", headers=auth, body=body
    )
    assert (other.status, other.body["errcode"]) == (403, "M_FORBIDDEN")
    for bad in (b'{"presence": "busy"}', b"{}", b'{"presence": 1}'):
        answer = await sides.same("PUT", path, headers=auth, body=bad)
        assert answer.status == 400, bad
    long_msg = json.dumps({"presence": "online", "status_msg": "x" * 2000}).encode()
    assert (await sides.same("PUT", path, headers=auth, body=long_msg)).status == 400


async def test_anything_else_goes_to_quart(sides: Sides, api: Api) -> None:
    alice = await api.register("alice")
    auth = bearer(alice)
    trailing = await sides.same("GET", f"{V3}/account/whoami/", headers=auth, fast_route=False)
    assert trailing.status == 200
    wrong_method = await sides.same("POST", f"{V3}/account/whoami", headers=auth, fast_route=False)
    assert wrong_method.status == 405
    head = await sides.same("HEAD", "/_matrix/client/versions", fast_route=False)
    assert head.status == 200
    unknown = await sides.same("GET", f"{V3}/account/whoami2", headers=auth, fast_route=False)
    assert unknown.status == 404
    other = await sides.same("GET", f"{V3}/capabilities", headers=auth, fast_route=False)
    assert other.status == 200


async def test_a_request_past_its_deadline_is_answered_503(
    engine: Engine, app: HomeserverApp, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request deadline holds on the fast path as in Quart (503, Retry-After)."""
    alice = await api.register("alice")
    engine.config = dataclasses.replace(engine.config, request_timeout_ms=50)
    sides = Sides(engine, app)
    real = engine.sessions.begin_request

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await trio.sleep(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(engine.sessions, "begin_request", slow)
    answer = await sides.same("GET", f"{V3}/account/whoami", headers=bearer(alice))
    assert (answer.status, answer.body["errcode"]) == (503, "M_UNAVAILABLE")
    assert answer.headers["retry-after"] == "1"


def without_moving_parts(answer: Answer) -> Answer:
    """/sync answers name the stream position they reached and each event's age, which
    move between two answers."""

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: scrub(v)
                for k, v in value.items()
                if k not in ("age", "last_active_ago", "next_batch")
            }
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return Answer(answer.status, answer.headers, scrub(answer.body))


async def test_sync(sides: Sides, api: Api) -> None:
    alice = await api.register("alice")
    room = await api.create_room(alice)
    await api.send_text(alice, room, "hello", "t1")
    auth = bearer(alice)
    initial = await sides.same("GET", f"{V3}/sync", headers=auth, ignore=without_moving_parts)
    timeline = initial.body["rooms"]["join"][room]["timeline"]["events"]
    assert [e["content"].get("body") for e in timeline][-1] == "hello"
    since = (await api.sync(alice))["next_batch"]
    quiet = await sides.same(
        "GET", f"{V3}/sync", headers=auth, query={"since": since, "timeout": "0"}
    )
    assert quiet.body["next_batch"] == since
    refusals = {
        "since": ("nonsense", "M_INVALID_PARAM"),
        "timeout": ("soon", "M_INVALID_PARAM"),
        "set_presence": ("busy", "M_INVALID_PARAM"),
        "filter": ("12345", "M_NOT_FOUND"),
    }
    for name, (value, errcode) in refusals.items():
        answer = await sides.same("GET", f"{V3}/sync", headers=auth, query={name: value})
        assert answer.body.get("errcode") == errcode, (name, answer.body)


async def test_a_waiting_sync_wakes_on_the_fast_path(
    sides: Sides, api: Api, engine: Engine
) -> None:
    alice = await api.register("alice")
    room = await api.create_room(alice)
    since = (await api.sync(alice))["next_batch"]
    answers: list[Answer] = []
    async with trio.open_nursery() as nursery:

        async def wait() -> None:
            query = {"since": since, "timeout": "5000"}
            answers.append(
                await call(sides.fast, "GET", f"{V3}/sync", headers=bearer(alice), query=query)
            )

        nursery.start_soon(wait)
        with trio.fail_after(5):
            while engine.notifier.waiting_users == 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
        await api.send_text(alice, room, "wake up", "t2")
    (answer,) = answers
    events = answer.body["rooms"]["join"][room]["timeline"]["events"]
    assert [e["content"]["body"] for e in events] == ["wake up"]
    assert answer.headers["matrix-session"]


async def test_a_sync_whose_client_left_ends_and_gives_its_session_back(
    sides: Sides, api: Api, engine: Engine
) -> None:
    alice = await api.register("alice")
    since = (await api.sync(alice))["next_batch"]
    sent: list[dict[str, Any]] = []
    left = trio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    query = {"since": since, "timeout": "30000"}
    scope = http_scope("GET", f"{V3}/sync", query=query, headers=bearer(alice))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sides.fast, scope, receive, send)
            # The request holds its session while it waits.
            while not (engine.sessions.in_flight_requests and engine.notifier.waiting_users):  # noqa: ASYNC110
                await trio.sleep(0.01)
            left.set()
    # It ended long before its 30 s wait (fail_after), and answered nobody.
    assert sent == []
    assert engine.sessions.in_flight_requests == 0  # the lease went back


async def test_the_answer_does_not_wait_for_the_sessions_bookkeeping(
    sides: Sides, api: Api, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path sends the answer, then gives the lease back (a write on SQL
    when the deadline moves); the lease is given back all the same."""
    alice = await api.register("alice")
    real = engine.sessions.finish_request
    release = trio.Event()
    finished: list[object] = []

    async def slow_finish(lease: Any) -> None:
        await release.wait()
        await real(lease)
        finished.append(lease)

    monkeypatch.setattr(engine.sessions, "finish_request", slow_finish)
    answered = trio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))
        if message["type"] == "http.response.body":
            answered.set()

    scope = http_scope("GET", f"{V3}/account/whoami", headers=bearer(alice))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sides.fast, scope, receive, send)
            await answered.wait()
            assert sent[0]["status"] == 200
            assert engine.sessions.in_flight_requests == 1 and not finished
            release.set()
    assert finished and engine.sessions.in_flight_requests == 0
