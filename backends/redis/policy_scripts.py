"""The Lua scripts of rate-limit buckets and server events (same rules as `scripts.py`).

Redis' Lua numbers are doubles, as are Python's floats: the bucket arithmetic below is
`backends.memory_policy`'s, operation for operation, so both answer the same. Numbers
cross the Lua boundary as text in `%.17g` form (exact for a double); a plain number
would be formatted by Redis with 14 digits, or truncated to an integer reply.
"""

from __future__ import annotations

from backends.redis.scripts import _HMGET

# KEYS[1] bucket hash. ARGV: capacity, refill_per_s, now_ms, cost (decimal numbers).
# Returns `%.17g` text: 0 when taken, else the milliseconds to wait.
#
# The update time never moves back: a caller whose clock is behind the last update
# refills nothing, and must not make the time since that reading count a second time
# for the next caller. (The memory backend differs here: it moves it back to now_ms.)
#
# The bucket expires (PEXPIRE) a minute after it would be full again, when it behaves
# like a new one (which starts full). The minute is slack: now_ms is the caller's clock
# and PEXPIRE runs on Redis' clock, so without it a bucket whose callers' clocks run
# behind Redis' (or a test's fake clock) could be forgotten while they still see it
# refilling. A bucket that never refills (refill_per_s <= 0) or would take centuries
# never expires. Expiry times are whole milliseconds below 1e13, which Redis passes on
# exactly.
TAKE_TOKEN = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tokens = capacity
local updated = ARGV[3]
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'updated_ms')
if stored[1] and stored[2] then
  local elapsed_s = math.max(0, now - tonumber(stored[2])) / 1000
  tokens = math.min(capacity, tonumber(stored[1]) + elapsed_s * rate)
  if tonumber(stored[2]) > now then updated = stored[2] end
end
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
elseif rate <= 0 then
  wait = 2147483647
else
  wait = math.max(1, math.ceil((math.min(cost, capacity) - tokens) / rate * 1000))
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated_ms', updated)
local expire_ms = 1e13
if rate > 0 then
  expire_ms = math.ceil(math.max(0, capacity - tokens) / rate * 1000) + 60000
end
if expire_ms < 1e13 then
  redis.call('PEXPIRE', KEYS[1], expire_ms)
else
  redis.call('PERSIST', KEYS[1])
end
return string.format('%.17g', wait)
"""

# KEYS: stream_pos, server_events, the event's index. ARGV: event_id, body JSON.
# Returns 0 (Conflict: nothing written, no position taken) if the id exists, else the
# event's stream position.
ADD_SERVER_EVENT = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], '[' .. pos .. ',' .. ARGV[2] .. ']')
redis.call('ZADD', KEYS[3], pos, ARGV[1])
return pos
"""

# Read-only scripts (run with EVALSHA_RO) --------------------------------------------

# KEYS: server_events, then the indexes to read. ARGV: min, max (ZRANGEBYSCORE
# syntax), limit. Returns the stored events in stream order, at most `limit` (the
# oldest). Each index gives at most `limit` ids; only the `limit` oldest of them are
# fetched, so the reply stays small however many rooms are asked about.
SERVER_EVENTS = (
    _HMGET
    + """
local limit = tonumber(ARGV[3])
local found = {}
for i = 2, #KEYS do
  local hits = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[1], ARGV[2],
    'WITHSCORES', 'LIMIT', 0, ARGV[3])
  for j = 1, #hits, 2 do found[#found + 1] = {tonumber(hits[j + 1]), hits[j]} end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local ids = {}
for i = 1, math.min(#found, limit) do ids[i] = found[i][2] end
return hmget(KEYS[1], ids)
"""
)
