return take(KEYS[1])
