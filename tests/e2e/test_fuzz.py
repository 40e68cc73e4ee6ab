"""A fuzz run over every route of a real server process (issue 9).

One `python -m homeserver serve --storage memory://` serves the whole module. Every rule
of the app's url_map is a fuzz target, so a route added later is fuzzed without touching
this file (and `test_every_route_is_a_fuzz_target` fails if one cannot be). For each,
hypothesis draws the method, path parameters, query string, headers and body: mostly
plausible requests (real ids of two registered users, their room, an event, a filter,
sessions; a body that works for the route, a little mutated) that get past
authentication and validation, else wild ones. Batches of them also run at once. Then
the HTTP level is abused over raw sockets: garbage, pipelining, framing, upgrades.

Every response must be under 500, come within REQUEST_TIMEOUT_S, and be an
`{"errcode", "error"}` JSON body when it is a 4xx of the app; nothing may be logged at
ERROR, nor a connection end on an error no client should be able to cause; the process
must be alive after every example, answer /versions at the end and stop on SIGTERM
within STOP_BOUND_S.

The run is random and bounded: HOMESERVER_FUZZ_EXAMPLES examples per route and
concurrent batches, HOMESERVER_FUZZ_RAW_EXAMPLES raw ones. A failure names
HOMESERVER_FUZZ_SEED=<n> to replay the run (hypothesis prints the falsifying example).
There is no example database (database=None); hypothesis still keeps caches in
.hypothesis/, which it git-ignores itself.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import re
import subprocess
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.e2e.fuzzing import (
    KNOWN_CONVERTERS,
    BadResponse,
    Conversation,
    FuzzServer,
    Hang,
    Reply,
    Target,
    Variable,
    app_rules,
    build_request,
    converse,
    exchange,
    fuzz_targets,
    h2_converse,
    url_adapter_match,
)

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("HOMESERVER_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
# About 40 s on 2 cores when nothing fails.
EXAMPLES_PER_ROUTE = int(os.environ.get("HOMESERVER_FUZZ_EXAMPLES") or "30")
RAW_EXAMPLES = int(os.environ.get("HOMESERVER_FUZZ_RAW_EXAMPLES") or "150")
RAW_REPEATS = 5  # each named HTTP-level case
STOP_BOUND_S = 5.0  # SIGTERM to exit, after the whole run
SERVER_NAME = "fuzz.test"
# Long-polls end after this whatever `timeout` the fuzz asks for: the run stays bounded.
SYNC_TIMEOUT_CAP_MS = 300
MAX_BODY = 1_048_576
HEAD_LIMIT = 64 * 1024  # Hypercorn's h11_max_incomplete_size (homeserver/server.py)
TARGETS = fuzz_targets()


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        print_blob=True,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )


# --- the server and its inhabitants ---------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    process = FuzzServer(
        log,
        "--server-name",
        SERVER_NAME,
        "--admin",
        f"@alice:{SERVER_NAME}",
        env={"HOMESERVER_SYNC_TIMEOUT_CAP_MS": str(SYNC_TIMEOUT_CAP_MS)},
    )
    print(f"fuzz: HOMESERVER_FUZZ_SEED={SEED}; server log {log}")
    try:
        yield process
    finally:
        process.stop()


@dataclass(frozen=True)
class Ids:
    """Real ids, written `${name}` in what hypothesis draws and put in when a request is
    sent: tokens and sessions change when the fuzz logs a user out."""

    alice_id: str
    alice_token: str
    alice_device: str
    alice_session: str
    bob_id: str
    bob_token: str
    bob_session: str
    room: str  # alice (its admin) and bob are joined
    bob_room: str  # bob's private room; alice is not in it
    event_id: str
    filter_id: str
    next_batch: str
    host: str


_PLACEHOLDER = re.compile(r"\$\{(" + "|".join(f.name for f in fields(Ids)) + r"|fresh)\}")
_FRESH = itertools.count()


def fill(text: str, ids: Ids) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        # ${fresh}: a name never used before (a username to register).
        return f"f{next(_FRESH)}" if name == "fresh" else str(getattr(ids, name))

    return _PLACEHOLDER.sub(value, text)


def fill_json(value: Any, ids: Ids) -> Any:
    if isinstance(value, str):
        return fill(value, ids)
    if isinstance(value, dict):
        return {fill(k, ids): fill_json(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_json(v, ids) for v in value]
    return value


class World:
    """Two users and their rooms, kept usable while the fuzz logs them out."""

    def __init__(self, server: FuzzServer) -> None:
        self.server = server
        self.host = f"{server.host}:{server.port}"
        alice_token, alice_device = self._register("alice")
        bob_token, _ = self._register("bob")
        bob_room = self._ok("POST", "/createRoom", bob_token, {"preset": "private_chat"})
        self.ids = Ids(
            alice_id=f"@alice:{SERVER_NAME}",
            alice_token=alice_token,
            alice_device=alice_device,
            alice_session="",
            bob_id=f"@bob:{SERVER_NAME}",
            bob_token=bob_token,
            bob_session="",
            room="",
            bob_room=bob_room["room_id"],
            event_id="",
            filter_id="",
            next_batch="",
            host=self.host,
        )
        self.refresh()

    def call(
        self, method: str, path: str, token: str | None = None, body: object = None
    ) -> tuple[int, Any]:
        headers = [(b"Host", self.host.encode())]
        if token is not None:
            headers.append((b"Authorization", b"Bearer " + token.encode()))
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers.append((b"Content-Type", b"application/json"))
        target = f"/_matrix/client/v3{path}".encode()
        request = build_request(method.encode(), target, headers, data)
        reply = exchange(self.server.host, self.server.port, request)
        assert reply.status < 500, f"setup request {method} {path}: {reply}"
        return reply.status, json.loads(reply.body) if reply.body else None

    def _ok(self, method: str, path: str, token: str | None, body: object = None) -> Any:
        status, answer = self.call(method, path, token, body)
        assert status == 200, f"setup request {method} {path}: {status} {answer}"
        return answer

    def _register(self, localpart: str) -> tuple[str, str]:
        body = {"username": localpart, "password": "pw", "auth": {"type": "m.login.dummy"}}
        answer = self._ok("POST", "/register", None, body)
        return answer["access_token"], answer["device_id"]

    def _login(self, localpart: str) -> tuple[str, str]:
        body = {"type": "m.login.password", "user": localpart, "password": "pw"}
        answer = self._ok("POST", "/login", None, body)
        return answer["access_token"], answer["device_id"]

    def _session(self, token: str, current: str) -> str:
        listed = self._ok("GET", "/sessions", token)["sessions"]
        if any(s["session_id"] == current for s in listed):
            return current
        return str(self._ok("POST", "/sessions", token, {})["session_id"])

    def heal(self) -> None:
        """After a request that changed something: tokens and sessions usable again."""
        ids = self.ids
        if self.call("GET", "/account/whoami", ids.alice_token)[0] != 200:
            token, device = self._login("alice")
            ids = replace(ids, alice_token=token, alice_device=device)
        if self.call("GET", "/account/whoami", ids.bob_token)[0] != 200:
            ids = replace(ids, bob_token=self._login("bob")[0])
        self.ids = replace(
            ids,
            alice_session=self._session(ids.alice_token, ids.alice_session),
            bob_session=self._session(ids.bob_token, ids.bob_session),
        )

    def refresh(self) -> None:
        """Before each route: a fresh room (alice may have left it or demoted herself)."""
        self.heal()
        ids = self.ids
        room_id = self._ok("POST", "/createRoom", ids.alice_token, {"preset": "public_chat"})[
            "room_id"
        ]
        room = quote(room_id, safe="")
        self._ok("POST", f"/join/{room}", ids.bob_token, {})
        event = self._ok(
            "PUT",
            f"/rooms/{room}/send/m.room.message/t{time.monotonic_ns()}",
            ids.alice_token,
            {"msgtype": "m.text", "body": "hello"},
        )
        user = quote(ids.alice_id, safe="")
        made = self._ok("POST", f"/user/{user}/filter", ids.alice_token, {"room": {}})
        synced = self._ok("GET", "/sync", ids.alice_token)
        self.ids = replace(
            ids,
            room=room_id,
            event_id=event["event_id"],
            filter_id=made["filter_id"],
            next_batch=synced["next_batch"],
        )


@pytest.fixture(scope="module")
def world(server: FuzzServer) -> World:
    return World(server)


# --- one request: what is drawn, how it is sent, what must hold ------------------------


def _short(value: object, limit: int = 200) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}...<{len(shown)} chars>"


@dataclass(frozen=True, repr=False)
class Segment:
    """A path parameter: a value and how it is written into the path."""

    value: str
    encoding: str  # "full" | "matrix" | "slash" | "verbatim"

    def render(self, ids: Ids) -> str:
        text = fill(self.value, ids)
        if self.encoding == "full":
            return quote(text, safe="")
        if self.encoding == "matrix":  # sigils raw, as some clients send them
            return quote(text, safe="!@:$&'()*+,;=")
        if self.encoding == "slash":
            return quote(text, safe="/")
        # Verbatim: '%', dots, '#' and '?' go as they are; only what an HTTP/1.1 request
        # target cannot carry is encoded (raw bytes are the HTTP-level section's).
        return quote(text, safe="/%!@:$&'()*+,;=~#?[]")

    def __repr__(self) -> str:
        return f"Segment({_short(self.value)}, {self.encoding!r})"


@dataclass(frozen=True, repr=False)
class Body:
    kind: str  # what it is, for the report
    data: Any  # bytes are sent as they are; anything else as JSON, ids filled in

    def render(self, ids: Ids) -> bytes:
        if isinstance(self.data, bytes):
            return self.data
        # Raw UTF-8 as clients send it; \u escapes for the "json" kind.
        return json.dumps(fill_json(self.data, ids), ensure_ascii=self.kind == "json").encode()

    def __repr__(self) -> str:
        return f"Body({self.kind!r}, {_short(self.data, 400)})"


@dataclass(frozen=True, repr=False)
class Spec:
    """A request as hypothesis draws it."""

    method: str
    path: tuple[str | Segment, ...]
    query: tuple[tuple[str, str, str], ...]  # key, value, how it is encoded
    headers: tuple[tuple[str, str], ...]
    body: Body | None
    chunked: bool = False

    def __repr__(self) -> str:
        query, headers = _short(self.query, 400), _short(self.headers, 600)
        chunked = ", chunked=True" if self.chunked else ""
        return f"Spec({self.method!r}, {self.path!r}, {query}, {headers}, {self.body!r}{chunked})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints a falsifying example with this; the request's bytes are in
        # the failure message already, so long strings are cut here.
        printer.text(repr(self))

    def render(self, ids: Ids) -> tuple[bytes, str]:
        """(the request's bytes, the decoded path the server routes)."""
        path = "".join(p if isinstance(p, str) else p.render(ids) for p in self.path)
        pairs = []
        for key, value, encoding in self.query:
            k, v = fill(key, ids), fill(value, ids)
            if encoding == "verbatim":
                pairs.append(quote(k, safe="%=&;+") + "=" + quote(v, safe="%=&;+"))
            elif encoding == "bare":
                pairs.append(quote(k, safe=""))
            else:
                pairs.append(quote(k, safe="") + "=" + quote(v, safe=""))
        target = path + ("?" + "&".join(pairs) if pairs else "")
        headers = [(name.encode(), _header_bytes(fill(value, ids))) for name, value in self.headers]
        body = None if self.body is None else self.body.render(ids)
        request = build_request(
            self.method.encode(), target.encode(), headers, body, chunked=self.chunked
        )
        return request, unquote(path.split("?", 1)[0])


def _header_bytes(value: str) -> bytes:
    # UTF-8 (obs-text is allowed in field values), without the control characters that
    # Hypercorn rightly refuses before the app sees them: those are the raw section's.
    return re.sub(rb"[\x00-\x08\x0a-\x1f\x7f]", b"", value.encode())


def _excerpt(data: bytes, limit: int = 1500) -> str:
    shown = repr(data[:limit])
    return shown + (f" ... ({len(data)} bytes in all)" if len(data) > limit else "")


def _report(server: FuzzServer, problem: str, sent: bytes, replies: list[Reply], log: str) -> str:
    lines = [problem, f"request (raw bytes): {_excerpt(sent)}"]
    for reply in replies:
        lines.append(f"response: {reply.status} {reply.headers} {_excerpt(reply.body, 600)}")
    if log.strip():
        shown = "\n".join(line[:400] for line in log[-6000:].splitlines())
        lines.append(f"server log:\n{shown}")
    lines.append(f"replay: HOMESERVER_FUZZ_SEED={SEED}; whole server log: {server.log_path}")
    return "\n".join(lines)


def _require_alive(server: FuzzServer) -> None:
    if server.death is not None:
        pytest.fail(f"the server died earlier (it is not restarted):\n{server.death}")


# homeserver/http_worker.py contains an exception in one connection and logs it as
# "connection from ... closed after an error: <Type>: ...". Protocol errors a client can
# provoke at will (bytes after a refused WebSocket upgrade, say) are expected there; any
# other type (two tasks writing one socket, a bug in the stack) fails the fuzz.
_CONTAINED = re.compile(r"closed after an error: (\w+)")
CLIENT_CAUSED = frozenset({"LocalProtocolError", "RemoteProtocolError", "ProtocolError"})


def _log_problem(log: str) -> str | None:
    for line in log.splitlines():
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
            return f"the server logged an error: {line[:300]}"
        contained = _CONTAINED.search(line)
        if contained is not None and contained.group(1) not in CLIENT_CAUSED:
            return f"a connection ended on an unexpected error: {line[:300]}"
    return None


def _error_body_problem(reply: Reply) -> str | None:
    try:
        body = json.loads(reply.body)
    except ValueError:
        return "a 4xx of the app whose body is not JSON"
    if not isinstance(body, dict):
        return "a 4xx of the app whose body is not a JSON object"
    if reply.status == 401 and "flows" in body:
        return None  # user-interactive auth: the first 401 carries flows, not an errcode
    if not isinstance(body.get("errcode"), str) or not isinstance(body.get("error"), str):
        return "a 4xx of the app without string 'errcode' and 'error'"
    if not reply.headers.get("content-type", "").startswith("application/json"):
        return "a 4xx of the app that is not application/json"
    return None


def _reply_problem(reply: Reply, *, head: bool, app_only: bool) -> str | None:
    # The HTTP layer may answer 501 to a Transfer-Encoding it does not implement: what
    # RFC 9112 (6.1) asks. Any other 5xx fails.
    if reply.status >= 500 and not (reply.status == 501 and not reply.from_app):
        layer = "the app" if reply.from_app else "the HTTP layer (no CORS headers)"
        return f"status {reply.status} from {layer}"
    if not reply.from_app:
        # Hypercorn's own refusal of a request it could not parse: not for a well-formed
        # one; and its body is not the app's to promise (WebSocket refusals are bare).
        return (
            f"a {reply.status} from the HTTP layer to a well-formed request" if app_only else None
        )
    if 400 <= reply.status < 500 and not head:
        return _error_body_problem(reply)
    return None


def _died(server: FuzzServer, sent: bytes, replies: list[Reply], offset: int) -> None:
    time.sleep(0.2)  # let its last words reach the log
    server.death = _report(
        server, "the server process died", sent, replies, server.log_since(offset)
    )
    pytest.fail(server.death)


def send_checked(
    server: FuzzServer, request: bytes, *, head: bool, check_log: bool = True
) -> Reply:
    """Send one well-formed request; assert everything the fuzz demands of its answer."""
    _require_alive(server)
    offset = server.log_offset()
    reply: Reply | None = None
    problem: str | None = None
    try:
        reply = exchange(server.host, server.port, request, head=head)
    except Hang as exc:
        problem = f"hang: {exc}"
    except BadResponse as exc:
        problem = f"not a valid HTTP response: {exc}"
    except OSError as exc:
        problem = f"connection failed: {exc!r}"
    replies = [] if reply is None else [reply]
    if not server.alive():
        _died(server, request, replies, offset)
    if reply is not None:
        # A request head over Hypercorn's 64 KiB limit is refused before the app.
        oversized = request.find(b"\r\n\r\n") > HEAD_LIMIT and reply.status in (414, 431)
        problem = _reply_problem(reply, head=head, app_only=not oversized)
    log = server.log_since(offset)
    if check_log:
        problem = problem or _log_problem(log)
    if problem is not None:
        raise AssertionError(_report(server, problem, request, replies, log))
    assert reply is not None
    return reply


def versions_request(host: str) -> bytes:
    return build_request(b"GET", b"/_matrix/client/versions", [(b"Host", host.encode())], None)


def assert_answers_versions(server: FuzzServer) -> None:
    reply = send_checked(server, versions_request(f"{server.host}:{server.port}"), head=False)
    assert reply.status == 200 and b"versions" in reply.body, reply


# --- strategies for requests at a route -----------------------------------------------

TEXT = st.text(max_size=30)
# Long, yet short enough that a path with one stays under the 64 KiB request head limit.
LONG_TEXT = st.integers(1000, 8000).map(lambda n: "é" * (n // 2) + "a" * (n - n // 2))
_WEIRD_WORDS = """
    . .. ... %2e%2e %2E %2F / // %ff %c3%28 %zz % %0 %00 %u0041 ~ @ ! : # ? ; %23 %3F %0d%0a
    + \\ * %20 ../.. ..%2f.. \u202e \ufeff \U0001d54f
"""
WEIRD = st.sampled_from([*_WEIRD_WORDS.split(), "", " ", "a" * 255])

# Path parameters by name: real ids (twice, to be drawn often) and near misses.
VALID: dict[str, list[str]] = {
    name: values.split()
    for name, values in {
        "room_id": f"${{room}} ${{room}} ${{bob_room}} !nonexistent:{SERVER_NAME}"
        f" #alias:{SERVER_NAME} ! !x !x:{SERVER_NAME}:1",
        "user_id": f"${{alice_id}} ${{alice_id}} ${{bob_id}} @nobody:{SERVER_NAME}"
        f" @alice:elsewhere.test alice @ @:{SERVER_NAME} @ALICE:{SERVER_NAME}",
        "event_id": "${event_id} ${event_id} $nope $",
        "event_type": "m.room.message m.room.name m.room.topic m.room.member"
        " m.room.power_levels m.room.join_rules m.room.create m.room.encryption"
        " m.room.history_visibility m.room.redaction m.reaction m.typing x.custom",
        "state_key": f"${{alice_id}} ${{bob_id}} a/b @nobody:{SERVER_NAME}",
        "txn_id": "t1 t1 txn-2",
        "filter_id": "${filter_id} ${filter_id} 0 -1 99999999999999999999",
        "data_type": "m.direct m.push_rules m.ignored_user_list m.fully_read m.tag"
        " m.invite_permission_config org.matrix.msc4155.invite_permission_config",
        "device_id": "${alice_device} ${alice_device} NOPE",
        "session_id": "${alice_session} ${alice_session} ${bob_session} nope",
        "field": "displayname avatar_url avatar",
        "filename": "index.html ../homeserver/app.py ..%2f..%2fREADME.md",
    }.items()
}
VALID["state_key"].insert(0, "")


def _segment(variable: Variable) -> st.SearchStrategy[Segment]:
    known = [*variable.choices, *VALID.get(variable.name, [])]
    values: list[st.SearchStrategy[str]] = [TEXT, LONG_TEXT]
    if known:
        values = [st.sampled_from(known), st.sampled_from(known), st.sampled_from(known), *values]
    encoding = st.sampled_from(["full", "full", "matrix", "slash", "verbatim"])
    encoded = st.builds(Segment, st.one_of(values), encoding)
    return st.one_of(encoded, encoded, encoded, WEIRD.map(lambda w: Segment(w, "verbatim")))


def _plausible_segment(variable: Variable) -> st.SearchStrategy[Segment]:
    known = [value for value in [*variable.choices, *VALID.get(variable.name, [])] if value]
    value = st.sampled_from(known) if known else TEXT.filter(lambda t: "/" not in t)
    return st.builds(Segment, value, st.sampled_from(["full", "matrix"]))


def _canonical_segment(variable: Variable) -> Segment:
    known = [value for value in [*variable.choices, *VALID.get(variable.name, [])] if value]
    return Segment(known[0] if known else "x", "full")


SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53, 2**53 + 1, -(2**63), 2**64, 10**400]),
    st.floats(),  # NaN and Infinity too: json.dumps writes them; the server must refuse
    TEXT,
    st.sampled_from(["${alice_id}", "${bob_id}", "${room}", "${event_id}"]),
)
JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
USER_IDS = st.sampled_from(
    ["${alice_id}", "${bob_id}", f"@nobody:{SERVER_NAME}", "@x:elsewhere.test", "nobody"]
)
ROOM_IDS = st.sampled_from(["${room}", "${bob_room}", f"!nope:{SERVER_NAME}"])


