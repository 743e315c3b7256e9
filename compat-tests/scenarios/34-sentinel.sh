# CRONLOCK_USE_SENTINEL=yes asks the sentinel for the master and locks there;
# an unknown master name is an error (201).
procedure() {
  cl CRONLOCK_USE_SENTINEL=yes CRONLOCK_SENTINEL_HOST=127.0.0.1 CRONLOCK_SENTINEL_PORT="$SENTINEL_PORT" CRONLOCK_HOST=192.0.2.1 CRONLOCK_PORT=1 -- true
  observe_keys
  cl CRONLOCK_USE_SENTINEL=yes CRONLOCK_SENTINEL_HOST=127.0.0.1 CRONLOCK_SENTINEL_PORT="$SENTINEL_PORT" CRONLOCK_SENTINEL_MASTER=nosuchmaster -- false
}
expect() { cat <<OUT
exit 0
key db0 cronlock.$(md5key true) value=now+41 ttl=41
exit 201
OUT
}
