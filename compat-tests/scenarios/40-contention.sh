# 50 runs started together on one key (half of them the other implementation
# when the original is given): exactly one runs, all others exit 200.
procedure() {
  local pids=() i
  for i in $(seq 1 50); do
    if (( i % 2 )); then cl_bg CRONLOCK_KEY=race -- "${MARK_CMD[@]}"; else other_bg CRONLOCK_KEY=race -- "${MARK_CMD[@]}"; fi
    pids+=("$BG_PID")
  done
  local zero=0 held=0 rc
  for i in "${pids[@]}"; do
    wait "$i"; rc=$?
    case $rc in 0) zero=$((zero + 1)) ;; 200) held=$((held + 1)) ;; *) note "exit $rc" ;; esac
  done
  note "exit0 $zero"; note "exit200 $held"
  observe_runs
}
expect() { printf 'exit0 1\nexit200 49\nran 1\n'; }
