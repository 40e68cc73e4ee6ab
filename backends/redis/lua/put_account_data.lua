-- KEYS: stream_pos, account_data, account_data_pos. ARGV: field, content JSON.
-- Returns the stream position of the change.
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], '[' .. pos .. ',' .. ARGV[2] .. ']')
redis.call('ZADD', KEYS[3], pos, ARGV[1])
return pos
