-- Lease mode: extend our lock while the command runs.
-- ARGV[2]: the value we last confirmed, ARGV[3]: the lease in seconds,
-- ARGV[4]: '1' when our previous renewal may have run without our seeing
-- the answer. Returns {1, now, new value} while ours, {-1, now} if not.
local ours = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[2] then
  -- A renewal whose answer we lost wrote now + lease + 1 at some time up to
  -- `now`. While `now` has not passed our confirmed value, nobody else can
  -- have taken the lock over, so such a value is still ours.
  local value = tonumber(current)
  if not (ARGV[4] == '1' and value and now <= ours and value > ours and value <= now + lease + 1) then
    return {-1, now}
  end
end
local value = now + lease + 1
redis.call('SET', KEYS[1], string.format('%d', value))
redis.call('EXPIREAT', KEYS[1], value + 1)
redis.pcall('EXPIREAT', KEYS[1] .. ':owner', value + 1)
return {1, now, value}
