# Mixed fleet the other way round: ours runs the job, the other finds it held.
procedure() {
  cl_bg CRONLOCK_KEY=fleet -- "${GATED[@]}" holder
  local holder=$BG_PID
  wait_started holder
  other CRONLOCK_KEY=fleet -- "${MARK_CMD[@]}"
  open_gate holder; bg_exit "$holder"
  other CRONLOCK_KEY=fleet -- "${MARK_CMD[@]}"
  observe_runs
}
expect() { printf 'exit 200\nexit 0\nexit 200\nran 0\n'; }
