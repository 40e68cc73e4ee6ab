-- KEYS: room_state, events. Returns the stored current state events, unordered.
return hmget(KEYS[2], redis.call('HVALS', KEYS[1]))
