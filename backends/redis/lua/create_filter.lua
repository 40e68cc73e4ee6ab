-- KEYS: filter_id, filters. ARGV: definition JSON. Returns the new filter id.
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[1])
return id
