-- The prelude: prepended to every script of backends/redis/lua/ when it is loaded
-- (backends/redis/scripts.py), so helpers are written once. Unused local functions
-- cost a script nothing but their definition.
--
-- Rules every script follows: it receives every key it touches from Python (keys.py
-- owns the formats); the only key names it reads out of values are full key names
-- stored for that purpose. It never decodes JSON (cjson would turn integers above 1e14
-- into floats and `[]` into `{}`). It validates before its first write, so a script
-- that reports NotFound or Conflict has written nothing.

-- `hmget(key, fields)`: HMGET in chunks (Lua's `unpack` fails beyond a few thousand
-- values).
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, 1000 do
    local chunk = redis.call('HMGET', key, unpack(fields, i, math.min(i + 999, #fields)))
    for j = 1, #chunk do out[#out + 1] = chunk[j] end
  end
  return out
end

-- `fields(flat)`: an HGETALL reply as a table. `remove_session(key, s, deadlines)`
-- deletes a stored session (its hash `s`, from `fields`) with its deadline (unless
-- `deadlines` is nil), its entry in the user's set and the device's active pointer if
-- that points to it.
local function fields(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function remove_session(key, s, deadlines)
  redis.call('DEL', key)
  if deadlines then redis.call('ZREM', deadlines, key) end
  redis.call('SREM', s['user_sessions_key'], key)
  if redis.call('GET', s['active_key']) == key then
    redis.call('DEL', s['active_key'])
  end
end

-- `drop_entry(key, e, deadlines)` deletes a typing entry (hash `e`) with its deadline
-- (unless `deadlines` is nil), its place in its session's set and its user in the
-- room's set.
-- `room_changes(rooms, stream_pos, typing_pos)`: for each room (room id -> room set key),
-- in code point order of the ids, take a stream position, record it as the room's
-- typing position and return {room_id, pos, users, ...}. Sorting compares bytes:
-- Lua's `<` follows the server's LC_COLLATE, and UTF-8 byte order is code point order.
local function drop_entry(key, e, deadlines)
  redis.call('DEL', key)
  if deadlines then redis.call('ZREM', deadlines, key) end
  redis.call('SREM', e['session_key'], key)
  redis.call('SREM', e['room_key'], e['user_id'])
end

local function bytes_less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function room_changes(rooms, stream_pos, typing_pos)
  local ids = {}
  for room_id in pairs(rooms) do ids[#ids + 1] = room_id end
  table.sort(ids, bytes_less)
  local out = {}
  for i = 1, #ids do
    local pos = redis.call('INCR', stream_pos)
    redis.call('HSET', typing_pos, ids[i], pos)
    out[#out + 1] = ids[i]
    out[#out + 1] = pos
    out[#out + 1] = redis.call('SMEMBERS', rooms[ids[i]])
  end
  return out
end
