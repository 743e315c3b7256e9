# A server that accepts connections but never answers (here: stopped with
# SIGSTOP): CRONLOCK_REDIS_TIMEOUT bounds the wait and the run exits 201,
# as the original does when its `read -t` gives up.
procedure() {
  local port; port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null 2>&1 &
  local pid=$!
  # If the server did not come up, say so: a refused connection would also exit 201.
  wait_for 10 redis-cli -p "$port" ping || { note "silent server did not start"; return 0; }
  kill -STOP "$pid"
  cl CRONLOCK_PORT="$port" CRONLOCK_REDIS_TIMEOUT=1 CRONLOCK_RECONNECT_ATTEMPTS=0 -- true
  kill -CONT "$pid"; kill "$pid"; wait "$pid" 2>/dev/null
  return 0
}
expect() { printf 'exit 201\n'; }
