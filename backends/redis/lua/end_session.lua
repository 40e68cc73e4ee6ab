-- KEYS: session, session_deadlines. Returns the removed HGETALL, {} if not stored.
local flat = redis.call('HGETALL', KEYS[1])
if #flat > 0 then remove_session(KEYS[1], fields(flat), KEYS[2]) end
return flat
