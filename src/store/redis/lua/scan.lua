-- cronlockctl on a server that is not a Cluster node: one page of SCAN
-- (ARGV[2]: cursor, ARGV[3]: MATCH pattern) with each lock's value and
-- owner record. Returns {now, next cursor, key, value, owner, key, ...};
-- the companions of a lock (owner record, waiters' keys, fencing counter,
-- last success) are left out.
local page = redis.call('SCAN', ARGV[2], 'MATCH', ARGV[3], 'COUNT', 1000)
local out = {now, page[1]}
for _, key in ipairs(page[2]) do
  local tail = string.match(key, ':(%a+)$')
  if tail ~= 'owner' and tail ~= 'wake' and tail ~= 'waiting' and tail ~= 'fence' and tail ~= 'succeeded' and redis.call('TYPE', key).ok == 'string' then
    local owner = redis.pcall('GET', key .. ':owner')
    if type(owner) ~= 'string' then owner = false end
    table.insert(out, key)
    table.insert(out, redis.call('GET', key))
    table.insert(out, owner)
  end
end
return out