def _object(**optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=optional)


# The fields routes read, with values of the right type (mostly valid ones).
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "username": st.sampled_from(["alice", "bob", "Alice", "", "a:b", "fuzz_user"]) | TEXT,
    "password": st.just("pw") | TEXT,
    "auth": st.fixed_dictionaries(
        {"type": st.sampled_from(["m.login.dummy", "m.login.dummy", "m.login.password"])},
        optional={"session": TEXT},
    ),
    "type": st.sampled_from(["m.login.password", "m.room.message", "m.server_notice", "x"]),
    "identifier": st.fixed_dictionaries({"type": st.just("m.id.user"), "user": USER_IDS}),
    "user": st.sampled_from(["alice", "${alice_id}", "bob", "nobody"]),
    "device_id": st.sampled_from(["${alice_device}", "DEV"]) | TEXT,
    "initial_device_display_name": TEXT | LONG_TEXT,
    "inhibit_login": st.booleans(),
    "presence": st.sampled_from(["online", "offline", "unavailable", "busy"]),
    "status_msg": TEXT | LONG_TEXT,
    "typing": st.booleans(),
    "timeout": st.integers() | st.sampled_from([0, 30000, 2**31]),
    "display_name": TEXT | LONG_TEXT,
    "displayname": TEXT | LONG_TEXT,
    "avatar_url": st.just("mxc://fuzz.test/abc") | TEXT,
    "user_id": USER_IDS,
    "room_id": ROOM_IDS,
    "reason": TEXT | LONG_TEXT,
    "preset": st.sampled_from(["private_chat", "public_chat", "trusted_private_chat", "x"]),
    "visibility": st.sampled_from(["public", "private", "secret"]),
    "invite": st.lists(USER_IDS, max_size=3),
    "initial_state": st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["m.room.name", "m.room.topic", "x.y"]), "content": JSON},
            optional={"state_key": TEXT},
        ),
        max_size=3,
    ),
    "name": TEXT,
    "topic": TEXT | LONG_TEXT,
    "room_version": st.sampled_from(["10", "1", "9", "11", "9999"]),
    "is_direct": st.booleans(),
    "creation_content": st.dictionaries(TEXT, JSON, max_size=3),
    "power_level_content_override": _object(
        users=st.dictionaries(USER_IDS, st.integers(), max_size=2),
        events_default=st.integers(),
        state_default=st.integers(),
        events=st.dictionaries(TEXT, st.integers(), max_size=2),
    ),
    "content": st.fixed_dictionaries({"msgtype": st.sampled_from(["m.text", "x"]), "body": TEXT}),
    "msgtype": st.sampled_from(["m.text", "m.notice", "m.image"]),
    "body": TEXT | LONG_TEXT,
    "membership": st.sampled_from(["join", "leave", "invite", "ban", "knock"]),
    "join_rule": st.sampled_from(["public", "invite", "knock", "x"]),
    "all_users": st.booleans(),
    "users": st.dictionaries(USER_IDS, st.integers(), max_size=3),
    "users_default": st.integers(),
    "room": _object(
        timeline=_object(limit=st.integers(), types=st.lists(TEXT, max_size=2)),
        rooms=st.lists(ROOM_IDS, max_size=2),
        not_rooms=st.lists(ROOM_IDS, max_size=2),
        state=_object(lazy_load_members=JSON),
        include_leave=JSON,
    ),
    "event_fields": st.lists(TEXT, max_size=3),
    "event_format": st.sampled_from(["client", "federation"]),
    "account_data": _object(types=st.lists(TEXT, max_size=3)),
    "default_action": st.sampled_from(["allow", "block", "ignore"]),
    "allowed_users": st.lists(USER_IDS, max_size=2),
    "blocked_users": st.lists(USER_IDS, max_size=2),
    "tags": st.dictionaries(st.sampled_from(["m.favourite", "u.x"]), _object(order=JSON)),
    "session": TEXT,
}
# Any field may instead hold any JSON value.
SHAPED: st.SearchStrategy[dict[str, Any]] = st.lists(
    st.sampled_from(sorted(PLAUSIBLE)), unique=True, max_size=8
).flatmap(lambda keys: st.fixed_dictionaries({key: PLAUSIBLE[key] | JSON for key in keys}))
# A body that works for a route by endpoint (the blueprint's name without its prefix
# suffix): mutated, it reaches the code past validation. Routes without one get
# PLAUSIBLE fields.
WORKING_BODIES: dict[str, list[dict[str, Any]]] = {
    "auth.register": [
        {"username": "${fresh}", "password": "pw", "auth": {"type": "m.login.dummy"}},
        {"password": "pw", "auth": {"type": "m.login.dummy"}, "inhibit_login": True},
        {"username": "fresh"},
    ],
    "auth.login": [
        {"type": "m.login.password", "user": "alice", "password": "pw"},
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "bob"},
            "password": "pw",
            "device_id": "D1",
            "initial_device_display_name": "d",
        },
    ],
    "auth.update_device": [{"display_name": "phone"}],
    "rooms.create_room": [
        {"preset": "public_chat", "name": "n", "topic": "t", "invite": ["${bob_id}"]},
        {"initial_state": [{"type": "m.room.topic", "content": {"topic": "x"}}]},
        {"power_level_content_override": {"users": {"${alice_id}": 100}}, "is_direct": True},
    ],
    "rooms.invite": [{"user_id": "${bob_id}", "reason": "r"}],
    "rooms.moderate": [{"user_id": "${bob_id}", "reason": "r"}],
    "rooms.leave": [{"reason": "bye"}],
    "rooms.send": [{"msgtype": "m.text", "body": "hi"}, {"m.relates_to": {"rel_type": "x"}}],
    "rooms.put_state": [
        {"name": "room"},
        {"topic": "t"},
        {"join_rule": "public"},
        {"membership": "join", "displayname": "A"},
        {"users": {"${alice_id}": 100, "${bob_id}": 50}, "users_default": 0, "events": {}},
    ],
    "sync.create_filter": [
        {"room": {"timeline": {"limit": 5}, "state": {"lazy_load_members": True}}},
        {"event_fields": ["content.body"], "presence": {"types": []}},
    ],
    "account.put_account_data": [
        {"default_action": "block"},
        {"allowed_users": ["${bob_id}"], "blocked_servers": ["x"]},
        {"${bob_id}": ["${room}"]},
    ],
    "account.put_room_account_data": [{"tags": {"m.favourite": {"order": 0.5}}}],
    "account.put_profile_field": [{"displayname": "Alice"}, {"avatar_url": "mxc://x/y"}],
    "sessions.start_session": [{"presence": "online", "status_msg": "hi"}, {}],
    "presence.put_presence": [{"presence": "unavailable", "status_msg": "away"}],
    "presence.put_typing": [{"typing": True, "timeout": 30000}, {"typing": False}],
    "admin.send_server_event": [
        {"type": "m.server_notice", "content": {"body": "x"}, "user_id": "${bob_id}"},
        {"type": "x.status", "content": {}, "room_id": "${room}"},
        {"type": "x.status", "content": {"a": 1}, "all_users": True},
    ],
    "synapse_admin.send_server_notice": [
        {"user_id": "${bob_id}", "content": {"msgtype": "m.text", "body": "hi"}}
    ],
}


