# CRONLOCK_RESET=yes deletes the key without running the command: exit 200,
# whether or not the key existed; then the command can run again.
procedure() {
  cl -- "${MARK_CMD[@]}"
  cl CRONLOCK_RESET=yes -- "${MARK_CMD[@]}"
  observe_keys
  cl CRONLOCK_RESET=yes -- "${MARK_CMD[@]}"
  cl -- "${MARK_CMD[@]}"
  observe_runs
}
expect() { printf 'exit 0\nexit 200\nexit 200\nexit 0\nran 2\n'; }
