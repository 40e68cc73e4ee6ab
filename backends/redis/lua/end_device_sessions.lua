-- KEYS: user_sessions, session_deadlines. ARGV: device_id.
-- Returns the HGETALL of every removed session.
local out = {}
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 1, #keys do
  local flat = redis.call('HGETALL', keys[i])
  local s = fields(flat)
  if s['device_id'] == ARGV[1] then
    remove_session(keys[i], s, KEYS[2])
    out[#out + 1] = flat
  end
end
return out
