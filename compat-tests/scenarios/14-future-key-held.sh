# A key dated in the future without a TTL is a held lock: 200, key untouched.
procedure() { rcli SET "$MARK_KEY" $(( $(now) + 1000 )) >/dev/null; cl -- "${MARK_CMD[@]}"; observe_runs; observe_keys; }
expect() { cat <<OUT
exit 200
ran 0
key db0 $MARK_KEY value=now+1000 ttl=none
OUT
}
