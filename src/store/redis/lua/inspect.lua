-- cronlockctl: {now, the lock's value or nil, its owner record or nil}.
local value = redis.call('GET', KEYS[1])
local owner = redis.pcall('GET', KEYS[1] .. ':owner')
if type(owner) ~= 'string' then owner = false end
return {now, value, owner}
