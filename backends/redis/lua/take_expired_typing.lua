-- KEYS: stream_pos, typing_pos, typing_deadlines. ARGV: now_ms, limit.
-- Removes the (at most `limit`) entries due by now_ms; returns {room_id, pos, users, ...}
-- for every room affected.
local rooms = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due == 0 then return {} end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, #due - 1)
for i = 1, #due do
  local e = fields(redis.call('HGETALL', due[i]))
  if e['room_id'] then
    drop_entry(due[i], e, nil)
    rooms[e['room_id']] = e['room_key']
  end
end
return room_changes(rooms, KEYS[1], KEYS[2])
