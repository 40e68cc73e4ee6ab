"""Registration, login, logout, whoami, devices and access tokens, through the HTTP API."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest

from homeserver.config import Config
from homeserver.engine import Engine
from tests.helpers import Api, User, make_config

DUMMY = {"type": "m.login.dummy"}
LOCALPART_CHARS = re.compile(r"^[a-z0-9._=\-+]+$")


@pytest.fixture
def config(request: pytest.FixtureRequest) -> Config:
    """The default test config; `indirect` parametrisation passes overrides."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    return make_config(**overrides)


def reg_body(username: str | None = "alice", password: str = "pw", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"password": password, "auth": DUMMY, **extra}
    if username is not None:
        body["username"] = username
    return body


async def login(api: Api, user: str, password: str = "correct horse", **extra: Any) -> Any:
    reply = await api.call(
        "POST",
        "login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            **extra,
        },
    )
    assert reply.status == 200, reply.body
    return reply.body


async def whoami(api: Api, token: str) -> tuple[int, Any]:
    reply = await api.call("GET", "account/whoami", token=token)
    return reply.status, reply.body


async def assert_token_dead(api: Api, token: str) -> None:
    reply = await api.call("GET", "account/whoami", token=token)
    assert reply.status == 401
    assert reply.errcode == "M_UNKNOWN_TOKEN"


# -- registration: user-interactive auth ------------------------------------------------


async def test_register_without_auth_offers_the_dummy_flow(api: Api) -> None:
    reply = await api.call("POST", "register", body={"username": "alice", "password": "pw"})
    assert reply.status == 401
    assert reply.body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert reply.body["params"] == {}
    assert isinstance(reply.body["session"], str) and len(reply.body["session"]) >= 16
    # The first UIA step is not an error: no errcode.
    assert "errcode" not in reply.body
    # Nothing was created.
    available = await api.call("GET", "register/available", query={"username": "alice"})
    assert (available.status, available.body) == (200, {"available": True})


async def test_register_sessions_are_distinct(api: Api) -> None:
    first = await api.call("POST", "register", body={"username": "alice", "password": "pw"})
    second = await api.call("POST", "register", body={"username": "alice", "password": "pw"})
    assert first.body["session"] != second.body["session"]


async def test_register_completes_the_dummy_stage_with_the_session(api: Api) -> None:
    first = await api.call("POST", "register", body={"username": "alice", "password": "pw"})
    session = first.body["session"]
    reply = await api.call(
        "POST",
        "register",
        body={"username": "alice", "password": "pw", "auth": {**DUMMY, "session": session}},
    )
    assert reply.status == 200, reply.body
    assert reply.body["user_id"] == "@alice:test.local"
    assert reply.body["home_server"] == "test.local"
    assert set(reply.body) == {"user_id", "access_token", "device_id", "home_server"}
    status, me = await whoami(api, reply.body["access_token"])
    assert status == 200
    assert me == {
        "user_id": "@alice:test.local",
        "device_id": reply.body["device_id"],
        "is_guest": False,
    }


@pytest.mark.parametrize(
    "auth_type", ["m.login.recaptcha", "m.login.password", "", "M.LOGIN.DUMMY"]
)
async def test_register_with_unsupported_auth_type(api: Api, auth_type: str) -> None:
    reply = await api.call(
        "POST",
        "register",
        body={"username": "alice", "password": "pw", "auth": {"type": auth_type, "session": "abc"}},
    )
    assert reply.status == 401
    assert reply.errcode == "M_UNRECOGNIZED"
    assert isinstance(reply.body["error"], str)
    assert reply.body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert reply.body["session"] == "abc"
    available = await api.call("GET", "register/available", query={"username": "alice"})
    assert available.body == {"available": True}


async def test_register_auth_without_type(api: Api) -> None:
    reply = await api.call(
        "POST", "register", body={"username": "alice", "password": "pw", "auth": {}}
    )
    assert reply.status == 401
    assert reply.errcode == "M_UNRECOGNIZED"
    assert reply.body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert isinstance(reply.body["session"], str) and reply.body["session"]


