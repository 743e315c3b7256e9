# A second run inside the grace finds the lock held: exit 200, no run.
procedure() { cl -- "${MARK_CMD[@]}"; cl -- "${MARK_CMD[@]}"; observe_runs; observe_keys; }
expect() { cat <<OUT
exit 0
exit 200
ran 1
key db0 $MARK_KEY value=now+41 ttl=41
OUT
}
