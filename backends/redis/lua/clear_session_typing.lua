-- KEYS: stream_pos, typing_pos, session_typing, typing_deadlines.
-- Returns {room_id, pos, users, ...} for every room affected.
local rooms = {}
local keys = redis.call('SMEMBERS', KEYS[3])
for i = 1, #keys do
  local e = fields(redis.call('HGETALL', keys[i]))
  if e['room_id'] then
    drop_entry(keys[i], e, KEYS[4])
    rooms[e['room_id']] = e['room_key']
  end
end
redis.call('DEL', KEYS[3])
return room_changes(rooms, KEYS[1], KEYS[2])