async def test_register_needs_a_password_once_auth_is_done(api: Api) -> None:
    reply = await api.call("POST", "register", body={"username": "alice", "auth": DUMMY})
    assert reply.status == 400
    assert reply.errcode == "M_MISSING_PARAM"
    available = await api.call("GET", "register/available", query={"username": "alice"})
    assert available.body == {"available": True}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", 5),
        ("username", ["alice"]),
        ("password", 1234),
        ("password", {"p": 1}),
        ("auth", "m.login.dummy"),
        ("auth", ["m.login.dummy"]),
        ("inhibit_login", "true"),
        ("inhibit_login", 1),
        ("device_id", 7),
        ("initial_device_display_name", False),
    ],
)
async def test_register_wrong_field_types(api: Api, field: str, value: Any) -> None:
    body = {**reg_body(), field: value}
    reply = await api.call("POST", "register", body=body)
    assert reply.status == 400, reply.body
    assert reply.errcode == "M_BAD_JSON"


async def test_register_password_too_long(api: Api) -> None:
    reply = await api.call("POST", "register", body=reg_body(password="x" * 513))
    assert (reply.status, reply.errcode) == (400, "M_BAD_JSON")
    ok = await api.call("POST", "register", body=reg_body(password="x" * 512))
    assert ok.status == 200, ok.body


# -- registration: usernames -------------------------------------------------------------


async def test_register_available(api: Api) -> None:
    reply = await api.call("GET", "register/available", query={"username": "alice"})
    assert (reply.status, reply.body) == (200, {"available": True})
    await api.register("alice")
    taken = await api.call("GET", "register/available", query={"username": "alice"})
    assert (taken.status, taken.errcode) == (400, "M_USER_IN_USE")
    assert isinstance(taken.body["error"], str)
    other = await api.call("GET", "register/available", query={"username": "alicia"})
    assert (other.status, other.body) == (200, {"available": True})


async def test_register_available_needs_a_username(api: Api) -> None:
    missing = await api.call("GET", "register/available")
    assert (missing.status, missing.errcode) == (400, "M_MISSING_PARAM")
    empty = await api.call("GET", "register/available", query={"username": ""})
    assert (empty.status, empty.errcode) == (400, "M_MISSING_PARAM")


@pytest.mark.parametrize("username", ["Alice", "bad name", "ali!ce", "_alice", "a" * 244])
async def test_register_available_rejects_invalid_usernames(api: Api, username: str) -> None:
    reply = await api.call("GET", "register/available", query={"username": username})
    assert (reply.status, reply.errcode) == (400, "M_INVALID_USERNAME")


async def test_register_user_in_use(api: Api) -> None:
    await api.register("alice")
    # Both before the auth stage (so a client learns it early) and with it.
    early = await api.call("POST", "register", body={"username": "alice", "password": "pw"})
    assert (early.status, early.errcode) == (400, "M_USER_IN_USE")
    late = await api.call("POST", "register", body=reg_body("alice"))
    assert (late.status, late.errcode) == (400, "M_USER_IN_USE")
    # The original account is untouched: its password still works, the new one does not.
    await login(api, "alice", "correct horse")
    wrong = await api.call(
        "POST", "login", body={"type": "m.login.password", "user": "alice", "password": "pw"}
    )
    assert (wrong.status, wrong.errcode) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    "username",
    [
        "Alice",  # upper case
        "ALICE",
        "al ice",  # space
        "alice!",
        "ali:ce",
        "ali@ce",
        "al#ice",
        "élise",  # non-ASCII
        "alice\n",  # a trailing newline must not slip past a `$` anchor
        "\nalice",
        "a/b",  # cannot be a path segment once %2F is decoded
        "_alice",  # leading underscore (reserved for application services)
        "_",
        "",
        "a" * 244,  # @ + 244 + :test.local is 256 characters
    ],
)
async def test_register_invalid_username(api: Api, username: str) -> None:
    for body in ({"username": username, "password": "pw"}, reg_body(username)):
        reply = await api.call("POST", "register", body=body)
        assert reply.status == 400, (username, reply.body)
        assert reply.errcode == "M_INVALID_USERNAME"
        assert isinstance(reply.body["error"], str)


