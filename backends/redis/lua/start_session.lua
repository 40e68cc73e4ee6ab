-- KEYS: active pointer, session, user_sessions, session_deadlines.
-- ARGV: '1' to replace, expires_at_ms, session field/value pairs.
-- Returns {1, previous active HGETALL or {}} if stored, {0, active HGETALL} if not.
local current = redis.call('GET', KEYS[1])
local old = {}
if current then old = redis.call('HGETALL', current) end
if #old > 0 and ARGV[1] == '0' then return {0, old} end
-- A stored session with this id (a retry, or a caller reusing an id) is removed with
-- its indexes first, so no index of another device keeps pointing at it.
local same = redis.call('HGETALL', KEYS[2])
if #same > 0 then remove_session(KEYS[2], fields(same), KEYS[4]) end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('ZADD', KEYS[4], ARGV[2], KEYS[2])
redis.call('SET', KEYS[1], KEYS[2])
return {1, old}
