# Mixed fleet: while the other implementation (the original, when given)
# runs a job, ours finds the lock held and does not run it.
procedure() {
  other_bg CRONLOCK_KEY=fleet -- "${GATED[@]}" holder
  local holder=$BG_PID
  wait_started holder
  cl CRONLOCK_KEY=fleet -- "${MARK_CMD[@]}"
  open_gate holder; bg_exit "$holder"
  cl CRONLOCK_KEY=fleet -- "${MARK_CMD[@]}"
  observe_runs
  observe_keys
}
expect() { printf 'exit 200\nexit 0\nexit 200\nran 0\nkey db0 cronlock.fleet value=now+41 ttl=41\n'; }
