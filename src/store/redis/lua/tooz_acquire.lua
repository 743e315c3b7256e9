-- tooz's lock (redis-py's Lock.acquire): SET key token NX PX ms, where
-- ARGV[2] is our token and ARGV[3] the lease in milliseconds.
-- Returns {1, now} when the key is ours, {0, now, its PTTL} when it is not.
-- A request sent again after its answer was lost finds our own token: that
-- first try took it.
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', tonumber(ARGV[3])) then return {1, now} end
if redis.call('GET', KEYS[1]) == ARGV[2] then return {1, now} end
return {0, now, redis.call('PTTL', KEYS[1])}
