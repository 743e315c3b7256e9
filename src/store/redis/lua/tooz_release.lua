-- tooz's release deletes the key while it holds our token (ARGV[2]); a
-- grace (ARGV[4], from the start ARGV[3]) or a hold (ARGV[5], from now)
-- keeps it until then instead, with our token, so tooz's peers stay out.
-- Returns {1, now, kept until}, {2, now} when deleted, {-1, now} if not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return {-1, now} end
local keep_until = kept_until(tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if keep_until <= now then
  redis.call('DEL', KEYS[1])
  return {2, now}
end
redis.call('EXPIREAT', KEYS[1], keep_until)
return {1, now, keep_until}
