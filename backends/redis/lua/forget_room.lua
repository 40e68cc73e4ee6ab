-- KEYS: room_members, user_rooms. ARGV: user_id, room_id.
-- Sets the forgotten flag (the record's first element). Returns 0 if there is no record.
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
record = '[1' .. string.sub(record, 3)
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('HSET', KEYS[2], ARGV[2], record)
return 1
