-- KEYS: room_events, events. ARGV: min, max (ZRANGEBYSCORE syntax), limit,
-- '1' for newest first. Returns the stored events in order.
local ids
if ARGV[4] == '1' then
  ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[1], 'LIMIT', 0, ARGV[3])
else
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
end
return hmget(KEYS[2], ids)
