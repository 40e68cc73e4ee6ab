-- KEYS: stream_pos, typing_pos, typing entry, typing_room, session_typing,
--       typing_deadlines. ARGV: room_id, user_id, session_id, expires_at_ms.
-- Returns nil if the room's set of typing users did not change, else {pos, users}.
local previous = redis.call('HGET', KEYS[3], 'session_key')
if previous and previous ~= KEYS[5] then redis.call('SREM', previous, KEYS[3]) end
redis.call('HSET', KEYS[3], 'room_id', ARGV[1], 'user_id', ARGV[2], 'session_id', ARGV[3],
  'expires_at_ms', ARGV[4], 'room_key', KEYS[4], 'session_key', KEYS[5])
redis.call('SADD', KEYS[5], KEYS[3])
redis.call('ZADD', KEYS[6], ARGV[4], KEYS[3])
if redis.call('SADD', KEYS[4], ARGV[2]) == 0 then return false end
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], pos)
return {pos, redis.call('SMEMBERS', KEYS[4])}
