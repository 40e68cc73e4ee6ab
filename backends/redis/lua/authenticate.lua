-- KEYS: token, then the named session (absent: the token device's active session).
-- Returns nil for an unknown token, else {token HGETALL, session HGETALL or {}}.
local token = redis.call('HGETALL', KEYS[1])
if #token == 0 then return false end
local key = KEYS[2]
if not key then
  local pointer = redis.call('HGET', KEYS[1], 'active_session_key')
  if pointer then key = redis.call('GET', pointer) end
end
if not key then return {token, {}} end
return {token, redis.call('HGETALL', key)}
