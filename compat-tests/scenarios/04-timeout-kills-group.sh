# CRONLOCK_TIMEOUT: the command and its grandchildren are killed with
# SIGKILL, the emergency line is printed on stdout, exit 202; the lock is
# then kept for the grace as after any run.
procedure() {
  cl CRONLOCK_TIMEOUT=1 CRONLOCK_GRACE=30 -- sh -c 'sleep 60 & echo $! >grandchild; wait'
  local pid; pid=$(cat "$WORK/cwd/grandchild")
  if wait_for 5 sh -c "! kill -0 $pid"; then note "grandchild gone"; else note "grandchild alive"; kill "$pid"; fi
  observe_keys
}
expect() { cat <<OUT
exit 202
stdout emergency: had to kill 'sh -c sleep 60 & echo \$! >grandchild; wait' after 1s timeout
grandchild gone
key db0 cronlock.$(md5key sh -c 'sleep 60 & echo $! >grandchild; wait') value=now+31 ttl=31
OUT
}
