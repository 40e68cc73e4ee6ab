"""The fill guard's precision: a fill is refused by the writes that could make it
stale, and by no others (each refusal costs a store read on the next request)."""

from __future__ import annotations

import trio

from homeserver.readmodel.cache import ANY_KEY, BoundedCache, reading, writing
from tests.helpers import q
from tests.readmodel.conftest import Counted


def test_a_lookup_by_another_index_is_refused_only_by_a_write_of_what_it_found() -> None:
    cache: BoundedCache[str, int] = BoundedCache("t", 10)
    with reading(cache, ANY_KEY) as ticket:
        with writing(cache, "other"):
            cache.put("other", 1)
        # Another key's write finished meanwhile: the found one is still current.
        assert cache.fill(ticket, "found", 2, guarded_by=ANY_KEY)
        with writing(cache, "found"):
            cache.put("found", 3)
        # A write of the found key finished meanwhile: what the read saw may be old.
        assert not cache.fill(ticket, "found", 2, guarded_by=ANY_KEY)
    assert cache.peek("found") is None
    # A bulk change refuses every read in flight.
    with reading(cache, ANY_KEY) as ticket:
        cache.guard.moved()
        assert not cache.fill(ticket, "x", 1, guarded_by=ANY_KEY)


def test_a_reported_write_refuses_only_reads_of_its_key() -> None:
    cache: BoundedCache[str, int] = BoundedCache("t", 10)
    with reading(cache, "a") as a_ticket, reading(cache, "b") as b_ticket:
        cache.guard.wrote("b")  # e.g. one of the sessions an expiry sweep took
        assert cache.fill(a_ticket, "a", 1)
        assert not cache.fill(b_ticket, "b", 1)
    # Noted only while a read of that key was in flight: nothing is kept after.
    cache.guard.wrote("c")
    with reading(cache, "c") as c_ticket:
        assert cache.fill(c_ticket, "c", 1)


async def test_a_deadline_and_a_presence_write_of_one_session_keep_it_cached(
    counted: Counted,
) -> None:
    """Both writes at once (the previous request's deadline going out while the next
    request changes presence): applied one after the other, and the cached session
    has both."""
    alice = await counted.api.register("alice")
    reply = await counted.api.call(
        "PUT", f"presence/{q(alice.user_id)}/status", token=alice, body={"presence": "online"}
    )
    assert reply.status == 200
    sessions = counted.engine.storage.sessions
    [session] = await sessions.list_user_sessions(alice.user_id)
    later = session.expires_at_ms + 60_000
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sessions.touch_session, session.session_id, 123, later)
        nursery.start_soon(sessions.set_session_presence, session.session_id, "unavailable", "x")
    counted.reset()
    cached = await sessions.get_session(session.session_id)
    assert counted.calls == {}, counted.calls  # still cached
    assert cached is not None
    assert (cached.expires_at_ms, cached.presence, cached.status_msg) == (later, "unavailable", "x")
    counted.engine.read_model.clear()
    assert await sessions.get_session(session.session_id) == cached