@pytest.mark.parametrize("username", ["a.b_c=d-e+f", "0123", "x", "a" * 243, "alice_"])
async def test_register_valid_unusual_usernames(api: Api, username: str) -> None:
    reply = await api.call("POST", "register", body=reg_body(username))
    assert reply.status == 200, reply.body
    assert reply.body["user_id"] == f"@{username}:test.local"
    assert len(reply.body["user_id"]) <= 255


async def test_register_guest_is_forbidden(api: Api) -> None:
    for body in (reg_body("guesty"), {}):
        reply = await api.call("POST", "register", body=body, query={"kind": "guest"})
        assert (reply.status, reply.errcode) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    available = await api.call("GET", "register/available", query={"username": "guesty"})
    assert available.body == {"available": True}
    user_kind = await api.call("POST", "register", body=reg_body("guesty"), query={"kind": "user"})
    assert user_kind.status == 200, user_kind.body


@pytest.mark.parametrize("config", [{"registration": "disabled"}], indirect=True)
async def test_registration_disabled(api: Api, engine: Engine) -> None:
    for body in (reg_body("alice"), {"username": "alice", "password": "pw"}, {}):
        reply = await api.call("POST", "register", body=body)
        assert (reply.status, reply.errcode) == (403, "M_FORBIDDEN")
        assert isinstance(reply.body["error"], str)
    assert await engine.storage.users.get_user("@alice:test.local") is None


async def test_register_inhibit_login(api: Api, engine: Engine) -> None:
    reply = await api.call("POST", "register", body=reg_body("alice", inhibit_login=True))
    assert reply.status == 200, reply.body
    assert reply.body == {"user_id": "@alice:test.local", "home_server": "test.local"}
    assert await engine.storage.devices.list_devices("@alice:test.local") == []
    # The account exists and can log in.
    logged_in = await login(api, "alice", "pw")
    assert logged_in["user_id"] == "@alice:test.local"


async def test_register_inhibit_login_false_logs_in(api: Api) -> None:
    reply = await api.call("POST", "register", body=reg_body("alice", inhibit_login=False))
    assert reply.status == 200
    assert {"access_token", "device_id"} <= set(reply.body)


async def test_register_honours_device_id_and_display_name(api: Api) -> None:
    reply = await api.call(
        "POST",
        "register",
        body=reg_body("alice", device_id="MYPHONE", initial_device_display_name="Alice's phone"),
    )
    assert reply.status == 200, reply.body
    assert reply.body["device_id"] == "MYPHONE"
    token = reply.body["access_token"]
    device = await api.call("GET", "devices/MYPHONE", token=token)
    assert (device.status, device.body["device_id"]) == (200, "MYPHONE")
    assert device.body["display_name"] == "Alice's phone"
    status, me = await whoami(api, token)
    assert (status, me["device_id"]) == (200, "MYPHONE")


async def test_register_generates_a_device_id(api: Api) -> None:
    reply = await api.call("POST", "register", body=reg_body("alice"))
    device_id = reply.body["device_id"]
    assert isinstance(device_id, str) and len(device_id) >= 8
    listed = await api.call("GET", "devices", token=reply.body["access_token"])
    assert listed.body == {"devices": [{"device_id": device_id}]}


async def test_register_random_username_when_none_given(api: Api) -> None:
    ids = set()
    for _ in range(3):
        reply = await api.call("POST", "register", body=reg_body(username=None))
        assert reply.status == 200, reply.body
        user_id = reply.body["user_id"]
        localpart, _, server = user_id[1:].partition(":")
        assert user_id.startswith("@") and server == "test.local"
        assert LOCALPART_CHARS.match(localpart) and not localpart.startswith("_")
        status, me = await whoami(api, reply.body["access_token"])
        assert (status, me["user_id"]) == (200, user_id)
        ids.add(user_id)
    assert len(ids) == 3


