"""Authentication from the read model: a known token costs no storage call, and a
revoked one fails on the very next request. On every backend."""

from __future__ import annotations

from tests.helpers import User, assert_error
from tests.readmodel.conftest import Counted

WHOAMI = "account/whoami"


async def _login(c: Counted, user: User, device_id: str | None = None) -> str:
    body: dict[str, object] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
    }
    if device_id is not None:
        body["device_id"] = device_id
    reply = await c.api.call("POST", "login", body=body)
    assert reply.status == 200, reply.body
    token: str = reply.body["access_token"]
    return token


async def test_whoami_for_a_cached_token_makes_no_storage_call(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    assert (await counted.api.call("GET", WHOAMI, token=alice)).status == 200
    for _ in range(3):
        counted.reset()
        reply = await counted.api.call("GET", WHOAMI, token=alice)
        assert reply.status == 200
        assert reply.body["user_id"] == alice.user_id
        assert reply.body["device_id"] == alice.device_id
        assert sum(counted.calls.values()) == 0, counted.calls


async def test_a_token_seen_for_the_first_time_is_read_once(counted: Counted) -> None:
    """Cold cache (e.g. after a restart): the first request reads the token and its
    session in one call, the next one none."""
    alice = await counted.api.register("alice")
    assert (await counted.api.call("GET", WHOAMI, token=alice)).status == 200
    counted.engine.read_model.clear()
    counted.reset()
    assert (await counted.api.call("GET", WHOAMI, token=alice)).status == 200
    assert counted.calls["sessions.authenticate"] == 1, counted.calls
    counted.reset()
    assert (await counted.api.call("GET", WHOAMI, token=alice)).status == 200
    assert sum(counted.calls.values()) == 0, counted.calls


async def test_an_unknown_token_is_refused_every_time(counted: Counted) -> None:
    for _ in range(2):
        assert_error(await counted.api.call("GET", WHOAMI, token="nope"), 401, "M_UNKNOWN_TOKEN")


async def test_after_logout_the_old_token_fails_on_the_next_request(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    other = await _login(counted, alice)
    assert (await counted.api.call("GET", WHOAMI, token=alice)).status == 200
    assert (await counted.api.call("POST", "logout", token=alice, body={})).status == 200
    assert_error(await counted.api.call("GET", WHOAMI, token=alice), 401, "M_UNKNOWN_TOKEN")
    # The user's other device is untouched.
    assert (await counted.api.call("GET", WHOAMI, token=other)).status == 200


async def test_without_sessions_a_cached_token_dies_with_its_device(
    counted_without_sessions: Counted,
) -> None:
    """Token alone (no session to miss): the token cache itself must drop it."""
    c = counted_without_sessions
    alice = await c.api.register("alice")
    for _ in range(2):
        assert (await c.api.call("GET", WHOAMI, token=alice)).status == 200
    c.reset()
    assert (await c.api.call("GET", WHOAMI, token=alice)).status == 200
    assert sum(c.calls.values()) == 0, c.calls
    assert (await c.api.call("POST", "logout", token=alice, body={})).status == 200
    assert_error(await c.api.call("GET", WHOAMI, token=alice), 401, "M_UNKNOWN_TOKEN")
    again = await c.api.register("bob")
    assert (await c.api.call("GET", WHOAMI, token=again)).status == 200
    assert (await c.api.call("POST", "logout/all", token=again, body={})).status == 200
    assert_error(await c.api.call("GET", WHOAMI, token=again), 401, "M_UNKNOWN_TOKEN")


async def test_after_logout_all_every_token_fails_on_the_next_request(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    tokens = [alice.access_token, await _login(counted, alice), await _login(counted, alice)]
    for token in tokens:
        assert (await counted.api.call("GET", WHOAMI, token=token)).status == 200
    assert (await counted.api.call("POST", "logout/all", token=alice, body={})).status == 200
    for token in tokens:
        assert_error(await counted.api.call("GET", WHOAMI, token=token), 401, "M_UNKNOWN_TOKEN")


async def test_a_new_login_on_a_device_revokes_its_cached_token(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    assert (await counted.api.call("GET", WHOAMI, token=alice)).status == 200
    fresh = await _login(counted, alice, device_id=alice.device_id)
    assert_error(await counted.api.call("GET", WHOAMI, token=alice), 401, "M_UNKNOWN_TOKEN")
    reply = await counted.api.call("GET", WHOAMI, token=fresh)
    assert reply.status == 200 and reply.body["device_id"] == alice.device_id


async def test_an_ended_session_is_not_served_from_memory(counted: Counted) -> None:
    """DELETE /sessions/{id}: the next request naming it gets 409 and a new session."""
    alice = await counted.api.register("alice")
    first = await counted.api.call("GET", WHOAMI, token=alice)
    headers = {k.lower(): v for k, v in first.headers.items()}
    session_id = headers["matrix-session"]
    ended = await counted.api.call("DELETE", f"sessions/{session_id}", token=alice)
    assert ended.status == 200, ended.body
    again = await counted.api.call(
        "GET", WHOAMI, token=alice, headers={"Matrix-Session": session_id}
    )
    assert_error(again, 409, "M_SESSION_EXPIRED")
    assert again.body["session_id"] != session_id


async def test_tiny_caches_evict_and_answer_the_same(counted: Counted) -> None:
    """With room for one token and one session, users taking turns evict each other:
    every answer is still right, and each refill is one read."""
    users = [await counted.api.register(name) for name in ("alice", "bob", "carol")]
    counted.engine.read_model.clear()
    for cache in counted.engine.read_model.caches():
        cache.max_entries = 1
    for _ in range(3):
        for user in users:
            counted.reset()
            reply = await counted.api.call("GET", WHOAMI, token=user)
            assert reply.status == 200 and reply.body["user_id"] == user.user_id
            assert counted.calls["sessions.authenticate"] <= 1, counted.calls
    evicted = counted.engine.read_model.auth.tokens.stats.evictions
    assert evicted >= 6, evicted
