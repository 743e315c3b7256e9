# A value equal to the current second still counts as held ("expiring now").
# Retried until the run fits inside one second of the server's clock.
procedure() {
  local keep=$OBS t i
  for i in 1 2 3 4 5 6 7 8; do
    OBS="$WORK/try"; : >"$OBS"; rm -f "$WORK/cwd/marker"
    t=$(now)
    rcli SET "$MARK_KEY" "$t" >/dev/null
    cl -- "${MARK_CMD[@]}"
    observe_runs
    if [ "$(now)" = "$t" ]; then OBS=$keep; cat "$WORK/try" >>"$OBS"; return; fi
  done
  OBS=$keep; note "never fitted in one second"
}
expect() { printf 'exit 200\nran 0\n'; }
