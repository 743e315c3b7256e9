# A holder that outlived RELEASE finds, at its release, that another run has
# taken over: we leave the new holder's lock alone. The original's release
# overwrites it and, its grace being over, deletes it (see DIFFERENCES.md).
procedure() {
  cl_bg CRONLOCK_RELEASE=0 CRONLOCK_GRACE=0 CRONLOCK_KEY=job -- "${GATED[@]}" first
  local first=$BG_PID
  wait_started first
  wait_for 10 sh -c "[ \$(redis-cli -p $PLAIN_PORT TIME | head -1) -gt $(( $(now) + 1 )) ]"
  mark_time
  cl_bg CRONLOCK_RELEASE=600 CRONLOCK_KEY=job -- "${GATED[@]}" second
  local second=$BG_PID
  wait_started second
  open_gate first; bg_exit "$first"
  observe_keys
  open_gate second; bg_exit "$second"
}
expect() { printf 'exit 0\nkey db0 cronlock.job value=now+601 ttl=602\nexit 0\n'; }
expect_original() { printf 'exit 0\nexit 0\n'; }
