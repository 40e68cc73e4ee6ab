-- KEYS: account_data, account_data_pos. ARGV: exclusive lower bound ('(N').
-- Returns {field1, value1, field2, value2, ...} in stream order.
local fields = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local values = hmget(KEYS[1], fields)
local out = {}
for i = 1, #fields do
  out[#out + 1] = fields[i]
  out[#out + 1] = values[i]
end
return out
