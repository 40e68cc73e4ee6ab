-- KEYS: stream_pos, events, room_latest, txns ('' without a transaction), then per
--       event (8 keys): room, room_events, room_state, room_state_content, room_members,
--       user_rooms, room_joined, user_joined (the last three '' unless m.room.member).
-- ARGV[1]: number of events, ARGV[2]: the transaction's txn key ('' without one), then
--       per event (8 values): event_id, room_id, body JSON, state field ('' for a
--       non-state event), content JSON (state events), state_key (member events),
--       membership record tail ('' unless m.room.member), '1' if the membership is
--       "join" (member events; else '0').
-- Returns, having written nothing, {'duplicate', recorded event id}, {'notfound',
-- room_id}, {'conflict', event_id} or {'wrongtype', key}; else {'ok', pos1,
-- prev_content1, pos2, prev_content2, ...}, the transaction (if any) recorded for the
-- first event.
-- Every key written is checked for its kind of value first: a write failing half way
-- would leave, e.g., events stored without their transaction's record.
-- A member event also keeps the room's joined members and the user's joined rooms
-- (zsets, score 0, so ZRANGE lists them in code point order) equal to the "join"
-- memberships.
local n = tonumber(ARGV[1])
local txn = ARGV[2]
local has_txn = KEYS[4] ~= ''
if has_txn then
  local recorded = redis.call('HGET', KEYS[4], txn)
  if recorded then return {'duplicate', recorded} end
end
local function holds(key, kind)
  local found = redis.call('TYPE', key)['ok']
  return found == 'none' or found == kind
end
local counter = redis.call('GET', KEYS[1])
if counter and not tonumber(counter) then return {'wrongtype', KEYS[1]} end
for i = 2, (has_txn and 4 or 3) do
  if not holds(KEYS[i], 'hash') then return {'wrongtype', KEYS[i]} end
end
local seen = {}
for i = 0, n - 1 do
  local k = 4 + i * 8
  local a = 2 + i * 8
  if redis.call('EXISTS', KEYS[k + 1]) == 0 then return {'notfound', ARGV[a + 2]} end
  local id = ARGV[a + 1]
  if seen[id] or redis.call('HEXISTS', KEYS[2], id) == 1 then return {'conflict', id} end
  seen[id] = true
  -- Written: room_events; room_state and room_state_content for a state event;
  -- room_members, user_rooms, room_joined and user_joined for a member event.
  local written = 2
  if ARGV[a + 4] ~= '' then written = ARGV[a + 7] == '' and 4 or 8 end
  for j = 2, written do
    local key = KEYS[k + j]
    local kind = (j == 2 or j >= 7) and 'zset' or 'hash'
    if not holds(key, kind) then return {'wrongtype', key} end
  end
end
if has_txn then redis.call('HSET', KEYS[4], txn, ARGV[3]) end
local out = {'ok'}
for i = 0, n - 1 do
  local k = 4 + i * 8
  local a = 2 + i * 8
  local id = ARGV[a + 1]
  local room_id = ARGV[a + 2]
  local pos = redis.call('INCR', KEYS[1])
  local prev = 'null'
  local field = ARGV[a + 4]
  if field ~= '' then
    local old = redis.call('HGET', KEYS[k + 4], field)
    if old then prev = old end
    redis.call('HSET', KEYS[k + 3], field, id)
    redis.call('HSET', KEYS[k + 4], field, ARGV[a + 5])
  end
  redis.call('HSET', KEYS[2], id, '[' .. pos .. ',' .. prev .. ',' .. ARGV[a + 3] .. ']')
  redis.call('ZADD', KEYS[k + 2], pos, id)
  redis.call('HSET', KEYS[3], room_id, pos)
  local tail = ARGV[a + 7]
  if tail ~= '' then
    local record = '[0,' .. pos .. ',' .. tail
    redis.call('HSET', KEYS[k + 5], ARGV[a + 6], record)
    redis.call('HSET', KEYS[k + 6], room_id, record)
    if ARGV[a + 8] == '1' then
      redis.call('ZADD', KEYS[k + 7], 0, ARGV[a + 6])
      redis.call('ZADD', KEYS[k + 8], 0, room_id)
    else
      redis.call('ZREM', KEYS[k + 7], ARGV[a + 6])
      redis.call('ZREM', KEYS[k + 8], room_id)
    end
  end
  out[#out + 1] = pos
  out[#out + 1] = prev
end
return out
