# Mixed fleet the other way round: ours runs the job, the other finds it held.
procedure() {
  cl_bg CRONLOCK_KEY=fleet -- sh -c 'touch started; while [ ! -e gate ]; do sleep 0.05; done'
  local holder=$BG_PID
  wait_for 10 test -e "$WORK/cwd/started"
  other CRONLOCK_KEY=fleet -- "${MARK_CMD[@]}"
  touch "$WORK/cwd/gate"; bg_exit "$holder"
  other CRONLOCK_KEY=fleet -- "${MARK_CMD[@]}"
  observe_runs
}
expect() { printf 'exit 200\nexit 0\nexit 200\nran 0\n'; }