async def test_register_without_username_or_auth_offers_flows(api: Api) -> None:
    reply = await api.call("POST", "register", body={"password": "pw"})
    assert reply.status == 401
    assert reply.body["flows"] == [{"stages": ["m.login.dummy"]}]


async def test_register_empty_or_non_json_body(api: Api) -> None:
    empty = await api.call("POST", "register", raw=b"")
    assert (empty.status, empty.errcode) == (400, "M_NOT_JSON")
    garbage = await api.call("POST", "register", raw=b"username=alice")
    assert (garbage.status, garbage.errcode) == (400, "M_NOT_JSON")


# -- passwords and tokens --------------------------------------------------------------


async def test_passwords_are_hashed_with_argon2id(api: Api, engine: Engine) -> None:
    await api.register("alice", "hunter2-secret")
    await api.register("bob", "hunter2-secret")
    alice = await engine.storage.users.get_user("@alice:test.local")
    bob = await engine.storage.users.get_user("@bob:test.local")
    assert alice is not None and bob is not None
    for record in (alice, bob):
        assert record.password_hash is not None
        assert record.password_hash.startswith("$argon2id$")
        assert "hunter2" not in record.password_hash
    # Salted: the same password gives different hashes.
    assert alice.password_hash != bob.password_hash
    # And the hash really verifies the password.
    await login(api, "alice", "hunter2-secret")


async def test_access_tokens_are_random_and_long(api: Api) -> None:
    users = [await api.register(f"user{i}") for i in range(6)]
    tokens = [u.access_token for u in users]
    for u in users[:3]:
        tokens.append((await login(api, u.user_id))["access_token"])
    assert len(set(tokens)) == len(tokens)
    # Whatever fixed prefix tokens share, what follows must carry >= 128 random bits:
    # at least 22 characters of URL-safe base64 (6 bits each).
    prefix_len = 0
    while all(len(t) > prefix_len and t[prefix_len] == tokens[0][prefix_len] for t in tokens):
        prefix_len += 1
    alphabet = set(string.ascii_letters + string.digits + "-_")
    for token in tokens:
        random_part = token[prefix_len:]
        assert set(random_part) <= alphabet, token
        assert len(random_part) * 6 >= 128, token
    # No two tokens share a long run after the prefix (they are not counters).
    heads = {t[prefix_len : prefix_len + 8] for t in tokens}
    assert len(heads) == len(tokens)


# -- login ------------------------------------------------------------------------------


async def test_login_flows(api: Api) -> None:
    reply = await api.call("GET", "login")
    assert reply.status == 200
    assert reply.body == {"flows": [{"type": "m.login.password"}]}


@pytest.mark.parametrize(
    "body",
    [
        {"identifier": {"type": "m.id.user", "user": "alice"}},
        {"identifier": {"type": "m.id.user", "user": "@alice:test.local"}},
        {"user": "alice"},
        {"user": "@alice:test.local"},
        {"identifier": {"type": "m.id.user", "user": "ALICE"}},
    ],
    ids=[
        "identifier-localpart",
        "identifier-user-id",
        "legacy-localpart",
        "legacy-user-id",
        "case",
    ],
)
async def test_login_password(api: Api, body: dict[str, Any]) -> None:
    alice = await api.register("alice")
    reply = await api.call(
        "POST", "login", body={"type": "m.login.password", "password": alice.password, **body}
    )
    assert reply.status == 200, reply.body
    assert reply.body["user_id"] == "@alice:test.local"
    assert reply.body["home_server"] == "test.local"
    assert reply.body["access_token"] != alice.access_token
    assert reply.body["device_id"] != alice.device_id
    status, me = await whoami(api, reply.body["access_token"])
    assert (status, me["device_id"]) == (200, reply.body["device_id"])
    # The registration device still works: a login adds a device.
    status, _ = await whoami(api, alice.access_token)
    assert status == 200


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("alice", "wrong"),
        ("@alice:test.local", "wrong"),
        ("alice", ""),
        ("nobody", "correct horse"),
        ("@nobody:test.local", "correct horse"),
        ("@alice:elsewhere.example", "correct horse"),
        ("@", "correct horse"),
        ("", "correct horse"),
    ],
)
async def test_login_failures_are_forbidden(api: Api, user: str, password: str) -> None:
    await api.register("alice")
    reply = await api.call(
        "POST",
        "login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        },
    )
    assert (reply.status, reply.errcode) == (403, "M_FORBIDDEN")
    # Unknown user and wrong password read the same (no account enumeration).
    assert reply.body["error"] == "Invalid username or password"


