"""Kill -9 and restart: no acknowledged write is lost on a durable backend.

Tokens still work; rooms, memberships, messages and account data are there; the
stream continues (an old `since` token stays valid); a session started before the
restart is still live after it. A send the server stored but died before answering is
stored once, however the client retries it."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from tests.e2e import crashing_server
from tests.e2e.stores import durable_url, server_process  # noqa: F401 (fixture)

V3 = "/_matrix/client/v3"


def q(value: str) -> str:
    return quote(value, safe="")


class Client:
    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        return await self.http.request(
            method, self.base + V3 + path, json=body, headers=hdrs, params=query
        )

    async def ok(
        self, method: str, path: str, token: str | None = None, body: Any = None, **query: str
    ) -> Any:
        reply = await self.call(method, path, token, body, query=query or None)
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def register(self, name: str) -> dict[str, str]:
        body = {"username": name, "password": "pw-" + name, "auth": {"type": "m.login.dummy"}}
        result: dict[str, str] = await self.ok("POST", "/register", body=body)
        return result


async def test_kill_9_and_restart_loses_nothing(durable_url: str, tmp_path: Path) -> None:  # noqa: F811
    async with httpx.AsyncClient(timeout=20) as http:
        admin = ("--admin", "@alice:durable.test")
        async with server_process(durable_url, *admin, cwd=tmp_path) as server:
            c = Client(http, server.url)
            alice = await c.register("alice")
            bob = await c.register("bob")
            a, b = alice["access_token"], bob["access_token"]
            room_id = (await c.ok("POST", "/createRoom", a, {"name": "Durable"}))["room_id"]
            await c.ok(
                "POST",
                f"/rooms/{q(room_id)}/invite",
                a,
                {"user_id": bob["user_id"], "reason": "stay"},
            )
            await c.ok("POST", f"/rooms/{q(room_id)}/join", b)
            sent = [
                (
                    await c.ok(
                        "PUT",
                        f"/rooms/{q(room_id)}/send/m.room.message/t{i}",
                        b,
                        {"msgtype": "m.text", "body": f"message {i}"},
                    )
                )["event_id"]
                for i in range(3)
            ]
            await c.ok(
                "PUT", f"/user/{q(alice['user_id'])}/account_data/org.example.k", a, {"kept": True}
            )
            session = await c.call("POST", "/sessions", a, {"presence": "unavailable"})
            assert session.status_code == 200, session.text
            session_id = session.json()["session_id"]
            since = (await c.ok("GET", "/sync", a))["next_batch"]
            bob_since = (await c.ok("GET", "/sync", b))["next_batch"]
            notice = await http.post(
                server.url + "/_homeserver/admin/v1/server_events",
                headers={"Authorization": f"Bearer {a}"},
                json={"type": "org.example.notice", "content": {"n": 1}, "user_id": bob["user_id"]},
            )
            assert notice.status_code == 200, notice.text
            await server.kill()

        async with server_process(durable_url, *admin, cwd=tmp_path) as server:
            c = Client(http, server.url)
            who = await c.ok("GET", "/account/whoami", a)
            # The server event sent before the crash is still delivered, in order.
            bob_sync = await c.ok("GET", "/sync", b, since=bob_since)
            assert [e["event_id"] for e in bob_sync["server_events"]["events"]] == [
                notice.json()["event_id"]
            ]
            assert bob_sync["server_events"]["events"][0]["sender"] == "durable.test"
            assert who["user_id"] == alice["user_id"]
            # The session survived the restart: requests naming it run in it.
            reply = await c.call(
                "GET", "/account/whoami", a, headers={"Matrix-Session": session_id}
            )
            assert reply.status_code == 200, reply.text
            assert reply.headers["matrix-session"] == session_id
            sessions = (await c.ok("GET", "/sessions", a))["sessions"]
            assert [(s["session_id"], s["presence"]) for s in sessions] == [
                (session_id, "unavailable")
            ]
            # Nothing new since the old token: the stream continues where it was.
            quiet = await c.ok("GET", "/sync", a, since=since)
            assert quiet["rooms"]["join"] == {}
            new_id = (
                await c.ok(
                    "PUT",
                    f"/rooms/{q(room_id)}/send/m.room.message/after",
                    b,
                    {"msgtype": "m.text", "body": "after restart"},
                )
            )["event_id"]
            later = await c.ok("GET", "/sync", a, since=since)
            timeline = later["rooms"]["join"][room_id]["timeline"]["events"]
            assert [e["event_id"] for e in timeline] == [new_id]
            history = await c.ok("GET", f"/rooms/{q(room_id)}/messages", a, dir="f", limit="50")
            messages = [e["event_id"] for e in history["chunk"] if e["type"] == "m.room.message"]
            assert messages == [*sent, new_id]
            members = await c.ok("GET", f"/rooms/{q(room_id)}/joined_members", a)
            assert set(members["joined"]) == {alice["user_id"], bob["user_id"]}
            data = await c.ok("GET", f"/user/{q(alice['user_id'])}/account_data/org.example.k", a)
            assert data == {"kept": True}
            # Retrying a transaction from before the crash is still idempotent.
            again = await c.ok(
                "PUT",
                f"/rooms/{q(room_id)}/send/m.room.message/t0",
                b,
                {"msgtype": "m.text", "body": "message 0"},
            )
            assert again["event_id"] == sent[0]
            assert await server.stop() == 0


async def test_a_send_retried_after_a_kill_9_before_its_reply_is_stored_once(
    durable_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    body = {"msgtype": "m.text", "body": "once", crashing_server.CRASH_MARK: True}
    async with httpx.AsyncClient(timeout=20) as http:
        async with server_process(
            durable_url, cwd=tmp_path, program=crashing_server.PROGRAM
        ) as server:
            c = Client(http, server.url)
            alice = await c.register("alice")
            a = alice["access_token"]
            room_id = (await c.ok("POST", "/createRoom", a, {"name": "Crash"}))["room_id"]
            send = f"/rooms/{q(room_id)}/send/m.room.message/crash-1"
            # The server dies between storing the message and answering.
            with pytest.raises(httpx.TransportError):
                await c.call("PUT", send, a, body)
            with trio.fail_after(10):
                await server.process.wait()
            assert server.process.returncode == -signal.SIGKILL

        async with server_process(durable_url, cwd=tmp_path) as server:
            c = Client(http, server.url)

            async def messages() -> list[str]:
                history = await c.ok("GET", f"/rooms/{q(room_id)}/messages", a, dir="f")
                return [e["event_id"] for e in history["chunk"] if e["type"] == "m.room.message"]

            [stored] = await messages()
            for _ in range(2):
                again = await c.ok("PUT", send, a, body)
                assert again["event_id"] == stored
            assert await messages() == [stored]
            assert await server.stop() == 0
