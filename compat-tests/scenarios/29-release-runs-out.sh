# A holder that outlives CRONLOCK_RELEASE loses the lock: a new run takes it
# over and runs while the first is still going.
procedure() {
  cl_bg CRONLOCK_RELEASE=0 CRONLOCK_GRACE=-1 -- sh -c 'echo x >>marker; while [ ! -e gate ]; do sleep 0.05; done'
  local first=$BG_PID t
  wait_for 10 test -s "$WORK/cwd/marker" || note "first run never started"
  t=$(rcli GET "$MARK_KEY" 2>/dev/null || true)
  # Stale once the server clock passes the value.
  wait_for 10 sh -c "[ \$(redis-cli -p $PLAIN_PORT TIME | head -1) -gt $(( $(now) + 1 )) ]"
  cl CRONLOCK_GRACE=10 -- sh -c 'echo x >>marker; while [ ! -e gate ]; do sleep 0.05; done' &
  local second=$!
  wait_for 10 sh -c "[ \$(wc -l <'$WORK/cwd/marker') -ge 2 ]" || note "second run never started"
  touch "$WORK/cwd/gate"
  wait "$second"
  bg_exit "$first"
  observe_runs
}
expect() { printf 'exit 0\nexit 0\nran 2\n'; }
