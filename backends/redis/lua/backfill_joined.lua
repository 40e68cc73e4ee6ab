-- KEYS: room_members, room_joined, then one user_joined per user of ARGV.
-- ARGV[1]: room_id, ARGV[2..]: user ids (KEYS[3..] in the same order).
-- Makes the room's joined members and those users' joined rooms equal to the "join"
-- records of the membership hash as it is now (read inside the script, so a member
-- event appended concurrently is either already counted or applies its own change
-- after this). A record is `[forgotten,stream_pos,"membership","event_id"]`.
-- Returns how many users are joined.
local joined = 0
for i = 2, #ARGV do
  local record = redis.call('HGET', KEYS[1], ARGV[i])
  if record and string.find(record, '^%[%d,%d+,"join",') then
    redis.call('ZADD', KEYS[2], 0, ARGV[i])
    redis.call('ZADD', KEYS[i + 1], 0, ARGV[1])
    joined = joined + 1
  else
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[i + 1], ARGV[1])
  end
end
return joined
