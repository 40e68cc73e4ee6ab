"""The Lua scripts of the Redis backend.

Redis runs a script atomically: no other command runs between its first and last
call, so a script is this backend's transaction. Every multi-key write goes through
one, and so do multi-step reads that would otherwise need several round trips.

Scripts receive every key they touch from Python (`keys.py` owns the formats); the
only key names they read out of values are full key names stored for that purpose
(the token keys in a device's token set here; the session and typing indexes in
`session_scripts.py`). They never decode JSON: stored values are assembled from pieces
(see `codec.py`), because Redis' cjson would turn integers above 1e14 into floats and
`[]` into `{}`.

Validation happens before the first write, so a script that reports NotFound or
Conflict has written nothing. A command that fails ends a script but keeps the writes
it had made (Redis does not roll scripts back), so a script whose writes must stay
together (APPEND_EVENTS) also checks first that each key it writes holds its kind of
value.
"""

from __future__ import annotations

# HMGET in chunks: Lua's `unpack` fails beyond a few thousand values.
_HMGET = """
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, 1000 do
    local chunk = redis.call('HMGET', key, unpack(fields, i, math.min(i + 999, #fields)))
    for j = 1, #chunk do out[#out + 1] = chunk[j] end
  end
  return out
end
"""

# KEYS[1] hash. ARGV: field/value pairs. Returns 1 if created, 0 if the key existed.
CREATE_HASH = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS: user hash, user_ids zset. ARGV: user id, then field/value pairs.
# Returns 1 if created, 0 (Conflict, nothing written) if the user hash existed.
CREATE_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# KEYS[1] hash. ARGV: field, '1' to set or '0' to delete, value.
# Returns 0 (nothing changed) if the hash does not exist, else 1.
SET_FIELD_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""

# KEYS: token, device, user_devices, device_tokens.
# ARGV: device_id, '1' if the display name is given else '0', display name,
#       2 * number of token fields, token field/value pairs, device field/value pairs.
# Returns 0 (Conflict, nothing written) if the token exists, else 1.
ADD_DEVICE_WITH_TOKEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ntok = tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 5 + ntok))
  redis.call('SADD', KEYS[3], ARGV[1])
elseif ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 'display_name', ARGV[3])
end
local old = redis.call('SMEMBERS', KEYS[4])
for i = 1, #old do redis.call('DEL', old[i]) end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + ntok))
redis.call('SADD', KEYS[4], KEYS[1])
return 1
"""

# KEYS[1] user_devices, then per device: device, device_tokens, txns.
# ARGV[1]: '1' to require that the user's device set is exactly the given ids (else
# return -1 and write nothing), ARGV[2..]: device ids.
# Returns how many of the devices existed.
DELETE_DEVICES = """
local n = #ARGV - 1
if ARGV[1] == '1' then
  if redis.call('SCARD', KEYS[1]) ~= n then return -1 end
  for i = 1, n do
    if redis.call('SISMEMBER', KEYS[1], ARGV[i + 1]) == 0 then return -1 end
  end
end
local deleted = 0
for i = 1, n do
  local k = 1 + (i - 1) * 3
  deleted = deleted + redis.call('DEL', KEYS[k + 1])
  redis.call('SREM', KEYS[1], ARGV[i + 1])
  local tokens = redis.call('SMEMBERS', KEYS[k + 2])
  for j = 1, #tokens do redis.call('DEL', tokens[j]) end
  redis.call('DEL', KEYS[k + 2], KEYS[k + 3])
end
return deleted
"""

# KEYS: stream_pos, events, room_latest, txns ('' without a transaction), then per
#       event (6 keys): room, room_events, room_state, room_state_content, room_members,
#       user_rooms ('' unless m.room.member).
# ARGV[1]: number of events, ARGV[2]: the transaction's txn key ('' without one), then
#       per event (7 values): event_id, room_id, body JSON, state field ('' for a
#       non-state event), content JSON (state events), state_key (member events),
#       membership record tail ('' unless m.room.member).
# Returns, having written nothing, {'duplicate', recorded event id}, {'notfound',
# room_id}, {'conflict', event_id} or {'wrongtype', key}; else {'ok', pos1,
# prev_content1, pos2, prev_content2, ...}, the transaction (if any) recorded for the
# first event.
# Every key written is checked for its kind of value first: a write failing half way
# would leave, e.g., events stored without their transaction's record.
APPEND_EVENTS = """
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
  local k = 4 + i * 6
  local a = 2 + i * 7
  if redis.call('EXISTS', KEYS[k + 1]) == 0 then return {'notfound', ARGV[a + 2]} end
  local id = ARGV[a + 1]
  if seen[id] or redis.call('HEXISTS', KEYS[2], id) == 1 then return {'conflict', id} end
  seen[id] = true
  -- Written: room_events; room_state and room_state_content for a state event;
  -- room_members and user_rooms for a member event.
  local written = 2
  if ARGV[a + 4] ~= '' then written = ARGV[a + 7] == '' and 4 or 6 end
  for j = 2, written do
    local key = KEYS[k + j]
    if not holds(key, j == 2 and 'zset' or 'hash') then return {'wrongtype', key} end
  end
end
if has_txn then redis.call('HSET', KEYS[4], txn, ARGV[3]) end
local out = {'ok'}
for i = 0, n - 1 do
  local k = 4 + i * 6
  local a = 2 + i * 7
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
  end
  out[#out + 1] = pos
  out[#out + 1] = prev
end
return out
"""

# KEYS: room_members, user_rooms. ARGV: user_id, room_id.
# Sets the forgotten flag (the record's first element). Returns 0 if there is no record.
FORGET_ROOM = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
record = '[1' .. string.sub(record, 3)
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('HSET', KEYS[2], ARGV[2], record)
return 1
"""

# KEYS: stream_pos, account_data, account_data_pos. ARGV: field, content JSON.
# Returns the stream position of the change.
PUT_ACCOUNT_DATA = """
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], '[' .. pos .. ',' .. ARGV[2] .. ']')
redis.call('ZADD', KEYS[3], pos, ARGV[1])
return pos
"""

# KEYS: filter_id, filters. ARGV: definition JSON. Returns the new filter id.
CREATE_FILTER = """
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[1])
return id
"""

# Read-only scripts (run with EVALSHA_RO) --------------------------------------------

# KEYS: hashes. Returns each one's HGETALL as a flat field/value list ({} if absent).
HGETALL_EACH = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
"""

# KEYS: room_events, events. ARGV: min, max (ZRANGEBYSCORE syntax), limit,
# '1' for newest first. Returns the stored events in order.
ROOM_EVENTS = (
    _HMGET
    + """
local ids
if ARGV[4] == '1' then
  ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[1], 'LIMIT', 0, ARGV[3])
else
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
end
return hmget(KEYS[2], ids)
"""
)

# KEYS: room_state, events. Returns the stored current state events, unordered.
CURRENT_STATE = (
    _HMGET
    + """
return hmget(KEYS[2], redis.call('HVALS', KEYS[1]))
"""
)

# KEYS: room_state, events. ARGV: state field. Returns the stored event or nil.
STATE_EVENT = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[2], id)
"""

# KEYS: account_data, account_data_pos. ARGV: exclusive lower bound ('(N').
# Returns {field1, value1, field2, value2, ...} in stream order.
ACCOUNT_DATA_SINCE = (
    _HMGET
    + """
local fields = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local values = hmget(KEYS[1], fields)
local out = {}
for i = 1, #fields do
  out[#out + 1] = fields[i]
  out[#out + 1] = values[i]
end
return out
"""
)
