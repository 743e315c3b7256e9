# Helpers for the compatibility scenarios; sourced by run.sh.
# A scenario defines `procedure` (the steps, run once per implementation),
# `expect` (what ours must observe) and, where the original deliberately
# differs, `expect_original`. Steps write observations with `note`, `cl`,
# `observe_keys`; run.sh compares them.

COMPAT_PASSWORD="compat-secret"

free_port() {
  local port
  while :; do
    # Below the kernel's ephemeral range (32768 and up by default), so a
    # port that an outgoing connection happens to use is never picked.
    port=$(( 10000 + RANDOM % 22000 ))
    [ "$port" = 6379 ] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

wait_for() { # wait_for SECONDS CMD... : poll until CMD succeeds, or fail
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -gt "$deadline" ] && return 1
    sleep 0.02
  done
}

start_redis() { # start_redis NAME [redis-server args...]: sets NAME_PORT
  local name=$1; shift
  local port; port=$(free_port)
  mkdir -p "$WORK/$name"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/$name" "$@" \
    >"$WORK/$name/log" 2>&1 &
  echo $! >>"$WORK/pids"
  printf -v "${name}_PORT" '%s' "$port"
  local auth=()
  [[ " $* " == *" --requirepass "* ]] && auth=(-a "$COMPAT_PASSWORD" --no-auth-warning)
  wait_for 10 redis-cli -p "$port" "${auth[@]}" ping || { echo "redis-server $name did not start" >&2; exit 2; }
}

start_sentinel() { # watches the plain server as "mymaster"
  SENTINEL_PORT=$(free_port)
  mkdir -p "$WORK/sentinel"
  printf 'port %s\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 %s 1\n' "$SENTINEL_PORT" "$PLAIN_PORT" \
    >"$WORK/sentinel/sentinel.conf"
  redis-server "$WORK/sentinel/sentinel.conf" --sentinel >"$WORK/sentinel/log" 2>&1 &
  echo $! >>"$WORK/pids"
  wait_for 10 sh -c "redis-cli -p $SENTINEL_PORT sentinel get-master-addr-by-name mymaster | grep -q 127.0.0.1"
}

# make_pki DIR: a throwaway CA (ca.crt), a CA that signed nothing of ours
# (other-ca.crt), a server certificate for localhost and 127.0.0.1
# (server.crt/key) and a client certificate (client.crt/key).
make_pki() {
  local dir=$1 name
  mkdir -p "$dir"
  (
    cd "$dir" || exit 1
    for name in ca other-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=compat $name" \
        -keyout "$name.key" -out "$name.crt" 2>/dev/null || exit 1
    done
    for name in server client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null || exit 1
    done
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    for name in server client; do
      openssl x509 -req -days 2 -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null || exit 1
    done
  ) || { echo "compat-tests: openssl could not make the test certificates" >&2; exit 2; }
}

# start_tls_redis NAME yes|no: a TLS-only server, "yes" to require client
# certificates; sets NAME_PORT.
start_tls_redis() {
  local name=$1 auth_clients=$2 port
  port=$(free_port)
  mkdir -p "$WORK/$name"
  redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/$name" \
    --tls-cert-file "$PKI/server.crt" --tls-key-file "$PKI/server.key" --tls-ca-cert-file "$PKI/ca.crt" \
    --tls-auth-clients "$auth_clients" >"$WORK/$name/log" 2>&1 &
  echo $! >>"$WORK/pids"
  printf -v "${name}_PORT" '%s' "$port"
  wait_for 10 redis-cli -p "$port" $(tls_cli_args "$port") ping || { echo "redis-server $name did not start" >&2; exit 2; }
}

# redis-cli options that reach PORT: the password or TLS it needs.
tls_cli_args() {
  case "$1" in
    "${TLS_PORT:-}" | "${MTLS_PORT:-}") echo "--tls --cacert $PKI/ca.crt --cert $PKI/client.crt --key $PKI/client.key" ;;
  esac
}

stop_all() {
  [ -f "$WORK/pids" ] && while read -r pid; do kill -CONT "$pid" 2>/dev/null; kill "$pid" 2>/dev/null; done <"$WORK/pids"
  wait 2>/dev/null
}

rcli() { redis-cli -p "$PLAIN_PORT" "$@"; }
now() { rcli TIME | head -1; }
md5key() { echo "$@" | md5sum | awk '{print $1}'; }

# The environment every run starts from: nothing of the caller's CRONLOCK_*,
# the private plain server, and immediate reconnects.
clean_env() {
  local name
  for name in $(compgen -e | grep '^CRONLOCK_'); do unset "$name"; done
  export CRONLOCK_HOST=127.0.0.1 CRONLOCK_PORT="$PLAIN_PORT" CRONLOCK_RECONNECT_BACKOFF=0 CRONLOCK_CONFIG=
}

note() { echo "$*" >>"$OBS"; }

