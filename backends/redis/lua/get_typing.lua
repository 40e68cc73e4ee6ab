-- KEYS: typing_pos, then the typing_room set of each room. ARGV: the room ids.
-- Returns {room_id, pos, users, ...} for the rooms with a recorded typing position.
local out = {}
for i = 1, #ARGV do
  local pos = redis.call('HGET', KEYS[1], ARGV[i])
  if pos then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = pos
    out[#out + 1] = redis.call('SMEMBERS', KEYS[i + 1])
  end
end
return out
