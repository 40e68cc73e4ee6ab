"""A small Matrix client over Quart's test client, for API tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from quart.testing import QuartClient

from homeserver.config import Config

PREFIX = "/_matrix/client/v3"


def make_config(**overrides: Any) -> Config:
    """A config for tests: fast (but real) argon2id hashing, a test server name."""
    base: dict[str, Any] = {
        # Never the default SQLite file in the working directory: tests leave nothing.
        "storage": "memory://",
        "server_name": "test.local",
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 64,
        # No request deadline: on the autojump clock a request waiting on a worker
        # thread (password hashing) would jump straight to it. tests/api/
        # test_request_deadline.py sets one explicitly.
        "request_timeout_ms": 0,
    }
    base.update(overrides)
    return Config(**base)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


@dataclass
class User:
    user_id: str
    access_token: str
    device_id: str
    password: str


def q(value: str) -> str:
    """Percent-encode a path segment (room ids, user ids, event types)."""
    return quote(value, safe="")


class Api:
    def __init__(self, client: QuartClient) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | User | None = None,
        body: Any = None,
        raw: bytes | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if not path.startswith("/"):
            path = f"{PREFIX}/{path}"
        hdrs = dict(headers or {})
        if isinstance(token, User):
            token = token.access_token
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        data: bytes | None = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        response = await self.client.open(
            path, method=method, data=data, headers=hdrs, query_string=query
        )
        text = await response.get_data(as_text=True)
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Reply(response.status_code, parsed, dict(response.headers))

    async def register(self, username: str, password: str = "correct horse") -> User:
        reply = await self.call(
            "POST",
            "register",
            body={"username": username, "password": password, "auth": {"type": "m.login.dummy"}},
        )
        assert reply.status == 200, reply.body
        return User(
            reply.body["user_id"], reply.body["access_token"], reply.body["device_id"], password
        )

    async def create_room(self, user: User, **body: Any) -> str:
        reply = await self.call("POST", "createRoom", token=user, body=body)
        assert reply.status == 200, reply.body
        room_id: str = reply.body["room_id"]
        return room_id

    async def send_text(self, user: User, room_id: str, text: str, txn_id: str) -> str:
        reply = await self.call(
            "PUT",
            f"rooms/{q(room_id)}/send/m.room.message/{txn_id}",
            token=user,
            body={"msgtype": "m.text", "body": text},
        )
        assert reply.status == 200, reply.body
        event_id: str = reply.body["event_id"]
        return event_id

    async def sync(self, user: User, **query: str) -> Any:
        reply = await self.call("GET", "sync", token=user, query=query)
        assert reply.status == 200, reply.body
        return reply.body


def assert_error(reply: Reply, status: int, errcode: str) -> None:
    """`reply` is the Matrix error `errcode` with HTTP `status`: a JSON body with that
    `errcode` and a non-empty `error` string, served as `application/json`."""
    assert reply.status == status, reply.body
    assert reply.errcode == errcode, reply.body
    assert isinstance(reply.body["error"], str) and reply.body["error"], reply.body
    content_type = {k.lower(): v for k, v in reply.headers.items()}.get("content-type")
    assert content_type == "application/json", (content_type, reply.body)
