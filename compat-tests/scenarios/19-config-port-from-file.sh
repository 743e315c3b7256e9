# A config file that points at a dead port fails with 201, as in the
# original project's own test (its invalid.conf), even with RESET=yes.
procedure() {
  printf 'CRONLOCK_PORT=%s\n' "$(free_port)" >"$WORK/invalid.conf"
  cl CRONLOCK_CONFIG="$WORK/invalid.conf" CRONLOCK_RESET=yes CRONLOCK_RECONNECT_ATTEMPTS=1 -- pwd
}
expect() { printf 'exit 201\n'; }
