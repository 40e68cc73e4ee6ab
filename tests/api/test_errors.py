"""Errors: every failure is Matrix JSON with the right status, and malformed input of
any kind never produces a 5xx."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from trio.testing import MockClock

from homeserver.config import Config
from tests.helpers import PREFIX, Api, User, make_config, q

MAX_BODY = 4096
ERRCODE = re.compile(r"^M_[A-Z_]+$")


@pytest.fixture
def config() -> Config:
    return make_config(max_request_bytes=MAX_BODY)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass
class RawReply:
    status: int
    content_type: str | None
    text: str
    body: Any


async def raw_call(
    api: Api,
    method: str,
    path: str,
    *,
    token: str | User | None = None,
    data: bytes | None = None,
    query: dict[str, str] | None = None,
) -> RawReply:
    """A request whose response is parsed strictly (no NaN/Infinity)."""
    if not path.startswith("/"):
        path = f"{PREFIX}/{path}"
    headers = {}
    if isinstance(token, User):
        token = token.access_token
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if data is not None:
        headers["Content-Type"] = "application/json"
    response = await api.client.open(
        path, method=method, data=data, headers=headers, query_string=query
    )
    text = await response.get_data(as_text=True)
    try:
        body = json.loads(text, parse_constant=_no_constants) if text else None
    except ValueError:
        body = None
    return RawReply(response.status_code, response.headers.get("content-type"), text, body)


def assert_matrix_error(
    reply: RawReply, status: int | None = None, errcode: str | None = None
) -> None:
    """`reply` is a Matrix error: JSON object with errcode and error, application/json."""
    context = f"{reply.status} {reply.text[:300]!r}"
    assert reply.content_type == "application/json", context
    assert isinstance(reply.body, dict), context
    assert isinstance(reply.body.get("errcode"), str), context
    assert ERRCODE.match(reply.body["errcode"]), context
    assert isinstance(reply.body.get("error"), str), context
    assert reply.status >= 400, context
    if status is not None:
        assert reply.status == status, context
    if errcode is not None:
        assert reply.body["errcode"] == errcode, context


def assert_sane(reply: RawReply, what: object) -> None:
    """No server error, no redirect, and JSON either way; errors are Matrix errors."""
    context = f"{what!r}: {reply.status} {reply.text[:300]!r}"
    assert reply.status < 500, context
    assert not 300 <= reply.status < 400, context
    assert reply.content_type == "application/json", context
    if reply.status == 401 and isinstance(reply.body, dict) and "flows" in reply.body:
        # A user-interactive auth step: the first one carries no errcode.
        assert isinstance(reply.body["session"], str), context
    elif reply.status >= 400:
        assert_matrix_error(reply)
    else:
        assert isinstance(reply.body, dict | list), context


# -- error format -------------------------------------------------------------------------


async def test_errors_are_matrix_json(api: Api) -> None:
    alice = await api.register("alice")
    cases: list[tuple[str, str, str | User | None, bytes | None, int, str]] = [
        ("GET", "account/whoami", None, None, 401, "M_MISSING_TOKEN"),
        ("GET", "account/whoami", "nope", None, 401, "M_UNKNOWN_TOKEN"),
        ("GET", "devices/NOPE", alice, None, 404, "M_NOT_FOUND"),
        ("POST", "login", None, b"nope", 400, "M_NOT_JSON"),
        ("POST", "login", None, b"[]", 400, "M_BAD_JSON"),
        ("POST", "login", None, b'{"type": "x"}', 400, "M_UNKNOWN"),
        ("POST", "login", None, b'{"type": "m.login.password"}', 400, "M_MISSING_PARAM"),
        (
            "POST",
            "login",
            None,
            b'{"type": "m.login.password", "user": "x", "password": "y"}',
            403,
            "M_FORBIDDEN",
        ),
        ("GET", "nope", None, None, 404, "M_UNRECOGNIZED"),
        ("DELETE", "sync", alice, None, 405, "M_UNRECOGNIZED"),
        ("POST", "createRoom", alice, b'{"x": "' + b"a" * MAX_BODY + b'"}', 413, "M_TOO_LARGE"),
        ("GET", "sync", alice, None, 200, ""),
    ]
    for method, path, token, data, status, errcode in cases:
        reply = await raw_call(api, method, path, token=token, data=data)
        if status == 200:
            assert reply.status == 200
            continue
        assert_matrix_error(reply, status, errcode)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{",
        b"{'single': 'quotes'}",
        b'{"a": 1,}',
        b"\xff\xfe{}",
        b'{"a": "\xff"}',  # invalid UTF-8
        '{"type": "x"}'.encode("utf-16"),  # JSON, but not UTF-8
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark is not JSON
        b"   ",
        b"",
    ],
)
async def test_not_json(api: Api, raw: bytes) -> None:
    alice = await api.register("alice")
    for method, path, token in [
        ("POST", "login", None),
        ("POST", "register", None),
        ("POST", f"user/{q(alice.user_id)}/filter", alice),
        ("PUT", f"user/{q(alice.user_id)}/account_data/org.example", alice),
        ("PUT", f"profile/{q(alice.user_id)}/displayname", alice),
    ]:
        reply = await raw_call(api, method, path, token=token, data=raw)
        assert_matrix_error(reply, 400, "M_NOT_JSON")


@pytest.mark.parametrize("raw", [b"[]", b"[{}]", b'"text"', b"1", b"1.5", b"null", b"true"])
async def test_json_that_is_not_an_object(api: Api, raw: bytes) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    for method, path, token in [
        ("POST", "login", None),
        ("POST", "register", None),
        ("POST", "createRoom", alice),
        ("PUT", f"rooms/{q(room_id)}/send/m.room.message/t1", alice),
        ("PUT", f"rooms/{q(room_id)}/state/m.room.topic/", alice),
        ("POST", f"rooms/{q(room_id)}/invite", alice),
        ("POST", f"user/{q(alice.user_id)}/filter", alice),
        ("PUT", f"user/{q(alice.user_id)}/account_data/org.example", alice),
        ("PUT", f"devices/{alice.device_id}", alice),
    ]:
        reply = await raw_call(api, method, path, token=token, data=raw)
        assert_matrix_error(reply, 400, "M_BAD_JSON")


@pytest.mark.parametrize(
    ("path_kind", "body"),
    [
        ("createRoom", {"name": 5}),
        ("createRoom", {"invite": "@bob:test.local"}),
        ("createRoom", {"invite": [5]}),
        ("createRoom", {"is_direct": "yes"}),
        ("createRoom", {"initial_state": {}}),
        ("createRoom", {"initial_state": [{"type": "m.room.topic"}]}),
        ("createRoom", {"creation_content": []}),
        ("createRoom", {"power_level_content_override": {"users": {"@a:b": "x"}}}),
        ("invite", {"user_id": 5}),
        ("invite", {"user_id": "@bob:test.local", "reason": 5}),
        ("login", {"type": "m.login.password", "identifier": [], "password": "x"}),
        ("register", {"username": 5, "password": "x"}),
        ("filter", {"room": {"timeline": {"limit": "10"}}}),
        ("profile", {"displayname": 5}),
        ("state", {"users": {"@alice:test.local": "lots"}}),
    ],
)
async def test_wrong_field_types(api: Api, path_kind: str, body: dict[str, Any]) -> None:
    alice = await api.register("alice")
    await api.register("bob")
    room_id = await api.create_room(alice)
    method, path = {
        "createRoom": ("POST", "createRoom"),
        "invite": ("POST", f"rooms/{q(room_id)}/invite"),
        "login": ("POST", "login"),
        "register": ("POST", "register"),
        "filter": ("POST", f"user/{q(alice.user_id)}/filter"),
        "profile": ("PUT", f"profile/{q(alice.user_id)}/displayname"),
        "state": ("PUT", f"rooms/{q(room_id)}/state/m.room.power_levels/"),
    }[path_kind]
    reply = await raw_call(api, method, path, token=alice, data=json.dumps(body).encode())
    assert_matrix_error(reply, 400, "M_BAD_JSON")


# -- strict JSON: what is accepted is stored and later served to others ------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": NaN}',
        b'{"n": Infinity}',
        b'{"n": -Infinity}',
        b'{"n": 1e400}',
        b'{"n": -1e400}',
        b'{"s": "\\ud800"}',  # an unpaired surrogate cannot be encoded as UTF-8
        b'{"s": "x\\udfff"}',
        b'{"s": "\\ud83d\\u0041"}',
        b'{"k": {"\\udc00": 1}}',
    ],
)
async def test_unrepresentable_json_is_refused(api: Api, raw: bytes) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await api.create_room(alice, preset="public_chat")
    await api.call("POST", f"rooms/{q(room_id)}/join", token=bob)
    targets = [
        ("PUT", f"rooms/{q(room_id)}/send/m.room.message/t1"),
        ("PUT", f"rooms/{q(room_id)}/state/org.example/"),
        ("PUT", f"user/{q(alice.user_id)}/account_data/org.example"),
        ("PUT", f"user/{q(alice.user_id)}/rooms/{q(room_id)}/account_data/org.example"),
        ("POST", f"user/{q(alice.user_id)}/filter"),
        ("POST", "createRoom"),
    ]
    for method, path in targets:
        reply = await raw_call(api, method, path, token=alice, data=raw)
        assert_matrix_error(reply, 400, "M_BAD_JSON")
    # Nothing was stored: both members still sync, and get strict JSON.
    for user in (alice, bob):
        sync = await raw_call(api, "GET", "sync", token=user)
        assert sync.status == 200 and isinstance(sync.body, dict), sync.text[:300]


@pytest.mark.parametrize(
    "raw",
    [b'{"a":' + b"[" * 2040 + b"]" * 2040 + b"}", b"[" * 2048 + b"]" * 2048],
)
async def test_deeply_nested_json_is_no_server_error(api: Api, raw: bytes) -> None:
    """Nesting past the parser's recursion limit is M_BAD_JSON (whether the limit is
    reached depends on the Python version; either way it is never a 500)."""
    alice = await api.register("alice")
    path = f"user/{q(alice.user_id)}/account_data/org.example"
    assert len(raw) <= MAX_BODY
    reply = await raw_call(api, "PUT", path, token=alice, data=raw)
    assert reply.status in (200, 400), reply.text[:300]
    if reply.status == 400:
        assert_matrix_error(reply, 400, "M_BAD_JSON")
    sync = await raw_call(api, "GET", "sync", token=alice)
    assert sync.status == 200 and isinstance(sync.body, dict), sync.text[:300]


async def test_unrepresentable_json_in_error_messages(api: Api) -> None:
    """Values echoed in error messages cannot break the error response."""
    reply = await raw_call(
        api, "POST", "login", data=b'{"type": "\\ud800", "user": "a", "password": "b"}'
    )
    assert_matrix_error(reply, 400, "M_BAD_JSON")


async def test_inline_filter_is_parsed_strictly(api: Api) -> None:
    alice = await api.register("alice")
    for inline in ('{"room": {"timeline": {"limit": NaN}}}', "{" * 3000, '{"a": "\\ud800"}'):
        reply = await raw_call(api, "GET", "sync", token=alice, query={"filter": inline})
        assert_matrix_error(reply, 400, "M_BAD_JSON")


async def test_valid_unicode_round_trips(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    # An escaped surrogate pair and raw UTF-8 (NUL is refused: see test_nul_characters...).
    raw = '{"msgtype": "m.text", "body": "\\ud83d\\ude00 \u2013 \u2713 end"}'.encode()
    reply = await raw_call(
        api, "PUT", f"rooms/{q(room_id)}/send/m.room.message/t1", token=alice, data=raw
    )
    assert reply.status == 200, reply.text
    sync = await raw_call(api, "GET", "sync", token=alice)
    events = sync.body["rooms"]["join"][room_id]["timeline"]["events"]
    assert events[-1]["content"]["body"] == "\U0001f600 \u2013 \u2713 end"
    # Large (but finite) numbers are fine.
    ok = await raw_call(
        api,
        "PUT",
        f"user/{q(alice.user_id)}/account_data/org.example",
        token=alice,
        data=b'{"big": 1e300, "int": 123456789012345678901234567890}',
    )
    assert ok.status == 200


# -- unknown paths and methods ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/_matrix/client/v3/nope",
        "/_matrix/client/v4/sync",
        "/_matrix/client/v3/rooms",
        "/_matrix/client/v3/rooms/!a:test.local/nope",
        "/_matrix/client/unstable/org.example/thing",
        "/_matrix/media/v3/config",
        "/_matrix/",
        "/",
        "/favicon.ico",
    ],
)
async def test_unknown_path_is_unrecognized(api: Api, path: str) -> None:
    alice = await api.register("alice")
    for method in ("GET", "POST", "PUT", "DELETE"):
        for token in (None, alice):
            reply = await raw_call(api, method, path, token=token)
            assert_matrix_error(reply, 404, "M_UNRECOGNIZED")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", f"{PREFIX}/sync"),
        ("POST", f"{PREFIX}/sync"),
        ("POST", "/_matrix/client/versions"),
        ("PUT", f"{PREFIX}/login"),
        ("DELETE", f"{PREFIX}/login"),
        ("GET", f"{PREFIX}/logout"),
        ("GET", f"{PREFIX}/createRoom"),
        ("POST", f"{PREFIX}/account/whoami"),
        ("PUT", f"{PREFIX}/register"),
        ("POST", f"{PREFIX}/devices"),
        ("POST", f"{PREFIX}/pushrules/"),
        ("POST", "/.well-known/matrix/client"),
        ("PATCH", f"{PREFIX}/capabilities"),
    ],
)
async def test_wrong_method_is_unrecognized(api: Api, method: str, path: str) -> None:
    alice = await api.register("alice")
    reply = await raw_call(api, method, path, token=alice, data=b"{}")
    assert_matrix_error(reply, 405, "M_UNRECOGNIZED")


async def test_routes_do_not_redirect(api: Api) -> None:
    """State without a state key works with and without the trailing slash."""
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    base = f"rooms/{q(room_id)}/state/m.room.topic"
    for suffix in ("", "/"):
        put = await raw_call(
            api, "PUT", base + suffix, token=alice, data=json.dumps({"topic": suffix}).encode()
        )
        assert put.status == 200, put.text[:300]
        got = await raw_call(api, "GET", base + suffix, token=alice)
        assert (got.status, got.body) == (200, {"topic": suffix})
    for path in ("pushrules", "pushrules/", "sync/", "account/whoami/"):
        reply = await raw_call(api, "GET", path, token=alice)
        assert reply.status == 200, (path, reply.status)


# -- body size -------------------------------------------------------------------------------


def body_of_size(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    data = b'{"pad": "' + b"x" * (size - 11) + b'"}'
    assert len(data) == size
    return data


async def test_body_too_large(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    targets = [
        ("PUT", f"user/{q(alice.user_id)}/account_data/org.example"),
        ("PUT", f"rooms/{q(room_id)}/send/m.room.message/big"),
        ("POST", f"user/{q(alice.user_id)}/filter"),
        ("POST", "createRoom"),
    ]
    for method, path in targets:
        reply = await raw_call(api, method, path, token=alice, data=body_of_size(MAX_BODY + 1))
        assert_matrix_error(reply, 413, "M_TOO_LARGE")
    for data in (body_of_size(MAX_BODY + 1), b"x" * 100_000):
        login = await raw_call(api, "POST", "login", data=data)
        assert_matrix_error(login, 413, "M_TOO_LARGE")


async def test_body_at_the_limit_is_accepted(api: Api) -> None:
    alice = await api.register("alice")
    path = f"user/{q(alice.user_id)}/account_data/org.example"
    reply = await raw_call(api, "PUT", path, token=alice, data=body_of_size(MAX_BODY))
    assert reply.status == 200, reply.text[:300]
    got = await raw_call(api, "GET", path, token=alice)
    assert got.body == json.loads(body_of_size(MAX_BODY))


# -- user ids in paths ---------------------------------------------------------------------


async def test_user_ids_in_paths_raw_and_percent_encoded(api: Api) -> None:
    alice = await api.register("alice")
    forms = [q(alice.user_id), alice.user_id, "%40alice%3atest.local", "@alice%3Atest.local"]
    for i, form in enumerate(forms):
        put = await api.call(
            "PUT", f"user/{form}/account_data/org.example", token=alice, body={"form": i}
        )
        assert put.status == 200, (form, put.body)
        for read_form in forms:
            got = await api.call("GET", f"user/{read_form}/account_data/org.example", token=alice)
            assert (got.status, got.body) == (200, {"form": i}), (form, read_form)

        created = await api.call("POST", f"user/{form}/filter", token=alice, body={"i": i})
        assert created.status == 200, (form, created.body)
        filter_id = created.body["filter_id"]
        for read_form in forms:
            got = await api.call("GET", f"user/{read_form}/filter/{filter_id}", token=alice)
            assert got.body == {"i": i}

        name = f"Alice {i}"
        put = await api.call(
            "PUT", f"profile/{form}/displayname", token=alice, body={"displayname": name}
        )
        assert put.status == 200, (form, put.body)
        for read_form in forms:
            got = await api.call("GET", f"profile/{read_form}")
            assert got.body == {"displayname": name}


async def test_room_ids_in_paths_raw_and_percent_encoded(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    for i, form in enumerate((q(room_id), room_id)):
        sent = await api.call(
            "PUT",
            f"rooms/{form}/send/m.room.message/t{i}",
            token=alice,
            body={"msgtype": "m.text", "body": str(i)},
        )
        assert sent.status == 200, sent.body
        members = await api.call(
            "GET", f"rooms/{form}/state/m.room.member/{alice.user_id}", token=alice
        )
        assert members.body == {"membership": "join"}


# -- query parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "since", ["garbage", "s", "s-1", "s1.5", "s²", "s\u0661", "1", "S1", "s" + "9" * 20]
)
async def test_bad_since_token(api: Api, since: str) -> None:
    alice = await api.register("alice")
    reply = await raw_call(api, "GET", "sync", token=alice, query={"since": since})
    assert_matrix_error(reply, 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("value", ["abc", "1.5", "1e3", "0x10", "9" * 5000])
async def test_bad_timeout(api: Api, value: str) -> None:
    alice = await api.register("alice")
    reply = await raw_call(api, "GET", "sync", token=alice, query={"timeout": value})
    assert_matrix_error(reply, 400, "M_INVALID_PARAM")


async def test_negative_and_huge_timeouts_are_clamped(api: Api, autojump_clock: MockClock) -> None:
    alice = await api.register("alice")
    first = await api.sync(alice)
    for timeout in ("-5", "99999999999999999999"):
        reply = await raw_call(
            api,
            "GET",
            "sync",
            token=alice,
            query={"since": first["next_batch"], "timeout": timeout},
        )
        assert reply.status == 200
        assert reply.body["next_batch"] == first["next_batch"]


@pytest.mark.parametrize(
    "query",
    [
        {"dir": "x"},
        {"dir": "B"},
        {"dir": "forwards"},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"from": "garbage"},
        {"from": "s\u0661"},
        {"to": "s-1"},
    ],
)
async def test_bad_messages_parameters(api: Api, query: dict[str, str]) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    reply = await raw_call(api, "GET", f"rooms/{q(room_id)}/messages", token=alice, query=query)
    assert_matrix_error(reply, 400, "M_INVALID_PARAM")


# -- robustness: a bounded sweep of malformed input --------------------------------------------

BAD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    2**63,
    -(2**63),
    10**40,
    "",
    "x",
    "\u0000",
    "\u202e💥",
    "@",
    "!:",
    [],
    [1, "a", None],
    {},
    {"a": {"b": [1]}},
]
# Fewer values for nested fields, to keep the sweep bounded.
SOME_BAD_VALUES: list[Any] = [None, True, -1, 2**63, "", "💥", [], [1], {}, {"a": 1}]


def with_value(base: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of `base` with the field at `dotted` ("a/b/0/c") set to `value`."""
    copy: dict[str, Any] = json.loads(json.dumps(base))
    target: Any = copy
    keys = dotted.split("/")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return copy


