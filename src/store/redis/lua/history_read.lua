-- cronlockctl history and check: the runs kept in KEYS[1], newest first,
-- and the last success in KEYS[2].
return {0, redis.call('LRANGE', KEYS[1], 0, -1), redis.call('GET', KEYS[2])}
