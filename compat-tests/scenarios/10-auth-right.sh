# The right password: the lock is taken on the protected server.
procedure() { cl CRONLOCK_PORT="$AUTH_PORT" CRONLOCK_AUTH="$COMPAT_PASSWORD" -- true; observe_keys "$AUTH_PORT"; }
expect() { cat <<OUT
exit 0
key db0 cronlock.$(md5key true) value=now+41 ttl=41
OUT
}
