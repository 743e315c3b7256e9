-- CRONLOCK_FENCING: the next fencing token of the counter KEYS[2], only
-- while the lock KEYS[1] still holds our value ARGV[2] (an empty ARGV[2]:
-- the caller checks that itself, when a Cluster keeps the two keys on
-- different nodes). Returns {1, token}, or {-1} when the lock is not ours.
--
-- The token is the larger of the counter + 1 and the server's clock in
-- microseconds, so that a counter lost with a server that keeps nothing on
-- disk, or behind after a failover, still starts above every token given
-- before (as long as the servers' clocks agree).
if ARGV[2] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return {-1}
end
local time = redis.call('TIME')
local clock = tonumber(time[1]) * 1000000 + tonumber(time[2])
local token = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
token = math.max(token + 1, clock)
local text = string.format('%d', token)
redis.call('SET', KEYS[2], text)
return {1, text}
