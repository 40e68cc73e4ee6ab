"""Published presence from the read model: a presence change reads no earlier record
from storage once it is known, and every read after it sees it. On every backend."""

from __future__ import annotations

from tests.helpers import Api, User, q
from tests.readmodel.conftest import Counted


async def _set(api: Api, user: User, presence: str, status_msg: str | None = None) -> None:
    body: dict[str, object] = {"presence": presence}
    if status_msg is not None:
        body["status_msg"] = status_msg
    reply = await api.call("PUT", f"presence/{q(user.user_id)}/status", token=user, body=body)
    assert reply.status == 200, reply.body


async def _status(api: Api, viewer: User, user: User) -> dict[str, object]:
    reply = await api.call("GET", f"presence/{q(user.user_id)}/status", token=viewer)
    assert reply.status == 200, reply.body
    body: dict[str, object] = reply.body
    return body


async def test_a_presence_change_stores_the_session_and_writes_the_rest_behind(
    counted: Counted,
) -> None:
    """The session's desired presence is stored before the answer (it survives a
    restart); the published presence is memory's, its copy in the store written
    behind."""
    alice = await counted.api.register("alice")
    await _set(counted.api, alice, "unavailable")
    counted.reset()
    await _set(counted.api, alice, "online", "here")
    # The user's sessions, from which presence is derived, come from memory.
    assert counted.calls == {"sessions.set_session_presence": 1}, counted.calls
    status = await _status(counted.api, alice, alice)
    assert (status["presence"], status["status_msg"]) == ("online", "here")
    counted.reset()
    await counted.engine.presence.flush()
    assert counted.calls == {"presence.put_presence": 1}, counted.calls
    counted.engine.read_model.clear()
    stored = await counted.engine.storage.presence.get_presence(alice.user_id)
    assert stored is not None
    assert (stored.presence, stored.status_msg) == ("online", "here")


async def test_going_offline_is_stored_at_once(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    await _set(counted.api, alice, "online", "bye soon")
    assert (await counted.api.call("POST", "logout", token=alice, body={})).status == 200
    counted.engine.read_model.clear()
    stored = await counted.engine.storage.presence.get_presence(alice.user_id)
    assert stored is not None
    assert (stored.presence, stored.status_msg) == ("offline", "bye soon")


async def test_presence_seen_by_others_follows_each_change(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    bob = await counted.api.register("bob")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    joined = await counted.api.call("POST", f"rooms/{q(room_id)}/join", token=bob, body={})
    assert joined.status == 200, joined.body
    for presence in ("unavailable", "online", "unavailable"):
        await _set(counted.api, alice, presence)
        assert (await _status(counted.api, bob, alice))["presence"] == presence
    counted.engine.read_model.clear()
    assert (await _status(counted.api, bob, alice))["presence"] == "unavailable"
    await _set(counted.api, alice, "online")
    assert (await _status(counted.api, bob, alice))["presence"] == "online"


async def test_a_new_or_ended_session_is_in_the_next_presence_at_once(counted: Counted) -> None:
    """Presence is the strongest over the user's sessions, listed from memory: a
    session started on another device, and its end, count at once."""
    alice = await counted.api.register("alice")
    await _set(counted.api, alice, "unavailable", "phone")
    await _set(counted.api, alice, "unavailable", "phone")  # the list is cached now
    login = await counted.api.call(
        "POST",
        "login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": alice.password,
        },
    )
    assert login.status == 200, login.body
    laptop = User(alice.user_id, login.body["access_token"], login.body["device_id"], "")
    await _set(counted.api, laptop, "online", "laptop")
    status = await _status(counted.api, alice, alice)
    assert (status["presence"], status["status_msg"]) == ("online", "laptop")
    counted.reset()
    assert (await counted.api.call("POST", "logout", token=laptop, body={})).status == 200
    status = await _status(counted.api, alice, alice)
    assert (status["presence"], status["status_msg"]) == ("unavailable", "phone")
    # And the store agrees with what memory answered.
    listed = await counted.engine.storage.sessions.list_user_sessions(alice.user_id)
    counted.engine.read_model.clear()
    assert await counted.engine.storage.sessions.list_user_sessions(alice.user_id) == listed
