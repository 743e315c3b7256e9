# Mixed fleet: a lock gone stale under one implementation is taken over by
# the other, in both directions.
takeover() { # takeover HOLDER TAKER
  "$1_bg" CRONLOCK_RELEASE=0 CRONLOCK_GRACE=-1 CRONLOCK_KEY="stale-$1" -- "${GATED[@]}" "$1"
  local holder=$BG_PID
  wait_started "$1"
  wait_for 10 sh -c "[ \$(redis-cli -p $PLAIN_PORT TIME | head -1) -gt $(( $(now) + 1 )) ]"
  "$2" CRONLOCK_KEY="stale-$1" -- "${MARK_CMD[@]}"
  open_gate "$1"; bg_exit "$holder"
}
procedure() {
  takeover other cl
  takeover cl other
  observe_runs
}
expect() { printf 'exit 0\nexit 0\nexit 0\nexit 0\nran 2\n'; }
