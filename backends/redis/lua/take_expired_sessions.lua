-- KEYS: session_deadlines. ARGV: now_ms, limit.
-- Removes the (at most `limit`) sessions due by now_ms, earliest first, and returns
-- their HGETALLs. The due members are the set's first ranks, so they leave it in one
-- ZREMRANGEBYRANK: O(log n + taken) in all.
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
