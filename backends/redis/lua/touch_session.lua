-- KEYS: session, session_deadlines. ARGV: last_active_ts, expires_at_ms.
-- Returns 0 if the session is not stored, else 1.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_active_ts', ARGV[1], 'expires_at_ms', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
return 1
