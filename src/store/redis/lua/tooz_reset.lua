-- tooz's break_: the key goes, whoever holds it. Returns 1 if it existed.
return redis.call('DEL', KEYS[1])
