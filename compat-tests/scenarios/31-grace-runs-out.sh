# After the grace the same job may run again (the original's own test does
# this with sleeps; here we wait for the key to expire).
procedure() {
  cl CRONLOCK_GRACE=1 -- "${MARK_CMD[@]}"
  cl CRONLOCK_GRACE=1 -- "${MARK_CMD[@]}"
  wait_for 10 sh -c "[ \"\$(redis-cli -p $PLAIN_PORT EXISTS '$MARK_KEY')\" = 0 ]" || note "key never expired"
  mark_time
  cl CRONLOCK_GRACE=10 -- "${MARK_CMD[@]}"
  observe_runs
  observe_keys
}
expect() { cat <<OUT
exit 0
exit 200
exit 0
ran 2
key db0 $MARK_KEY value=now+11 ttl=11
OUT
}