@pytest.mark.parametrize("login_type", ["m.login.token", "m.login.sso", "password", ""])
async def test_login_unknown_type(api: Api, login_type: str) -> None:
    await api.register("alice")
    reply = await api.call(
        "POST",
        "login",
        body={"type": login_type, "user": "alice", "password": "correct horse"},
    )
    assert (reply.status, reply.errcode) == (400, "M_UNKNOWN")


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"user": "alice", "password": "pw"}, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "password": "pw"}, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": "alice"}, "M_MISSING_PARAM"),
        (
            {"type": "m.login.password", "identifier": {"type": "m.id.user"}, "password": "pw"},
            "M_MISSING_PARAM",
        ),
        (
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"},
                "password": "pw",
            },
            "M_UNKNOWN",
        ),
        ({"type": 1, "user": "alice", "password": "pw"}, "M_BAD_JSON"),
        ({"type": "m.login.password", "user": 1, "password": "pw"}, "M_BAD_JSON"),
        ({"type": "m.login.password", "user": "alice", "password": 1}, "M_BAD_JSON"),
        ({"type": "m.login.password", "identifier": "alice", "password": "pw"}, "M_BAD_JSON"),
        (
            {"type": "m.login.password", "user": "alice", "password": "pw", "device_id": 5},
            "M_BAD_JSON",
        ),
    ],
)
async def test_login_malformed(api: Api, body: dict[str, Any], errcode: str) -> None:
    reply = await api.call("POST", "login", body=body)
    assert (reply.status, reply.errcode) == (400, errcode), reply.body


async def test_login_with_existing_device_id_revokes_its_previous_token(api: Api) -> None:
    alice = await api.register("alice")
    other = await login(api, "alice")
    again = await login(api, "alice", device_id=alice.device_id)
    assert again["device_id"] == alice.device_id
    assert again["access_token"] != alice.access_token
    await assert_token_dead(api, alice.access_token)
    status, me = await whoami(api, again["access_token"])
    assert (status, me["device_id"]) == (200, alice.device_id)
    # Other devices are untouched, and no device was added.
    status, _ = await whoami(api, other["access_token"])
    assert status == 200
    listed = await api.call("GET", "devices", token=again["access_token"])
    ids = sorted(d["device_id"] for d in listed.body["devices"])
    assert ids == sorted([alice.device_id, other["device_id"]])


async def test_login_with_new_device_id_and_display_name(api: Api) -> None:
    await api.register("alice")
    body = await login(api, "alice", device_id="LAPTOP", initial_device_display_name="Laptop")
    assert body["device_id"] == "LAPTOP"
    device = await api.call("GET", "devices/LAPTOP", token=body["access_token"])
    assert device.body == {"device_id": "LAPTOP", "display_name": "Laptop"}


async def test_relogin_keeps_display_name_unless_given(api: Api) -> None:
    await api.register("alice")
    await login(api, "alice", device_id="LAPTOP", initial_device_display_name="Laptop")
    second = await login(api, "alice", device_id="LAPTOP")
    device = await api.call("GET", "devices/LAPTOP", token=second["access_token"])
    assert device.body["display_name"] == "Laptop"


