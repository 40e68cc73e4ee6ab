-- KEYS[1] hash. ARGV: field/value pairs. Returns 1 if created, 0 if the key existed.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
