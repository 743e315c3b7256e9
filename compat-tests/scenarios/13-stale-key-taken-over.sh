# A key whose value lies in the past (written by anyone, no TTL) is stale:
# the run takes it over, runs, and leaves the usual grace.
procedure() { rcli SET "$MARK_KEY" $(( $(now) - 100 )) >/dev/null; cl -- "${MARK_CMD[@]}"; observe_runs; observe_keys; }
expect() { cat <<OUT
exit 0
ran 1
key db0 $MARK_KEY value=now+41 ttl=41
OUT
}
