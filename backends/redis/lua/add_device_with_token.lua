-- KEYS: token, device, user_devices, device_tokens.
-- ARGV: device_id, '1' if the display name is given else '0', display name,
--       2 * number of token fields, token field/value pairs, device field/value pairs.
-- Returns 0 (Conflict, nothing written) if the token exists, else 1.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ntok = tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 5 + ntok))
  redis.call('SADD', KEYS[3], ARGV[1])
elseif ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 'display_name', ARGV[3])
end
local old = redis.call('SMEMBERS', KEYS[4])
for i = 1, #old do redis.call('DEL', old[i]) end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + ntok))
redis.call('SADD', KEYS[4], KEYS[1])
return 1
