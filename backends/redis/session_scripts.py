"""The Lua scripts of sessions, typing and presence (same rules as `scripts.py`).

Each operation is one script, so it is atomic: of concurrent callers that end, take or
expire the same session or typing entry, exactly one sees it stored and removes it.
Key names a script learns from stored data (a token's active-session pointer, due
deadlines, a user's sessions, a session's typing entries) are stored as full key names
(see `keys.py`); scripts never build one.
"""

from __future__ import annotations

# `fields(flat)`: an HGETALL reply as a table. `remove_session(key, s, deadlines)`
# deletes a stored session (its hash `s`, from `fields`) with its deadline (unless
# `deadlines` is nil), its entry in the user's set and the device's active pointer if
# that points to it.
_SESSION_HELPERS = """
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
"""

# KEYS: token, then the named session (absent: the token device's active session).
# Returns nil for an unknown token, else {token HGETALL, session HGETALL or {}}.
AUTHENTICATE = """
local token = redis.call('HGETALL', KEYS[1])
if #token == 0 then return false end
local key = KEYS[2]
if not key then
  local pointer = redis.call('HGET', KEYS[1], 'active_session_key')
  if pointer then key = redis.call('GET', pointer) end
end
if not key then return {token, {}} end
return {token, redis.call('HGETALL', key)}
"""

# KEYS: active pointer, session, user_sessions, session_deadlines.
# ARGV: '1' to replace, expires_at_ms, session field/value pairs.
# Returns {1, previous active HGETALL or {}} if stored, {0, active HGETALL} if not.
START_SESSION = (
    _SESSION_HELPERS
    + """
local current = redis.call('GET', KEYS[1])
local old = {}
if current then old = redis.call('HGETALL', current) end
if #old > 0 and ARGV[1] == '0' then return {0, old} end
-- A stored session with this id (a retry, or a caller reusing an id) is removed with
-- its indexes first, so no index of another device keeps pointing at it.
local same = redis.call('HGETALL', KEYS[2])
if #same > 0 then remove_session(KEYS[2], fields(same), KEYS[4]) end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('ZADD', KEYS[4], ARGV[2], KEYS[2])
redis.call('SET', KEYS[1], KEYS[2])
return {1, old}
"""
)

# KEYS: session, session_deadlines. ARGV: last_active_ts, expires_at_ms.
# Returns 0 if the session is not stored, else 1.
TOUCH_SESSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_active_ts', ARGV[1], 'expires_at_ms', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
return 1
"""

# KEYS: session. ARGV: presence, '1' if a status message is given else '0', message.
# Returns the updated HGETALL, {} if the session is not stored.
SET_SESSION_PRESENCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], 'presence', ARGV[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'status_msg', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'status_msg')
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: session, session_deadlines. Returns the removed HGETALL, {} if not stored.
END_SESSION = (
    _SESSION_HELPERS
    + """
local flat = redis.call('HGETALL', KEYS[1])
if #flat > 0 then remove_session(KEYS[1], fields(flat), KEYS[2]) end
return flat
"""
)

# KEYS: user_sessions, session_deadlines. ARGV: device_id.
# Returns the HGETALL of every removed session.
END_DEVICE_SESSIONS = (
    _SESSION_HELPERS
    + """
local out = {}
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 1, #keys do
  local flat = redis.call('HGETALL', keys[i])
  local s = fields(flat)
  if s['device_id'] == ARGV[1] then
    remove_session(keys[i], s, KEYS[2])
    out[#out + 1] = flat
  end
end
return out
"""
)

# KEYS: session_deadlines. ARGV: now_ms, limit.
# Removes the (at most `limit`) sessions due by now_ms, earliest first, and returns
# their HGETALLs. The due members are the set's first ranks, so they leave it in one
# ZREMRANGEBYRANK: O(log n + taken) in all.
TAKE_EXPIRED_SESSIONS = (
    _SESSION_HELPERS
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due == 0 then return {} end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #due - 1)
local out = {}
for i = 1, #due do
  local flat = redis.call('HGETALL', due[i])
  if #flat > 0 then
    remove_session(due[i], fields(flat), nil)
    out[#out + 1] = flat
  end
end
return out
"""
)

# Typing -----------------------------------------------------------------------------

# `drop_entry(key, e, deadlines)` deletes a typing entry (hash `e`) with its deadline
# (unless `deadlines` is nil), its place in its session's set and its user in the
# room's set.
# `room_changes(rooms, stream_pos, typing_pos)`: for each room (room id -> room set key),
# in code point order of the ids, take a stream position, record it as the room's
# typing position and return {room_id, pos, users, ...}. Sorting compares bytes:
# Lua's `<` follows the server's LC_COLLATE, and UTF-8 byte order is code point order.
_TYPING_HELPERS = """
local function fields(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

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
"""

# KEYS: stream_pos, typing_pos, typing entry, typing_room, session_typing,
#       typing_deadlines. ARGV: room_id, user_id, session_id, expires_at_ms.
# Returns nil if the room's set of typing users did not change, else {pos, users}.
SET_TYPING = """
local previous = redis.call('HGET', KEYS[3], 'session_key')
if previous and previous ~= KEYS[5] then redis.call('SREM', previous, KEYS[3]) end
redis.call('HSET', KEYS[3], 'room_id', ARGV[1], 'user_id', ARGV[2], 'session_id', ARGV[3],
  'expires_at_ms', ARGV[4], 'room_key', KEYS[4], 'session_key', KEYS[5])
redis.call('SADD', KEYS[5], KEYS[3])
redis.call('ZADD', KEYS[6], ARGV[4], KEYS[3])
if redis.call('SADD', KEYS[4], ARGV[2]) == 0 then return false end
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], pos)
return {pos, redis.call('SMEMBERS', KEYS[4])}
"""

# KEYS: stream_pos, typing_pos, typing entry, typing_deadlines.
# Returns nil if there is no entry, else {room_id, pos, users}.
CLEAR_TYPING = (
    _TYPING_HELPERS
    + """
local e = fields(redis.call('HGETALL', KEYS[3]))
if not e['room_id'] then return false end
drop_entry(KEYS[3], e, KEYS[4])
return room_changes({[e['room_id']] = e['room_key']}, KEYS[1], KEYS[2])
"""
)

# KEYS: stream_pos, typing_pos, session_typing, typing_deadlines.
# Returns {room_id, pos, users, ...} for every room affected.
CLEAR_SESSION_TYPING = (
    _TYPING_HELPERS
    + """
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
"""
)

# KEYS: stream_pos, typing_pos, typing_deadlines. ARGV: now_ms, limit.
# Removes the (at most `limit`) entries due by now_ms; returns {room_id, pos, users, ...}
# for every room affected.
TAKE_EXPIRED_TYPING = (
    _TYPING_HELPERS
    + """
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
"""
)

# KEYS: stream_pos, presence. ARGV: user_id, record tail (see codec.presence_tail).
# Returns the position of the change.
PUT_PRESENCE = """
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], '[' .. pos .. ',' .. ARGV[2])
return pos
"""

# Read-only scripts (run with EVALSHA_RO) --------------------------------------------

# KEYS: a set of hash key names. Returns the HGETALL of each member that exists.
SET_MEMBERS_HGETALL = """
local out = {}
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 1, #keys do
  local flat = redis.call('HGETALL', keys[i])
  if #flat > 0 then out[#out + 1] = flat end
end
return out
"""

# KEYS: typing_pos, then the typing_room set of each room. ARGV: the room ids.
# Returns {room_id, pos, users, ...} for the rooms with a recorded typing position.
GET_TYPING = """
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
"""
