# While the command runs, our key already carries a TTL (RELEASE + 2), so no
# key can outlive a crashed host forever; the original's has none until the
# release (see DIFFERENCES.md). The value is the same: start + RELEASE + 1.
procedure() {
  cl_bg CRONLOCK_RELEASE=300 CRONLOCK_KEY=run -- sh -c 'touch started; while [ ! -e gate ]; do sleep 0.05; done'
  local holder=$BG_PID
  wait_for 10 test -e "$WORK/cwd/started"
  observe_keys
  touch "$WORK/cwd/gate"; bg_exit "$holder"
}
expect() { printf 'key db0 cronlock.run value=now+301 ttl=302\nexit 0\n'; }
expect_original() { printf 'key db0 cronlock.run value=now+301 ttl=none\nexit 0\n'; }
