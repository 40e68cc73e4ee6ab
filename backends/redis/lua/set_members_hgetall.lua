-- KEYS: a set of hash key names. Returns the HGETALL of each member that exists.
local out = {}
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 1, #keys do
  local flat = redis.call('HGETALL', keys[i])
  if #flat > 0 then out[#out + 1] = flat end
end
return out
