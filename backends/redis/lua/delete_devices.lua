-- KEYS[1] user_devices, then per device: device, device_tokens, txns.
-- ARGV[1]: '1' to require that the user's device set is exactly the given ids (else
-- return -1 and write nothing), ARGV[2..]: device ids.
-- Returns how many of the devices existed.
local n = #ARGV - 1
if ARGV[1] == '1' then
  if redis.call('SCARD', KEYS[1]) ~= n then return -1 end
  for i = 1, n do
    if redis.call('SISMEMBER', KEYS[1], ARGV[i + 1]) == 0 then return -1 end
  end
end
local deleted = 0
for i = 1, n do
  local k = 1 + (i - 1) * 3
  deleted = deleted + redis.call('DEL', KEYS[k + 1])
  redis.call('SREM', KEYS[1], ARGV[i + 1])
  local tokens = redis.call('SMEMBERS', KEYS[k + 2])
  for j = 1, #tokens do redis.call('DEL', tokens[j]) end
  redis.call('DEL', KEYS[k + 2], KEYS[k + 3])
end
return deleted