def _endpoint_kind(endpoint: str) -> str:
    blueprint, _, view = endpoint.partition(".")
    return f"{blueprint.removesuffix('_r0')}.{view}"


@st.composite
def _mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    body = dict(base)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(
            st.sampled_from([*body, *PLAUSIBLE]) if body else st.sampled_from(sorted(PLAUSIBLE))
        )
        action = draw(st.sampled_from(["drop", "json", "plausible", "plausible"]))
        if action == "drop":
            body.pop(key, None)
        elif action == "json":
            body[key] = draw(JSON)
        else:
            body[key] = draw(PLAUSIBLE.get(key, JSON))
    return body


def working_bodies(endpoint: str) -> st.SearchStrategy[dict[str, Any]]:
    bases = WORKING_BODIES.get(_endpoint_kind(endpoint))
    if not bases:
        return _object(**PLAUSIBLE)
    return st.sampled_from(bases).flatmap(_mutated)


def nested(depth: int, kind: str) -> bytes:
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":[' * (depth // 2) + b"{}" + b"]}" * (depth // 2)


def _huge(size: int) -> bytes:
    return b'{"body":"' + b"x" * max(0, size - 11) + b'"}'


def _truncated(value: Any, cut: float) -> bytes:
    text = json.dumps(value).encode()
    return text[: int(len(text) * cut)]


