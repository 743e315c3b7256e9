-- ARGV[2]: start time, ARGV[3]: CRONLOCK_GRACE, ARGV[4]: the value we wrote,
-- ARGV[5]: CRONLOCK_HOLD (0 for none).
-- Returns {status, now, kept until}: 1 = kept for the grace or the hold,
-- 2 = deleted (both over), -1 = left alone because another holder owns it now.
local ours = tonumber(ARGV[4])
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[4] then
  local value = tonumber(current) or 0
  -- A later value means someone took the lock over after our RELEASE ran
  -- out; never clobber them. An equal-or-earlier value while our time is not
  -- up is still ours (an original-script host that lost the takeover race
  -- rewrites the value with its own, slightly earlier, expiry).
  if value > ours or now > ours then return {-1, now} end
end
local keep_until = kept_until(tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5]))
-- Our owner record goes with the lock (best effort, as in acquire.lua).
local owner = KEYS[1] .. ':owner'
-- Waiters (CRONLOCK_WAIT) leave a marker; wake the longest-blocked one with
-- a token on the list it blocks on. Best effort: without it they poll.
local function wake()
  if redis.pcall('EXISTS', KEYS[1] .. ':waiting') == 1 then
    redis.pcall('RPUSH', KEYS[1] .. ':wake', '1')
    redis.pcall('EXPIRE', KEYS[1] .. ':wake', 5)
  end
end
if keep_until <= now then
  redis.call('DEL', KEYS[1])
  redis.pcall('DEL', owner)
  wake()
  return {2, now}
end
redis.call('SET', KEYS[1], string.format('%d', keep_until))
redis.call('EXPIREAT', KEYS[1], keep_until)
-- The record says when the command ended, so an operator can tell a lock
-- in its grace from a running one.
local record = redis.pcall('GET', owner)
if type(record) == 'string' and string.sub(record, -1) == '}' and not string.find(record, '"ended":', 1, true) then
  redis.pcall('SET', owner, string.sub(record, 1, -2) .. ',"ended":' .. now .. '}')
end
redis.pcall('EXPIREAT', owner, keep_until)
wake()
return {1, now, keep_until}
