-- KEYS: stream_pos, server_events, the event's index. ARGV: event_id, body JSON.
-- Returns 0 (Conflict: nothing written, no position taken) if the id exists, else the
-- event's stream position.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], '[' .. pos .. ',' .. ARGV[2] .. ']')
redis.call('ZADD', KEYS[3], pos, ARGV[1])
return pos
