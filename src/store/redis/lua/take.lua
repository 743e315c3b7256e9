-- Takes `key` if it is free or stale. ARGV[2]: CRONLOCK_RELEASE, ARGV[3]:
-- the owner record ('' for none). Returns {status, now, value before}:
-- status 1 = taken, 2 = taken over from a stale holder, 0 = held by another.
local function take(key)
  local expire_at = now + tonumber(ARGV[2]) + 1
  local current = redis.call('GET', key)
  local status = 1
  if current then
    -- The original reads the value with bash arithmetic, where anything that
    -- is not a number counts as 0: such a lock is stale.
    local value = tonumber(current) or 0
    -- Held while its expiry time is now or later, as in the original.
    if value >= now then return {0, now, current} end
    status = 2
  end
  redis.call('SET', key, string.format('%d', expire_at))
  -- One second past the value, so the key outlives the "expiring now" second
  -- in which the original still treats the lock as held.
  redis.call('EXPIREAT', key, expire_at + 1)
  if ARGV[3] ~= '' then
    -- The owner record beside the lock, with the same life. Best effort
    -- (pcall): an ACL that does not cover it, or a Cluster node that does not
    -- serve its slot, leaves the lock itself untouched.
    local owner = key .. ':owner'
    local set = redis.pcall('SET', owner, ARGV[3])
    if type(set) == 'table' and set.ok then redis.pcall('EXPIREAT', owner, expire_at + 1) end
  end
  return {status, now, current or ''}
end
