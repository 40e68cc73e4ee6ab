-- KEYS: room_state, events. ARGV: state field. Returns the stored event or nil.
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[2], id)
