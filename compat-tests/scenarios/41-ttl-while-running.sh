# While the command runs, our key already carries a TTL (RELEASE + 2), so no
# key can outlive a crashed host forever; the original's has none until the
# release (see DIFFERENCES.md). The value is the same: start + RELEASE + 1.
procedure() {
  cl_bg CRONLOCK_RELEASE=300 CRONLOCK_KEY=run -- "${GATED[@]}" holder
  local holder=$BG_PID
  wait_started holder
  observe_keys
  open_gate holder; bg_exit "$holder"
}
expect() { printf 'key db0 cronlock.run value=now+301 ttl=302\nexit 0\n'; }
expect_original() { printf 'key db0 cronlock.run value=now+301 ttl=none\nexit 0\n'; }
