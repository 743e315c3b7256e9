-- Returns how many locks were deleted (0 or 1); the owner record goes too.
redis.pcall('DEL', KEYS[1] .. ':owner')
return redis.call('DEL', KEYS[1])
