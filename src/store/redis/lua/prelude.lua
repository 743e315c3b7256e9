-- Shared head of every cronlock script. ARGV[1] is the database number.
-- Before Redis 5, TIME is only allowed once effects replication is on.
if redis.replicate_commands then pcall(redis.replicate_commands) end
local db = tonumber(ARGV[1])
-- SELECT inside a script changes only the script's database (Redis >= 2.8.12),
-- so a bad CRONLOCK_DB fails here instead of locking in database 0.
if db ~= 0 then redis.call('SELECT', db) end
-- The server's clock, so hosts with skewed clocks agree on every deadline.
local now = tonumber(redis.call('TIME')[1])