ODD_BODIES = [
    b"\xef\xbb\xbf{}",
    '{"a": 1}'.encode("utf-16"),
    b" \t\r\n ",
    b'{"a": 1, "a": 2}',
    b"1" * 5000,
    b'{"n": 1e999}',
    b'{"n": -0.0, "m": 1E400}',
    b'{"s": "\\ud800"}',
    b'{"s": "\\ud83d\\ude00"}',
    b'{"s": "\\u0000"}',
    b'{"s\\u0000": 1}',
    b"null",
    b"[]",
    b'"str"',
    b"NaN",
    b'{"a":1}garbage',
    b"{'a': 1}",
]
BODIES: st.SearchStrategy[Body] = st.one_of(
    SHAPED.map(lambda v: Body("shaped", v)),
    SHAPED.map(lambda v: Body("shaped", v)),
    SHAPED.map(lambda v: Body("shaped", v)),
    JSON.map(lambda v: Body("json", v)),
    st.just(Body("empty", b"")),
    st.binary(max_size=200).map(lambda b: Body("bytes", b)),
    st.binary(min_size=1, max_size=50).map(lambda b: Body("bad utf-8", b"\xff" + b + b"\xc3")),
    st.builds(_truncated, SHAPED, st.floats(0, 0.99)).map(lambda b: Body("truncated", b)),
    st.builds(nested, st.integers(1, 620), st.sampled_from(["object", "array", "mixed"])).map(
        lambda b: Body("nested", b)
    ),
    st.builds(nested, st.integers(900, 100_000), st.sampled_from(["object", "array"])).map(
        lambda b: Body("nested deep", b)
    ),
    st.integers(MAX_BODY - 4096, MAX_BODY).map(lambda n: Body("huge", _huge(n))),
    st.integers(MAX_BODY + 1, MAX_BODY + 4096).map(lambda n: Body("too large", _huge(n))),
    st.sampled_from(ODD_BODIES).map(lambda b: Body("odd", b)),
)

CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6
    + ["", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    + ["application/json; charset=latin-1", "application/octet-stream", "*/*", "json", ";;"]
)
HOSTS = st.one_of(
    st.just("${host}"),
    st.just("${host}"),
    st.just("${host}"),
    st.sampled_from(["", "evil.example", "[::1]:80", "a b", "é.test", "localhost:99999", "@:"])
    | st.sampled_from(["a..b", ".", "x" * 64, "x." * 200, "h:1:2", "xn--"]),
    TEXT,
)
HEADER_NAME = st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,24}\Z").filter(
    lambda name: (
        name.lower() not in {"host", "content-length", "transfer-encoding", "connection", "upgrade"}
    )
)
EXTRA_HEADERS = st.one_of(
    st.tuples(HEADER_NAME, TEXT),
    st.sampled_from(
        [
            ("Accept", "application/json"),
            ("Accept-Encoding", "gzip, br"),
            ("Origin", "https://app.element.io"),
            ("X-Forwarded-For", "1.2.3.4, é"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "for=1.2.3.4;proto=https"),
            ("Expect", "100-continue"),
            ("Cookie", "a=b; c"),
            ("Range", "bytes=0-5"),
            ("If-None-Match", "*"),
            ("If-Modified-Since", "yesterday"),
            ("Connection", "close"),
            ("Connection", "keep-alive"),
            ("Content-Encoding", "gzip"),
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer ${bob_token}"),
            ("Matrix-Session", "${alice_session}"),
        ]
    ),
)


@st.composite
def _headers(draw: st.DrawFn, has_body: bool) -> tuple[tuple[str, str], ...]:
    headers = [("Host", draw(HOSTS))]
    who = draw(st.sampled_from(["alice"] * 4 + ["bob", "none", "none", "fuzzed"]))
    if who in ("alice", "bob"):
        scheme = draw(st.sampled_from(["Bearer "] * 6 + ["bearer ", "BEARER ", "Bearer   "]))
        headers.append(("Authorization", scheme + "${" + who + "_token}"))
    elif who == "fuzzed":
        junk = st.sampled_from(["Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Token x", "Bearer é"])
        headers.append(("Authorization", draw(junk | TEXT.map(lambda t: "Bearer " + t))))
    if draw(st.integers(0, 3)) == 0:
        session = st.sampled_from(["${alice_session}", "${bob_session}", "nope", ""]) | TEXT
        headers.append(("Matrix-Session", draw(session)))
    if has_body or draw(st.integers(0, 5)) == 0:
        content_type = draw(CONTENT_TYPES)
        if content_type:
            headers.append(("Content-Type", content_type))
    headers += draw(st.lists(EXTRA_HEADERS, max_size=3))
    return tuple(headers)


STREAM_TOKENS = st.sampled_from(
    ["${next_batch}", "${next_batch}", "s0", "s-1", "s99999999999999999999", "0", "t1_2", "s"]
)
NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.integers().map(str),
    st.sampled_from(["", "abc", "1.5", "1e3", "-0", "0x10", "9" * 30, "٣", " 5", "5 "]),
)
INLINE_FILTERS = st.one_of(
    st.just("${filter_id}"),
    _object(
        room=PLAUSIBLE["room"],
        event_fields=PLAUSIBLE["event_fields"],
        event_format=PLAUSIBLE["event_format"],
        account_data=PLAUSIBLE["account_data"],
        presence=_object(types=st.lists(TEXT, max_size=2), limit=JSON),
    ).map(json.dumps),
    JSON.map(json.dumps),
    st.builds(nested, st.integers(1, 2000), st.sampled_from(["object", "mixed"])).map(
        lambda b: b.decode()
    ),
    st.sampled_from(["{", "{}", "{'a':1}", '{"room": {"timeline": {"limit": -1}}}', "1"]),
)
QUERY_VALUES: dict[str, st.SearchStrategy[str]] = {
    "timeout": NUMBERS,
    "since": STREAM_TOKENS,
    "from": STREAM_TOKENS,
    "to": STREAM_TOKENS,
    "filter": INLINE_FILTERS,
    "limit": NUMBERS,
    "dir": st.sampled_from(["b", "f", "x", "", "B"]),
    "set_presence": st.sampled_from(["online", "offline", "unavailable", "busy", ""]),
    "full_state": st.sampled_from(["true", "false", "1", "yes", ""]),
    "access_token": st.sampled_from(["${alice_token}", "${bob_token}", "nope", ""]),
    "session_id": st.sampled_from(["${alice_session}", "${bob_session}", "nope", ""]),
    "format": st.sampled_from(["event", "content", ""]),
    "membership": st.sampled_from(["join", "leave", "invite", "ban", "knock", "x"]),
    "not_membership": st.sampled_from(["join", "leave", "x"]),
    "username": st.sampled_from(["alice", "new_user", "", "A", "é"]),
    "kind": st.sampled_from(["guest", "user", ""]),
}
QUERY_PAIR = st.one_of(
    st.sampled_from(sorted(QUERY_VALUES)).flatmap(
        lambda key: st.tuples(st.just(key), st.one_of(QUERY_VALUES[key], QUERY_VALUES[key], TEXT))
    ),
    st.tuples(TEXT, TEXT),
).flatmap(
    lambda pair: st.tuples(
        st.just(pair[0]),
        st.just(pair[1]),
        st.sampled_from(["encoded", "encoded", "encoded", "verbatim", "bare"]),
    )
)

