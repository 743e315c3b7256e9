# The sequence of the original project's own `test` script, with waits on
# the key instead of sleeps: bad port in a config file, reset, timeout,
# run, held within grace, free after grace, another db, a bad db, bad auth.
procedure() {
  printf 'CRONLOCK_PORT=%s\n' "$(free_port)" >"$WORK/invalid.conf"
  cl CRONLOCK_CONFIG="$WORK/invalid.conf" CRONLOCK_RESET=yes CRONLOCK_RECONNECT_ATTEMPTS=1 -- pwd
  cl CRONLOCK_RESET=yes -- pwd
  cl CRONLOCK_RESET=yes -- sleep 2
  cl CRONLOCK_GRACE=2 CRONLOCK_TIMEOUT=1 -- sleep 2
  cl CRONLOCK_GRACE=2 -- pwd
  cl CRONLOCK_GRACE=1 -- pwd
  wait_for 10 sh -c "[ \"\$(redis-cli -p $PLAIN_PORT EXISTS cronlock.$(md5key pwd))\" = 0 ]" || note "grace never ended"
  cl CRONLOCK_GRACE=10 -- pwd
  cl CRONLOCK_DB=1 -- pwd
  cl CRONLOCK_DB=-1 -- pwd
  cl CRONLOCK_AUTH=INVALID_AUTH_CODE -- pwd
}
expect() { cat <<OUT
exit 201
exit 200
exit 200
exit 202
stdout emergency: had to kill 'sleep 2' after 1s timeout
exit 0
stdout $WORK/cwd
exit 200
exit 0
stdout $WORK/cwd
exit 0
stdout $WORK/cwd
exit 201
exit 201
OUT
}
