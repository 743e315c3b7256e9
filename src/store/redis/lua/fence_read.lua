-- cronlockctl fence: the newest fencing token of the counter KEYS[1].
return {0, redis.call('GET', KEYS[1])}