WRONG_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
WRONG_METHODS += ["get", "BREW", "PROPFIND"]
PATH_SUFFIXES = st.sampled_from([""] * 12 + ["/", "//", "/x", "%2F", ";x", "/.", "/.."])


def _methods(target: Target) -> st.SearchStrategy[str]:
    own = sorted(target.methods - {"OPTIONS"})
    return st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(WRONG_METHODS))


@st.composite
def _plausible_headers(draw: st.DrawFn, has_body: bool) -> tuple[tuple[str, str], ...]:
    who = draw(st.sampled_from(["alice"] * 5 + ["bob"]))
    headers = [("Host", "${host}"), ("Authorization", "Bearer ${" + who + "_token}")]
    if has_body:
        headers.append(("Content-Type", "application/json"))
    if draw(st.integers(0, 3)) == 0:
        headers.append(("Matrix-Session", "${" + who + "_session}"))
    return tuple(headers)


PLAUSIBLE_QUERY = st.sampled_from(sorted(QUERY_VALUES)).flatmap(
    lambda key: st.tuples(st.just(key), QUERY_VALUES[key], st.just("encoded"))
)


@st.composite
def specs(draw: st.DrawFn, target: Target) -> Spec:
    """Mostly a plausible request (own method, real ids, a token, a body that works but
    for a few mutations) that reaches deep code; else a wild one."""
    if draw(st.integers(0, 9)) < 6:
        method = draw(st.sampled_from(sorted(target.methods - {"HEAD", "OPTIONS"}) or ["GET"]))
        path: list[str | Segment] = [
            part if isinstance(part, str) else draw(_plausible_segment(part))
            for part in target.parts
        ]
        query = tuple(draw(st.lists(PLAUSIBLE_QUERY, max_size=3)))
        body = None
        if method in ("POST", "PUT"):
            body = Body("working", draw(working_bodies(target.endpoint)))
        headers = draw(_plausible_headers(body is not None))
        return Spec(method, tuple(path), query, headers, body)
    method = draw(_methods(target))
    path = [part if isinstance(part, str) else draw(_segment(part)) for part in target.parts]
    path.append(draw(PATH_SUFFIXES))
    query = tuple(draw(st.lists(QUERY_PAIR, max_size=5))) if draw(st.booleans()) else ()
    if draw(st.integers(0, 7)) == 0:  # the token in the query string instead
        query += (("access_token", "${alice_token}", "encoded"),)
    wants_body = method in ("POST", "PUT", "PATCH")
    body = draw(BODIES) if wants_body or draw(st.integers(0, 5)) == 0 else None
    if wants_body and draw(st.integers(0, 9)) == 0:
        body = None
    chunked = body is not None and draw(st.integers(0, 7)) == 0
    headers = draw(_headers(body is not None))
    return Spec(method, tuple(path), query, headers, body, chunked)


def canonical(target: Target, method: str) -> Spec:
    """The plain request at a route: alice's token, real ids, `{}` for a body."""
    path = tuple(p if isinstance(p, str) else _canonical_segment(p) for p in target.parts)
    headers: tuple[tuple[str, str], ...] = (
        ("Host", "${host}"),
        ("Authorization", "Bearer ${alice_token}"),
    )
    body = Body("empty object", {}) if method in ("POST", "PUT") else None
    if body is not None:
        headers += (("Content-Type", "application/json"),)
    return Spec(method, path, (), headers, body)


# --- the fuzz at every route ----------------------------------------------------------


def test_every_route_is_a_fuzz_target() -> None:
    """The targets are the app's url_map, every one of them, and the generator knows how
    to fill each path parameter (a new converter type fails here, not silently)."""
    assert sorted((t.rule, t.endpoint, t.methods) for t in TARGETS) == sorted(app_rules())
    assert len({t.id for t in TARGETS}) == len(TARGETS)
    for target in TARGETS:
        for variable in target.variables:
            assert variable.converter in KNOWN_CONVERTERS, (target.rule, variable)


@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
def test_route(target: Target, server: FuzzServer, world: World) -> None:
    _require_alive(server)
    world.refresh()
    # The plain request at each method of the rule must reach exactly this rule.
    for method in sorted(target.methods):
        request, path = canonical(target, method).render(world.ids)
        if method != "OPTIONS":  # OPTIONS matches whichever rule of a path comes first
            matched = url_adapter_match(path, method)
            assert matched == (target.rule, target.endpoint), (method, path, matched)
        send_checked(server, request, head=method == "HEAD")

    @_settings(EXAMPLES_PER_ROUTE)
    @seed(SEED ^ zlib.crc32(target.id.encode()))  # each route its own stream
    @given(spec=specs(target))
    def fuzz(spec: Spec) -> None:
        request, _ = spec.render(world.ids)
        reply = send_checked(server, request, head=spec.method == "HEAD")
        if 200 <= reply.status < 300 and spec.method not in ("GET", "HEAD", "OPTIONS"):
            world.heal()

    fuzz()


CONCURRENT_EXAMPLES = max(1, EXAMPLES_PER_ROUTE)


@_settings(CONCURRENT_EXAMPLES)
@seed(SEED)
@given(batch=st.lists(st.sampled_from(TARGETS).flatmap(specs), min_size=4, max_size=12))
def test_concurrent_requests(server: FuzzServer, world: World, batch: list[Spec]) -> None:
    """Requests at random routes at once (long-polls among them): races must not 500."""
    ids = world.ids
    requests = [(spec.render(ids)[0], spec.method == "HEAD") for spec in batch]
    offset = server.log_offset()

    def send(item: tuple[bytes, bool]) -> Reply:
        return send_checked(server, item[0], head=item[1], check_log=False)

    with ThreadPoolExecutor(len(requests)) as pool:
        list(pool.map(send, requests))
    log = server.log_since(offset)
    problem = _log_problem(log)
    if problem is not None:  # which of the batch caused it, the log's traceback tells
        sent = b"\n---\n".join(request for request, _ in requests)
        raise AssertionError(_report(server, problem, sent, [], log))
    world.heal()


# --- the HTTP level: raw sockets ------------------------------------------------------


def _request(
    target: bytes = b"/_matrix/client/versions",
    *,
    method: bytes = b"GET",
    version: bytes = b"HTTP/1.1",
    headers: bytes = b"Host: fuzz\r\n",
    body: bytes = b"",
) -> bytes:
    return method + b" " + target + b" " + version + b"\r\n" + headers + b"\r\n" + body


