-- tooz's heartbeat: the key lives ARGV[3] more milliseconds, but only while
-- it still holds our token (ARGV[2]). Returns {1, now} or {-1, now}.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return {-1, now} end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, now}
