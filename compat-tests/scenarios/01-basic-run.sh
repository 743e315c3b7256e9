# A free lock: the command runs, and the key keeps start + GRACE + 1 as
# its value, expiring then (GRACE 40 by default).
procedure() { cl -- "${MARK_CMD[@]}"; observe_runs; observe_keys; }
expect() { cat <<OUT
exit 0
ran 1
key db0 $MARK_KEY value=now+41 ttl=41
OUT
}
