-- KEYS: hashes. Returns each one's HGETALL as a flat field/value list ({} if absent).
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
