-- KEYS[1] hash. ARGV: field, '1' to set or '0' to delete, value.
-- Returns 0 (nothing changed) if the hash does not exist, else 1.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
