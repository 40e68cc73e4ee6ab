"""The Redis backend: `open_redis("redis://host:port/db?prefix=NAME")`.

Key formats live in `keys.py`, value formats in `codec.py`, and every multi-key write
is one Lua script (`lua/*.lua`, loaded by `scripts.py`), which Redis runs atomically.
One module per protocol area, as in `backends.memory` and `backends.sql`: `users`,
`rooms`, `user_data`, `sessions`, `typing_state`, `presence`, `rate_limits`,
`server_events`.
"""

from __future__ import annotations

from backends.redis.keys import Keys
from backends.redis.opener import DEFAULT_PREFIX, open_redis, parse_redis_url

__all__ = ["DEFAULT_PREFIX", "Keys", "open_redis", "parse_redis_url"]
