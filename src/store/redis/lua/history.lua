-- CRONLOCK_HISTORY: KEYS[1] is the job's list of runs, newest first, and
-- KEYS[2] its last success. ARGV[2]: the run's record, ARGV[3]: '1' when it
-- succeeded, ARGV[4]: how many runs to keep.
redis.call('LPUSH', KEYS[1], ARGV[2])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[4]) - 1)
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], ARGV[2])
end
return {1}
