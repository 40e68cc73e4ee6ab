-- KEYS: session. ARGV: presence, '1' if a status message is given else '0', message.
-- Returns the updated HGETALL, {} if the session is not stored.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], 'presence', ARGV[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'status_msg', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'status_msg')
end
return redis.call('HGETALL', KEYS[1])