VERSIONS = _request()
LAST = _request(headers=b"Host: fuzz\r\nConnection: close\r\n")
WS_HEADERS = (
    b"Host: fuzz\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
# A masked WebSocket text frame ("hi") and a close frame, as a client would send them.
WS_FRAMES = b"\x81\x82\x00\x00\x00\x00hi" + b"\x88\x80\x00\x00\x00\x00"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LOGIN = _request(
    b"/_matrix/client/v3/login",
    method=b"POST",
    headers=b"Host: fuzz\r\nContent-Type: application/json\r\nContent-Length: 57\r\n",
    body=b'{"type":"m.login.password","user":"alice","password":"x"}',
)

H2C = b"Host: f\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: "


def _chunked(body: bytes) -> bytes:
    headers = b"Host: f\r\nTransfer-Encoding: chunked\r\n"
    return _request(b"/_matrix/client/v3/login", method=b"POST", headers=headers, body=body)


def _login_with(old: bytes, new: bytes) -> bytes:
    return LOGIN.replace(old, new)


def _with_headers(headers: bytes, **kwargs: Any) -> bytes:
    return _request(headers=b"Host: f\r\n" + headers, **kwargs)


# Named abuses of the connection: (id, chunks sent in order). The WebSocket upgrades
# come last: followed by more bytes they used to end the whole process.
RAW_CASES: list[tuple[str, list[bytes]]] = [
    ("garbage-request-line", [b"\x00\x01\x02 garbage \xff\r\n\r\n"]),
    ("only-crlf", [b"\r\n\r\n\r\n"]),
    ("leading-crlf-then-request", [b"\r\n\r\n" + LAST]),
    ("bare-lf-line-endings", [LAST.replace(b"\r\n", b"\n")]),
    ("bare-cr-line-endings", [LAST.replace(b"\r\n", b"\r")]),
    ("pipelined-garbage-after-404", [_request(b"/nowhere") + b"GARBAGE \x00\r\n\r\n" + LAST]),
    ("pipelined-garbage-after-400", [_request(b"/%00") + b"\xff\xfe\r\n\r\n" + LAST]),
    ("pipelined-three", [VERSIONS + LOGIN + LAST]),
    ("pipelined-post-then-tls", [LOGIN + b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1"]),
    ("tls-client-hello", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64]),
    ("trickled-request", [bytes([b]) for b in LAST]),
    ("body-shorter-than-content-length", [_login_with(b"Length: 57", b"Length: 900")]),
    ("body-longer-than-content-length", [_login_with(b"Length: 57", b"Length: 20") + LAST]),
    ("content-length-twice", [_login_with(b"57", b"57\r\nContent-Length: 5")]),
    ("content-length-negative", [_login_with(b"Length: 57", b"Length: -1")]),
    ("content-length-not-a-number", [_login_with(b"Length: 57", b"Length: 5x")]),
    ("content-length-huge", [_login_with(b"Length: 57", b"Length: " + b"9" * 40)]),
    ("content-length-over-limit", [_login_with(b"Length: 57", b"Length: 1048577")]),
    ("content-length-and-chunked", [_login_with(b"57", b"57\r\nTransfer-Encoding: chunked")]),
    ("transfer-encoding-gzip", [_login_with(b"Content-Length: 57", b"Transfer-Encoding: gzip")]),
    ("chunked-bad-size", [_chunked(b"zz\r\n{}\r\n0\r\n\r\n")]),
    ("chunked-huge-size", [_chunked(b"ffffffffffffffff\r\n{}\r\n")]),
    ("chunked-over-limit", [_chunked(b"100001\r\n" + b"x" * 0x100001 + b"\r\n0\r\n\r\n")]),
    ("chunked-with-trailers", [_chunked(b"2\r\n{}\r\n0\r\nX-T: 1\r\n\r\n")]),
    ("expect-100-continue", [_login_with(b"Host: fuzz", b"Host: f\r\nExpect: 100-continue")]),
    ("missing-host", [_request(headers=b"")]),
    ("http10-without-host", [_request(version=b"HTTP/1.0", headers=b"")]),
    ("duplicate-host", [_request(headers=b"Host: a\r\nHost: b\r\n")]),
    ("http2-version-in-http1", [_request(version=b"HTTP/2.0")]),
    ("http-version-9", [_request(version=b"HTTP/9.9")]),
    ("http09-request", [b"GET /_matrix/client/versions\r\n"]),
    ("absolute-form-target", [_request(b"http://evil.example/_matrix/client/versions")]),
    ("asterisk-target-get", [_request(b"*")]),
    ("asterisk-target-options", [_request(b"*", method=b"OPTIONS")]),
    ("authority-form-connect", [_request(b"127.0.0.1:1", method=b"CONNECT")]),
    ("lowercase-method", [_request(method=b"get")]),
    ("long-method", [_request(method=b"G" * 10_000)]),
    ("headers-over-64k", [_with_headers(b"X-Big: " + b"a" * 70_000 + b"\r\n")]),
    ("many-headers", [_with_headers(b"X-A: b\r\n" * 5000)]),
    ("request-line-over-64k", [_request(b"/" + b"a" * 70_000)]),
    ("raw-utf8-in-path", [_request("/_matrix/client/v3/profile/@é:fuzz".encode())]),
    ("raw-invalid-utf8-in-path", [_request(b"/_matrix/client/v3/profile/\xff\xfe")]),
    ("raw-space-in-path", [_request(b"/_matrix/client/v3/profile/a b")]),
    ("raw-nul-in-path", [_request(b"/_matrix/\x00/versions")]),
    ("raw-utf8-header-value", [_with_headers("X-A: é ☃\r\n".encode())]),
    ("raw-latin1-header-value", [_with_headers(b"X-A: \xff\xfe\r\n")]),
    (
        "raw-utf8-authorization",
        [_with_headers("Authorization: Bearer é☃\r\n".encode(), target=b"/_matrix/client/v3/sync")],
    ),
    ("control-char-header-value", [_with_headers(b"X-A: a\x01b\r\n")]),
    ("nul-in-header-value", [_with_headers(b"X-A: a\x00b\r\n")]),
    ("header-name-with-space", [_with_headers(b"X A: b\r\n")]),
    ("header-without-colon", [_with_headers(b"NoColon\r\n")]),
    ("obsolete-line-folding", [_with_headers(b"X-A: b\r\n c\r\n")]),
    ("h2-preface-then-garbage", [H2_PREFACE + b"\x00\x00\x00\x04" + b"\x00" * 5 + b"\xff" * 64]),
    ("h2-preface-alone", [H2_PREFACE]),
    ("h2-preface-truncated", [H2_PREFACE[:10]]),
    (
        "h2c-upgrade-then-garbage",
        [_request(headers=H2C + b"AAMAAABkAAQAoAAAAAIAAAAA\r\n") + b"\xff" * 64],
    ),
    ("h2c-upgrade-bad-settings", [_request(headers=H2C + b"!!!\r\n")]),
    ("upgrade-unknown-protocol", [_with_headers(b"Connection: Upgrade\r\nUpgrade: x\r\n")]),
    ("websocket-upgrade", [_request(headers=WS_HEADERS)]),
    ("websocket-upgrade-then-frames", [_request(headers=WS_HEADERS) + WS_FRAMES]),
    ("websocket-upgrade-bad-version", [_request(headers=WS_HEADERS.replace(b": 13", b": 99"))]),
    ("websocket-upgrade-then-request", [_request(headers=WS_HEADERS) + LAST]),
    (
        "websocket-upgrade-api-path-then-request",
        [_request(b"/_matrix/client/v3/sync", headers=WS_HEADERS) + VERSIONS + LAST],
    ),
]


def converse_checked(server: FuzzServer, chunks: list[bytes]) -> Conversation:
    """Send raw bytes on one connection; every response must be under 500 (an error of
    the app a JSON error body), the server must answer or close within the bound, and
    stay alive and answering /versions on a new connection."""
    _require_alive(server)
    offset = server.log_offset()
    sent = b"".join(chunks)
    problem: str | None = None
    conversation = Conversation()
    try:
        conversation = converse(server.host, server.port, chunks)
    except Hang:
        problem = "hang: no answer nor close within the bound after the client's EOF"
    except OSError as exc:
        problem = f"connection failed: {exc!r}"
    probe: Reply | None = None
    try:
        probe = exchange(server.host, server.port, versions_request("fuzz"))
    except (Hang, BadResponse, OSError):
        try:  # a dying server may still accept the probe: give it a moment to exit
            server.process.wait(2)
        except subprocess.TimeoutExpired:
            pass
    replies = conversation.replies
    if not server.alive():
        _died(server, sent, replies, offset)
    if probe is None or probe.status != 200:
        problem = problem or f"no 200 from /versions on a new connection afterwards: {probe}"
    for reply in replies:
        problem = problem or _reply_problem(reply, head=False, app_only=False)
    log = server.log_since(offset)
    problem = problem or _log_problem(log)
    if problem is not None:
        raise AssertionError(_report(server, problem, sent, replies, log))
    return conversation


def _mutate(base: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(base)
    for position, op, byte in edits:
        at = position % (len(data) + 1)
        if op == 0:
            data.insert(at, byte)
        elif op == 1 and at < len(data):
            del data[at]
        elif at < len(data):
            data[at] = byte
    return bytes(data)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


LINE_ENDS = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b"\r\r\n", b""])
RAW_METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"PRI", b""])
RAW_TARGETS = st.one_of(
    st.sampled_from(
        [b"/_matrix/client/versions", b"/_matrix/client/v3/login", b"/_matrix/client/v3/sync"]
    ),
    st.sampled_from([b"*", b"/", b"", b"//", b"/..", b"http://x/", b"/%ff", b"/\xc3\xa9"]),
    st.binary(max_size=60),
    st.text(max_size=30).map(lambda t: b"/" + t.encode()),
)
RAW_VERSIONS = st.sampled_from(
    [b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1x", b"", b"http/1.1"]
)
RAW_HEADER = st.one_of(
    st.tuples(
        st.binary(max_size=20), st.sampled_from([b": ", b":", b" : ", b""]), st.binary(max_size=40)
    ),
    st.sampled_from(
        [
            (b"Host", b": ", b"fuzz"),
            (b"Content-Length", b": ", b"10"),
            (b"Content-Length", b": ", b"0"),
            (b"Transfer-Encoding", b": ", b"chunked"),
            (b"Connection", b": ", b"close"),
            (b"Connection", b": ", b"Upgrade"),
            (b"Upgrade", b": ", b"h2c"),
            (b"Expect", b": ", b"100-continue"),
            (b"Content-Type", b": ", b"application/json"),
        ]
    ),
).map(lambda h: h[0] + h[1] + h[2])


@st.composite
def raw_garbage(draw: st.DrawFn) -> list[bytes]:
    kind = draw(st.sampled_from(["bytes", "request-like", "mutated", "mutated"]))
    if kind == "bytes":
        data = draw(st.binary(min_size=1, max_size=400))
    elif kind == "request-like":
        end = draw(LINE_ENDS)
        line = draw(RAW_METHODS) + b" " + draw(RAW_TARGETS) + b" " + draw(RAW_VERSIONS)
        headers = draw(st.lists(RAW_HEADER, max_size=6))
        data = end.join([line, *headers, b"", b""]) + draw(st.binary(max_size=80))
    else:
        base = draw(st.sampled_from([VERSIONS, LOGIN, LAST, _request(headers=WS_HEADERS)]))
        edit = st.tuples(st.integers(0, 2000), st.integers(0, 2), st.integers(0, 255))
        data = _mutate(base, draw(st.lists(edit, min_size=1, max_size=6)))
    if kind != "bytes" and draw(st.booleans()):
        data += LAST  # pipelined after it: does the connection still work, or close?
    return _split(data, draw(st.lists(st.integers(0, 2000), max_size=2)))


@_settings(RAW_EXAMPLES)
@seed(SEED)
@given(chunks=raw_garbage())
def test_http_garbage(server: FuzzServer, chunks: list[bytes]) -> None:
    converse_checked(server, chunks)


def test_http2(server: FuzzServer) -> None:
    """The app also answers over HTTP/2 (prior knowledge and h2c upgrade); a frame on a
    stream never opened ends the connection, not the server."""
    host, port = server.host, server.port
    paths = [b"/_matrix/client/versions", b"/nowhere", b"/_matrix/client/v3/sync", b"/%ff"]
    bad_frame = b"\x00\x00\x05\x00\x01\x00\x00\x00\x07" + b"\xff" * 40
    for upgrade in (False, True):
        statuses = h2_converse(host, port, paths, upgrade=upgrade)
        assert len(statuses) == len(paths) and all(s < 500 for s in statuses), statuses
        statuses = h2_converse(host, port, paths, upgrade=upgrade, garbage=bad_frame)
        assert all(status < 500 for status in statuses), statuses
        assert server.alive()
    assert_answers_versions(server)


@pytest.mark.parametrize(
    "chunks", [chunks for _, chunks in RAW_CASES], ids=[n for n, _ in RAW_CASES]
)
def test_http_level(server: FuzzServer, chunks: list[bytes]) -> None:
    # Repeated: some of what these provoke is a race (two writers on one connection).
    for _ in range(RAW_REPEATS):
        if converse_checked(server, chunks).left_open:
            break  # deterministic, and each try waits IDLE_S: once is enough


# Pipelined requests are answered in order; after a `Connection: close` request (LAST)
# the server answers it and closes, whatever bytes follow (RFC 9112, 9.3 and 9.6).
PIPELINES: list[tuple[str, list[bytes], list[int]]] = [
    ("two", [VERSIONS + LAST], [200, 200]),
    ("then-garbage", [VERSIONS + b"GARBAGE\r\n\r\n"], [200, 400]),
    ("close-then-request", [LAST + VERSIONS], [200]),
    ("close-then-garbage", [LAST + b"GARBAGE\r\n\r\n"], [200]),
]


@pytest.mark.parametrize(
    ("chunks", "statuses"),
    [(chunks, statuses) for _, chunks, statuses in PIPELINES],
    ids=[name for name, _, _ in PIPELINES],
)
def test_pipelined_responses(server: FuzzServer, chunks: list[bytes], statuses: list[int]) -> None:
    _require_alive(server)
    for _ in range(RAW_REPEATS):
        got = converse(server.host, server.port, chunks, half_close=False)
        answered = [reply.status for reply in got.replies]
        assert answered == statuses, (
            f"sent {b''.join(chunks)!r}: answered {answered}, expected {statuses}; "
            f"the server sent {got.received[:400]!r}"
        )


def test_server_survived(server: FuzzServer) -> None:
    """Last: the process outlived the whole run and answers; nothing in its log is an
    error; it still shuts down cleanly and promptly (no request task left stuck)."""
    _require_alive(server)
    assert server.process.poll() is None
    assert_answers_versions(server)
    log = server.log_since(0)
    contained = collections.Counter(m.group(1) for m in _CONTAINED.finditer(log))
    print(f"fuzz: connections closed after a contained error, by type: {dict(contained)}")
    problems = [problem] if (problem := _log_problem(log)) else []
    started = time.monotonic()
    code = server.stop(timeout_s=STOP_BOUND_S + 10)
    took = time.monotonic() - started
    if code != 0 or took >= STOP_BOUND_S:
        problems.append(f"SIGTERM: exit code {code} after {took:.1f} s (bound {STOP_BOUND_S} s)")
    assert not problems, "\n".join([*problems, f"server log: {server.log_path}"])