@dataclass
class Target:
    method: str
    path: str
    base: dict[str, Any]
    fields: list[str]
    nested: list[str]
    token: bool = True
    # Cases that can succeed change the room (a power-level change can strip the sender
    # of power): run each case in a new room, substituted for ROOM in the path.
    fresh_room: bool = False


def body_cases(targets: list[Target]) -> Iterator[tuple[Target, dict[str, Any]]]:
    for target in targets:
        for field in target.fields:
            for value in BAD_VALUES:
                yield target, with_value(target.base, field, value)
        for field in target.nested:
            for value in SOME_BAD_VALUES:
                yield target, with_value(target.base, field, value)


WEIRD_SEGMENTS = [
    "%00",
    ".",
    "..",
    "%2E%2E",
    "%2F",
    "%25",
    "%3F",
    "%23",
    "%20",
    "%0A",
    "%F0%9F%92%A5",
    "%ED%A0%80",  # an encoded surrogate: invalid UTF-8
    "%FF",
    "!",
    "@:",
    "$",
    "#a:test.local",
    "a" * 2000,
]


async def test_malformed_input_never_breaks_the_server(api: Api, autojump_clock: MockClock) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await api.create_room(alice, preset="public_chat")
    await api.call("POST", f"rooms/{q(room_id)}/join", token=bob)
    me, room = q(alice.user_id), q(room_id)
    counter = iter(range(10**6))

    targets = [
        Target(
            "POST",
            "createRoom",
            {
                "preset": "private_chat",
                "visibility": "private",
                "name": "n",
                "topic": "t",
                "invite": [bob.user_id],
                "initial_state": [
                    {"type": "m.room.topic", "state_key": "", "content": {"topic": "x"}}
                ],
                "room_version": "10",
                "is_direct": False,
                "creation_content": {"m.federate": False},
                "power_level_content_override": {"users": {alice.user_id: 100}, "ban": 50},
            },
            [
                "preset",
                "visibility",
                "name",
                "topic",
                "invite",
                "initial_state",
                "room_version",
                "is_direct",
                "creation_content",
                "power_level_content_override",
            ],
            [
                "invite/0",
                "initial_state/0",
                "initial_state/0/type",
                "initial_state/0/state_key",
                "initial_state/0/content",
                "power_level_content_override/users",
                "power_level_content_override/ban",
                "creation_content/room_version",
            ],
        ),
        Target(
            "POST",
            f"rooms/{room}/invite",
            {"user_id": "@carol:test.local", "reason": "r"},
            ["user_id", "reason"],
            [],
        ),
        Target("POST", f"rooms/{room}/kick", {"user_id": bob.user_id}, ["user_id", "reason"], []),
        Target("POST", f"rooms/{room}/join", {"reason": "r"}, ["reason"], []),
        Target(
            "PUT",
            f"rooms/{room}/send/m.room.message/TXN",
            {"msgtype": "m.text", "body": "hi", "m.relates_to": {"rel_type": "m.annotation"}},
            ["msgtype", "body", "m.relates_to"],
            [],
        ),
        Target(
            "PUT",
            "rooms/ROOM/state/m.room.power_levels/",
            {"users": {alice.user_id: 100}, "ban": 50, "events": {"m.room.name": 50}},
            ["users", "ban", "events", "users_default", "state_default"],
            [f"users/{alice.user_id}", "events/m.room.name"],
            fresh_room=True,
        ),
        Target(
            "PUT",
            "rooms/ROOM/state/m.room.join_rules/",
            {"join_rule": "public"},
            ["join_rule"],
            [],
            fresh_room=True,
        ),
        Target(
            "POST",
            "login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "wrong",
                "device_id": "D",
                "initial_device_display_name": "d",
            },
            ["type", "identifier", "password", "device_id", "initial_device_display_name", "user"],
            ["identifier/type", "identifier/user"],
            token=False,
        ),
        Target(
            "POST",
            "register",
            {
                "username": "USERNAME",
                "password": "pw",
                "auth": {"type": "m.login.dummy", "session": "s"},
                "device_id": "D",
                "initial_device_display_name": "d",
                "inhibit_login": True,
            },
            [
                "username",
                "password",
                "auth",
                "device_id",
                "initial_device_display_name",
                "inhibit_login",
            ],
            ["auth/type", "auth/session"],
            token=False,
        ),
        Target(
            "POST",
            f"user/{me}/filter",
            {
                "room": {"timeline": {"limit": 5}, "rooms": [room_id], "include_leave": False},
                "presence": {"types": []},
                "event_fields": ["type"],
            },
            ["room", "presence", "event_fields"],
            [
                "room/timeline",
                "room/timeline/limit",
                "room/rooms",
                "room/rooms/0",
                "room/not_rooms",
                "room/include_leave",
            ],
        ),
        Target("PUT", f"profile/{me}/displayname", {"displayname": "A"}, ["displayname"], []),
        Target("PUT", f"profile/{me}/avatar_url", {"avatar_url": "mxc://a/b"}, ["avatar_url"], []),
        Target("PUT", f"devices/{alice.device_id}", {"display_name": "d"}, ["display_name"], []),
    ]

    seen: Counter[tuple[int, str | None]] = Counter()

    async def check(
        method: str, path: str, *, data: bytes | None, token: bool = True, **kw: Any
    ) -> None:
        reply = await raw_call(api, method, path, token=alice if token else None, data=data, **kw)
        assert_sane(reply, (method, path[:120], (data or b"")[:200], kw))
        seen[reply.status, reply.body.get("errcode") if isinstance(reply.body, dict) else None] += 1

    # 1. Wrong types for every field of the JSON bodies.
    for target, body in body_cases(targets):
        path = target.path.replace("TXN", f"t{next(counter)}")
        if target.fresh_room:
            path = path.replace("ROOM", q(await api.create_room(alice)))
        if target.path == "register" and body.get("username") == "USERNAME":
            body["username"] = f"fuzz{next(counter)}"
        await check(target.method, path, data=json.dumps(body).encode(), token=target.token)

    # 2. Bodies that are not JSON objects, on every target.
    too_large = b'{"a": "' + b"x" * MAX_BODY + b'"}'
    for target in targets:
        for raw in (b"", b"nope", b"[]", b"null", b'{"a": NaN}', b"[" * 2000, b"\xff", too_large):
            path = target.path.replace("TXN", "raw").replace("ROOM", room)
            await check(target.method, path, data=raw, token=target.token)

    # 3. Weird path segments, alone and next to valid ids.
    templates = [
        ("PUT", "rooms/{s}/send/m.room.message/{s}"),
        ("PUT", f"rooms/{room}/send/{{s}}/{{s}}"),
        ("PUT", "rooms/{s}/state/{s}/{s}"),
        ("PUT", f"rooms/{room}/state/{{s}}"),
        ("GET", f"rooms/{room}/state/{{s}}/{{s}}"),
        ("GET", "rooms/{s}/state"),
        ("GET", "rooms/{s}/messages"),
        ("GET", "rooms/{s}/members"),
        ("GET", f"rooms/{room}/event/{{s}}"),
        ("POST", "rooms/{s}/join"),
        ("POST", "join/{s}"),
        ("POST", "rooms/{s}/leave"),
        ("POST", "rooms/{s}/forget"),
        ("GET", "profile/{s}"),
        ("GET", "profile/{s}/displayname"),
        ("PUT", "profile/{s}/displayname"),
        ("GET", "user/{s}/filter/{s}"),
        ("GET", f"user/{me}/filter/{{s}}"),
        ("PUT", "user/{s}/account_data/{s}"),
        ("GET", f"user/{me}/account_data/{{s}}"),
        ("PUT", f"user/{me}/rooms/{{s}}/account_data/{{s}}"),
        ("GET", "devices/{s}"),
        ("PUT", "devices/{s}"),
    ]
    for method, template in templates:
        for segment in WEIRD_SEGMENTS:
            data = (
                b'{"msgtype": "m.text", "body": "x", "displayname": "x"}'
                if method == "PUT"
                else None
            )
            await check(method, template.replace("{s}", segment), data=data)

    # 4. Bad query parameters.
    queries: list[tuple[str, dict[str, str]]] = []
    for since in ("garbage", "s", "s-1", "s²", "s99999999999999999999", "s" + "9" * 19, "%00"):
        queries.append(("sync", {"since": since}))
    for timeout in ("-5", "abc", "1e3", "9" * 30, "", "-99999999999999999999"):
        queries.append(("sync", {"timeout": timeout}))
    for inline in (
        "garbage",
        "{",
        '{"room": 1}',
        "[]",
        "{" * 2000,
        '{"room": {"timeline": {"limit": 1e400}}}',
    ):
        queries.append(("sync", {"filter": inline}))
    queries += [("sync", {"full_state": "maybe"}), ("sync", {"set_presence": "bogus"})]
    messages = f"rooms/{room}/messages"
    for params in (
        {"dir": "x"},
        {"dir": "f", "limit": "abc"},
        {"limit": "-1"},
        {"limit": "0"},
        {"limit": "9" * 40},
        {"from": "garbage"},
        {"from": "s99999999999999999999"},
        {"from": "s1", "to": "s²", "dir": "f"},
    ):
        queries.append((messages, params))
    for membership in ("x", "", "JOIN"):
        queries.append((f"rooms/{room}/members", {"membership": membership}))
        queries.append((f"rooms/{room}/members", {"not_membership": membership}))
    for username in ("", "A", "a" * 300, "%00", "💥"):
        queries.append(("register/available", {"username": username}))
    queries.append((f"rooms/{room}/state/m.room.create/", {"format": "nonsense"}))
    for path, params in queries:
        await check("GET", path, data=None, query={**params, "timeout": params.get("timeout", "0")})

    # 5. Tokens and headers.
    for token_query in ("", "x" * 5000, "%00", "💥"):
        await check(
            "GET", "account/whoami", data=None, token=False, query={"access_token": token_query}
        )

    assert seen.total() > 1000
    # The sweep reached validation at every layer, and some inputs were accepted.
    assert seen[200, None] > 50
    errcodes = {errcode for _, errcode in seen}
    expected = {
        "M_BAD_JSON",
        "M_NOT_JSON",
        "M_INVALID_PARAM",
        "M_MISSING_PARAM",
        "M_UNRECOGNIZED",
        "M_NOT_FOUND",
        "M_FORBIDDEN",
        "M_TOO_LARGE",
        "M_INVALID_USERNAME",
    }
    assert expected <= errcodes, expected - errcodes
    # After all that, the server still works normally.
    sync = await api.sync(alice)
    assert room_id in sync["rooms"]["join"]


