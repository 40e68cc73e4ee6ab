-- KEYS: stream_pos, typing_pos, typing entry, typing_deadlines.
-- Returns nil if there is no entry, else {room_id, pos, users}.
local e = fields(redis.call('HGETALL', KEYS[3]))
if not e['room_id'] then return false end
drop_entry(KEYS[3], e, KEYS[4])
return room_changes({[e['room_id']] = e['room_key']}, KEYS[1], KEYS[2])