# cl [VAR=value ...] -- COMMAND...: runs the implementation under test.
cl() { cl_with "$IMPL" "$@"; }
# other [VAR=value ...] -- COMMAND...: the other implementation of a mixed
# fleet (the original when CRONLOCK_REFERENCE is set, else ours again).
other() { cl_with "$OTHER" "$@"; }

# split_run [VAR=value ...] -- COMMAND...: sets RUN_VARS and RUN_CMD.
split_run() {
  RUN_VARS=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do RUN_VARS+=("$1"); shift; done
  shift
  RUN_CMD=("$@")
}

cl_with() {
  local impl=$1; shift
  split_run "$@"
  local out rc
  out=$(cd "$WORK/cwd" && env "${RUN_VARS[@]}" "$impl" "${RUN_CMD[@]}" 2>>"$WORK/stderr"); rc=$?
  note "exit $rc"
  [ -n "$out" ] && while IFS= read -r line; do note "stdout $line"; done <<<"$out"
  return 0
}

# cl_bg [VAR=value ...] -- COMMAND...: starts a run in the background; its pid in BG_PID.
cl_bg() { cl_bg_with "$IMPL" "$@"; }
other_bg() { cl_bg_with "$OTHER" "$@"; }
cl_bg_with() {
  local impl=$1; shift
  split_run "$@"
  (cd "$WORK/cwd" && exec env "${RUN_VARS[@]}" "$impl" "${RUN_CMD[@]}" >>"$WORK/bg.out" 2>>"$WORK/stderr") &
  BG_PID=$!
}
bg_exit() { wait "$1"; note "exit $?"; }

# A command that marks it started and waits until the scenario opens its
# gate, to look at the lock while a holder runs:
#   cl_bg ... -- "${GATED[@]}" NAME; wait_started NAME; ...; open_gate NAME
GATED=(sh -c 'touch "started-$1"; while [ ! -e "gate-$1" ]; do sleep 0.05; done' gated)
wait_started() { wait_for 10 test -e "$WORK/cwd/started-$1" || note "$1 never started"; }
open_gate() { touch "$WORK/cwd/gate-$1"; }

# The marker command appends to ./marker in the run's working directory, so
# its key is the same for every run and implementation.
MARK_CMD=(sh -c 'echo x >>marker')
MARK_KEY="cronlock.$(echo "sh -c echo x >>marker" | md5sum | awk '{print $1}')"
observe_runs() { note "ran $(cat "$WORK/cwd/marker" 2>/dev/null | wc -l | tr -d ' ')"; }

# mark_time: the moment later key observations are measured from (run.sh
# marks the start of each procedure).
mark_time() { BASE_TIME=$(now); }

# observe_keys [PORT]: every key in databases 0-2, its value and its expiry
# both relative to BASE_TIME ("ttl=N": expires N seconds after it; "none":
# no TTL), in a stable order. The expiry is the server's clock plus PTTL,
# read together in one script, so it is exact to the second rather than
# off by TTL's rounding. cronlock's owner record (`<key>:owner`, which the
# original does not write; DIFFERENCES.md) is left out while its lock
# exists, and noted as an orphan when it outlives it.
observe_keys() {
  local port=${1:-$PLAIN_PORT} db key value ttl t expiry tls
  local auth=()
  [ "$port" = "${AUTH_PORT:-}" ] && auth=(-a "$COMPAT_PASSWORD" --no-auth-warning)
  read -r -a tls <<<"$(tls_cli_args "$port")"
  auth+=("${tls[@]}")
  t=${BASE_TIME:-$(redis-cli -p "$port" "${auth[@]}" TIME | head -1)}
  local clock_and_pttl="local c = redis.call('TIME') return {c[1], c[2], redis.call('PTTL', KEYS[1])}"
  for db in 0 1 2; do
    while IFS= read -r key; do
      [ -z "$key" ] && continue
      if [[ "$key" == *:owner ]]; then
        if [ "$(redis-cli -p "$port" "${auth[@]}" -n "$db" EXISTS "${key%:owner}")" = 0 ]; then
          note "orphan owner record db$db $key"
        fi
        continue
      fi
      value=$(redis-cli -p "$port" "${auth[@]}" -n "$db" GET "$key")
      if [[ "$value" =~ ^[0-9]+$ ]]; then value="now$(printf '%+d' $(( value - t )))"; else value="literal:$value"; fi
      { read -r sec; read -r usec; read -r pttl; } < <(redis-cli -p "$port" "${auth[@]}" -n "$db" EVAL "$clock_and_pttl" 1 "$key")
      if [ "$pttl" = -1 ]; then
        ttl=none
      else
        expiry=$(( (sec * 1000 + usec / 1000 + pttl + 500) / 1000 ))
        ttl=$(( expiry - t ))
      fi
      note "key db$db $key value=$value ttl=$ttl"
    done < <(redis-cli -p "$port" "${auth[@]}" -n "$db" --scan | sort)
  done
}
