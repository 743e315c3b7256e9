# A value that is not a number counts as 0 (bash arithmetic), so it is stale.
procedure() { rcli SET "$MARK_KEY" garbage >/dev/null; cl -- "${MARK_CMD[@]}"; observe_runs; observe_keys; }
expect() { cat <<OUT
exit 0
ran 1
key db0 $MARK_KEY value=now+41 ttl=41
OUT
}
