-- KEYS: stream_pos, presence. ARGV: user_id, record tail (see codec.presence_tail).
-- Returns the position of the change.
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], '[' .. pos .. ',' .. ARGV[2])
return pos
