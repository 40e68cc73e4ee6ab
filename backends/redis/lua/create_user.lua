-- KEYS: user hash, user_ids zset. ARGV: user id, then field/value pairs.
-- Returns 1 if created, 0 (Conflict, nothing written) if the user hash existed.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
