# GRACE=-1: the lock is dropped as soon as the command ends.
procedure() { cl CRONLOCK_GRACE=-1 -- "${MARK_CMD[@]}"; observe_keys; cl CRONLOCK_GRACE=-1 -- "${MARK_CMD[@]}"; observe_runs; }
expect() { printf 'exit 0\nexit 0\nran 2\n'; }
