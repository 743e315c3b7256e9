# CRONLOCK_DB=1 takes the lock in database 1 only.
procedure() { cl CRONLOCK_DB=1 -- pwd >/dev/null; observe_keys; }
expect() { cat <<OUT
exit 0
stdout $WORK/cwd
key db1 cronlock.$(md5key pwd) value=now+41 ttl=41
OUT
}
