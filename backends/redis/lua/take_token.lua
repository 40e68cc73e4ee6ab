-- KEYS[1] bucket hash. ARGV: capacity, refill_per_s, now_ms, cost (decimal numbers).
-- Returns `%.17g` text: 0 when taken, else the milliseconds to wait.
--
-- The update time never moves back: a caller whose clock is behind the last update
-- refills nothing, and must not make the time since that reading count a second time
-- for the next caller.
--
-- The arithmetic is backends/ratelimit_math.py's `take` (used by the memory and SQL
-- backends), step for step, in doubles as there: tests/conformance/test_rate_limits.py
-- holds all backends to the same answers. Numbers cross the Lua boundary as text in
-- `%.17g` form (exact for a double); a plain number would be formatted by Redis with
-- 14 digits, or truncated to an integer reply.
--
-- The bucket expires (PEXPIRE) a minute after it would be full again, when it behaves
-- like a new one (which starts full). The minute is slack: now_ms is the caller's clock
-- and PEXPIRE runs on Redis' clock, so without it a bucket whose callers' clocks run
-- behind Redis' (or a test's fake clock) could be forgotten while they still see it
-- refilling. A bucket that never refills (refill_per_s <= 0) or would take centuries
-- never expires. Expiry times are whole milliseconds below 1e13, which Redis passes on
-- exactly.
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