async def test_device_ids_are_per_user(api: Api) -> None:
    """The same device id for two users is two devices; neither revokes the other."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    a = await login(api, "alice", device_id="SHARED")
    b = await login(api, "bob", device_id="SHARED")
    assert (await whoami(api, a["access_token"]))[1]["user_id"] == alice.user_id
    assert (await whoami(api, b["access_token"]))[1]["user_id"] == bob.user_id


# -- logout -----------------------------------------------------------------------------


async def test_logout_invalidates_only_that_token(api: Api) -> None:
    alice = await api.register("alice")
    second = await login(api, "alice")
    bob = await api.register("bob")
    out = await api.call("POST", "logout", token=alice)
    assert (out.status, out.body) == (200, {})
    await assert_token_dead(api, alice.access_token)
    for token in (second["access_token"], bob.access_token):
        status, _ = await whoami(api, token)
        assert status == 200
    # The device is gone with its token.
    listed = await api.call("GET", "devices", token=second["access_token"])
    assert [d["device_id"] for d in listed.body["devices"]] == [second["device_id"]]
    # Logging out twice: the token is unknown now.
    again = await api.call("POST", "logout", token=alice)
    assert (again.status, again.errcode) == (401, "M_UNKNOWN_TOKEN")


async def test_logout_needs_a_token(api: Api) -> None:
    reply = await api.call("POST", "logout")
    assert (reply.status, reply.errcode) == (401, "M_MISSING_TOKEN")


async def test_logout_all(api: Api) -> None:
    alice = await api.register("alice")
    second = await login(api, "alice")
    bob = await api.register("bob")
    out = await api.call("POST", "logout/all", token=second["access_token"])
    assert (out.status, out.body) == (200, {})
    await assert_token_dead(api, alice.access_token)
    await assert_token_dead(api, second["access_token"])
    status, _ = await whoami(api, bob.access_token)
    assert status == 200
    # Every device is gone: a fresh login sees only itself.
    fresh = await login(api, "alice")
    listed = await api.call("GET", "devices", token=fresh["access_token"])
    assert [d["device_id"] for d in listed.body["devices"]] == [fresh["device_id"]]


# -- whoami and tokens --------------------------------------------------------------------


async def test_whoami(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call("GET", "account/whoami", token=alice)
    assert reply.status == 200
    assert reply.body == {"user_id": alice.user_id, "device_id": alice.device_id, "is_guest": False}


async def test_missing_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic YWxpY2U6cHc="}):
        reply = await api.call("GET", "account/whoami", headers=headers)
        assert reply.status == 401, headers
        assert reply.errcode == "M_MISSING_TOKEN"
        assert isinstance(reply.body["error"], str)


async def test_unknown_token(api: Api) -> None:
    await api.register("alice")
    for token in ("nope", "hs_" + "A" * 43, "x" * 1000):
        reply = await api.call("GET", "account/whoami", token=token)
        assert reply.status == 401
        assert reply.errcode == "M_UNKNOWN_TOKEN"
        assert reply.body["soft_logout"] is False


async def test_access_token_query_parameter(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call("GET", "account/whoami", query={"access_token": alice.access_token})
    assert (reply.status, reply.body["user_id"]) == (200, alice.user_id)
    bad = await api.call("GET", "account/whoami", query={"access_token": "nope"})
    assert (bad.status, bad.errcode) == (401, "M_UNKNOWN_TOKEN")
    # The query parameter works for writes too.
    out = await api.call("POST", "logout", query={"access_token": alice.access_token})
    assert out.status == 200
    await assert_token_dead(api, alice.access_token)


async def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call(
        "GET", "account/whoami", headers={"Authorization": f"bearer {alice.access_token}"}
    )
    assert (reply.status, reply.body["user_id"]) == (200, alice.user_id)


async def test_r0_prefix_is_served(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call("GET", "/_matrix/client/r0/account/whoami", token=alice)
    assert (reply.status, reply.body["user_id"]) == (200, alice.user_id)


# -- devices ----------------------------------------------------------------------------


async def _two_devices(api: Api) -> tuple[User, str]:
    alice = await api.register("alice")
    second = await login(api, "alice", device_id="TABLET", initial_device_display_name="Tablet")
    return alice, second["device_id"]


async def test_list_devices(api: Api) -> None:
    alice, tablet = await _two_devices(api)
    await api.register("bob")
    reply = await api.call("GET", "devices", token=alice)
    assert reply.status == 200
    devices = {d["device_id"]: d for d in reply.body["devices"]}
    assert set(devices) == {alice.device_id, tablet}
    assert devices[tablet] == {"device_id": tablet, "display_name": "Tablet"}
    # No display name: the key is left out, not null.
    assert devices[alice.device_id] == {"device_id": alice.device_id}


async def test_get_device(api: Api) -> None:
    alice, tablet = await _two_devices(api)
    reply = await api.call("GET", f"devices/{tablet}", token=alice)
    assert (reply.status, reply.body) == (200, {"device_id": tablet, "display_name": "Tablet"})


async def test_get_unknown_device(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    for device_id in ("NOSUCHDEVICE", bob.device_id):
        reply = await api.call("GET", f"devices/{device_id}", token=alice)
        assert (reply.status, reply.errcode) == (404, "M_NOT_FOUND")


async def test_rename_device(api: Api) -> None:
    alice, tablet = await _two_devices(api)
    reply = await api.call(
        "PUT", f"devices/{alice.device_id}", token=alice, body={"display_name": "Phone"}
    )
    assert (reply.status, reply.body) == (200, {})
    device = await api.call("GET", f"devices/{alice.device_id}", token=alice)
    assert device.body == {"device_id": alice.device_id, "display_name": "Phone"}
    # Another device of the same user can rename it too.
    await api.call("PUT", f"devices/{tablet}", token=alice, body={"display_name": "Old tablet"})
    listed = await api.call("GET", "devices", token=alice)
    names = {d["device_id"]: d.get("display_name") for d in listed.body["devices"]}
    assert names == {alice.device_id: "Phone", tablet: "Old tablet"}


async def test_rename_device_without_display_name_changes_nothing(api: Api) -> None:
    alice, tablet = await _two_devices(api)
    for body in ({}, {"other": 1}):
        reply = await api.call("PUT", f"devices/{tablet}", token=alice, body=body)
        assert (reply.status, reply.body) == (200, {})
    empty = await api.call("PUT", f"devices/{tablet}", token=alice, raw=b"")
    assert empty.status == 200
    device = await api.call("GET", f"devices/{tablet}", token=alice)
    assert device.body["display_name"] == "Tablet"


async def test_rename_device_errors(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    for device_id in ("NOSUCHDEVICE", bob.device_id):
        for body in ({"display_name": "x"}, {}):
            reply = await api.call("PUT", f"devices/{device_id}", token=alice, body=body)
            assert (reply.status, reply.errcode) == (404, "M_NOT_FOUND"), (device_id, body)
    for bad in (5, None, ["x"], "x" * 257):
        reply = await api.call(
            "PUT", f"devices/{alice.device_id}", token=alice, body={"display_name": bad}
        )
        assert (reply.status, reply.errcode) == (400, "M_BAD_JSON"), bad
    # Bob's device kept its (absent) name.
    device = await api.call("GET", f"devices/{bob.device_id}", token=bob)
    assert device.body == {"device_id": bob.device_id}


async def test_devices_need_a_token(api: Api) -> None:
    for method, path in (("GET", "devices"), ("GET", "devices/X"), ("PUT", "devices/X")):
        reply = await api.call(method, path, body={} if method == "PUT" else None)
        assert (reply.status, reply.errcode) == (401, "M_MISSING_TOKEN"), path
