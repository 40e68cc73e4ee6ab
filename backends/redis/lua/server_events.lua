-- KEYS: server_events, then the indexes to read. ARGV: min, max (ZRANGEBYSCORE
-- syntax), limit. Returns the stored events in stream order, at most `limit` (the
-- oldest). Each index gives at most `limit` ids; only the `limit` oldest of them are
-- fetched, so the reply stays small however many rooms are asked about.
local limit = tonumber(ARGV[3])
local found = {}
for i = 2, #KEYS do
  local hits = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[1], ARGV[2],
    'WITHSCORES', 'LIMIT', 0, ARGV[3])
  for j = 1, #hits, 2 do found[#found + 1] = {tonumber(hits[j + 1]), hits[j]} end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local ids = {}
for i = 1, math.min(#found, limit) do ids[i] = found[i][2] end
return hmget(KEYS[1], ids)