async def test_nul_characters_are_refused_everywhere(api: Api) -> None:
    """PostgreSQL cannot store NUL, so no backend accepts it: bodies, paths, queries."""
    alice = await api.register("nul-alice")
    room_id = await api.create_room(alice)
    body = await api.call(
        "PUT",
        f"rooms/{q(room_id)}/send/m.room.message/t1",
        token=alice,
        raw=b'{"msgtype": "m.text", "body": "a\\u0000b"}',
        headers={"Content-Type": "application/json"},
    )
    assert (body.status, body.errcode) == (400, "M_BAD_JSON")
    path = await api.call(
        "PUT", f"rooms/{q(room_id)}/send/m.room%00message/t2", token=alice, body={"body": "x"}
    )
    assert (path.status, path.errcode) == (400, "M_INVALID_PARAM")
    query = await api.call("GET", "sync", token=alice, query={"since": "s1\x00"})
    assert (query.status, query.errcode) == (400, "M_INVALID_PARAM")
    timeline = (await api.sync(alice))["rooms"]["join"][room_id]["timeline"]["events"]
    assert all(e["type"] != "m.room.message" for e in timeline)


async def test_escaped_backslash_before_u0000_is_not_nul(api: Api) -> None:
    alice = await api.register("nul-bob")
    room_id = await api.create_room(alice)
    reply = await api.call(
        "PUT",
        f"rooms/{q(room_id)}/send/m.room.message/t1",
        token=alice,
        raw=b'{"msgtype": "m.text", "body": "C:\\\\u0000"}',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 200, reply.body
    event = await api.call(
        "GET", f"rooms/{q(room_id)}/event/{q(reply.body['event_id'])}", token=alice
    )
    assert event.body["content"]["body"] == "C:\\u0000"
