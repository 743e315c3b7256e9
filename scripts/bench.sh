#!/usr/bin/env bash
# Side-by-side figures for one machine: median wall time, median CPU time and
# peak RSS of the bare command, cronlock on its paths (lock taken, lock held,
# TLS, directory store, a semaphore slot), then each other store (MySQL/
# MariaDB, PostgreSQL, memcached, etcd, ZooKeeper) with the lock taken and
# held, and, when CRONLOCK_REFERENCE names it, the original script; beside
# cronlock's lockex-style rows on ZooKeeper, lockex itself on the same server
# where it is installed (as scripts/test.sh installs it), with the ratio; then 200
# runs at once on one key, and how fast and how cheaply a waiter
# (CRONLOCK_WAIT) gets a released lock (both on Redis). Starts its own
# servers, each on a free loopback port with its own data directory, and
# stops them on exit; a store whose server is not installed is skipped with
# one line on stderr.
#   CRONLOCK_BIN        binary to measure (default: what scripts/build.sh builds)
#   CRONLOCK_REFERENCE  the original `cronlock` script (optional; a Redis row)
#   CRONLOCK_TEST_LOCKEX  lockex installed with pip --target (default:
#                       target/lockex, where scripts/test.sh puts it), run by
#                       Python 2.7; its rows come with zookeeper and get a
#                       tenth of the runs, as the original does
#   BENCH_RUNS          runs per row (default 1000; the original gets a tenth)
#   BENCH_ROUNDS        rounds the runs are split into (default 5): every row
#                       runs once per round, so a machine that slows down for
#                       a while slows all rows alike
#   BENCH_STORES        the stores to measure, separated by spaces or commas
#                       (default: all of them that are installed): redis,
#                       file (or directory), mysql (or mariadb), postgres (or
#                       postgresql), memcached, etcd, zookeeper. Rows keep
#                       this order whatever the order given; the bare row is
#                       always there, the contention and WAIT figures come
#                       with redis. E.g. BENCH_STORES=mysql BENCH_RUNS=100
#
# The database servers keep their shipped durability, since a commit's flush
# is most of what a lock costs there: MariaDB commits with
# innodb_flush_log_at_trx_commit=1 and the doublewrite buffer, PostgreSQL
# with fsync, synchronous_commit and full_page_writes on, etcd and ZooKeeper
# fsync each write. Only memory is made smaller. The data directories are
# under TMPDIR; the header says which file system that is. PostgreSQL trusts
# TCP logins from 127.0.0.1 (no scram round trip) and cronlock connects with
# sslmode=disable; MariaDB checks a password (mysql_native_password).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${BENCH_RUNS:-1000}"

ALL_STORES="redis file mysql postgres memcached etcd zookeeper"
STORES=" "
for name in ${BENCH_STORES:-$ALL_STORES}; do
  for name in ${name//,/ }; do
    case "$name" in directory) name=file ;; mariadb) name=mysql ;; postgresql) name=postgres ;; esac
    case " $ALL_STORES " in
      *" $name "*) [[ "$STORES" == *" $name "* ]] || STORES+="$name " ;;
      *) echo "bench.sh: BENCH_STORES: no store \"$name\" (these are: $ALL_STORES)" >&2; exit 2 ;;
    esac
  done
done
wants() { [[ "$STORES" == *" $1 "* ]]; }
skip() { # STORE PROGRAM: the store is left out
  echo "bench.sh: $1 skipped: $2 not installed" >&2
  STORES="${STORES/ $1 / }"
}
# find_program NAME [DIR...]: NAME on PATH or in one of DIRs (Debian keeps
# mariadbd in /usr/sbin, off a normal user's PATH).
find_program() {
  local name=$1 dir; shift
  command -v "$name" 2>/dev/null && return
  for dir in "$@"; do [ -x "$dir/$name" ] && { echo "$dir/$name"; return; }; done
  return 1
}

if [ -z "${CRONLOCK_BIN:-}" ]; then
  CRONLOCK_BIN="$("$ROOT/scripts/build.sh")"
fi
BIN="$(cd "$(dirname "$CRONLOCK_BIN")" && pwd)/$(basename "$CRONLOCK_BIN")"
REF=""
if [ -n "${CRONLOCK_REFERENCE:-}" ]; then
  REF="$(cd "$(dirname "$CRONLOCK_REFERENCE")" && pwd)/$(basename "$CRONLOCK_REFERENCE")"
fi
TRUE="$(command -v true)"
case "$TRUE" in /*) ;; *) TRUE=/bin/true ;; esac
command -v python3 >/dev/null || { echo "bench.sh: python3 is required" >&2; exit 2; }
for tool in redis-server redis-cli openssl; do
  if wants redis && ! command -v "$tool" >/dev/null; then skip redis "$tool"; fi
done
# lockex, found as scripts/test.sh finds it, and its real interpreter (not
# pyenv's shim, whose own start-up would be counted as lockex's).
LOCKEX_DIR="${CRONLOCK_TEST_LOCKEX:-$ROOT/target/lockex}"
LOCKEX_PYTHON=""
if wants zookeeper; then
  if [ ! -f "$LOCKEX_DIR/bin/lockex" ]; then
    echo "bench.sh: lockex rows skipped: $LOCKEX_DIR/bin/lockex not installed (scripts/test.sh installs it)" >&2
  elif ! LOCKEX_PYTHON=$(PYENV_VERSION=2.7.18 python2 -c 'import sys; print(sys.executable)' 2>/dev/null); then
    echo "bench.sh: lockex rows skipped: python2 not installed" >&2
    LOCKEX_PYTHON=""
  fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cronlock-bench.XXXXXX")"
PIDS=()
# Lock holders, stopped (and waited for) before the servers they talk to.
HOLDERS=()
# How each server is stopped, by pid: SIGTERM unless named here.
declare -A STOP_SIGNAL=()
cleanup() {
  for pid in "${HOLDERS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do kill -"${STOP_SIGNAL[$pid]:-TERM}" "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# free_port and wait_for, shared with the compatibility suite.
# shellcheck source=../compat-tests/lib.sh
source "$ROOT/compat-tests/lib.sh"

# A free port that is no store's usual one (the machine's own servers may
# listen there later) and not already given to one of ours.
TAKEN_PORTS=" 2181 2379 2380 3306 5432 6379 11211 "
private_port() { # VAR: sets VAR to the port
  local port
  while port=$(free_port); [[ "$TAKEN_PORTS" == *" $port "* ]]; do :; done
  TAKEN_PORTS+="$port "
  printf -v "$1" '%s' "$port"
}

# started NAME LOG SECONDS CHECK...: waits until CHECK succeeds, or stops
# the bench with the end of the server's log.
started() {
  local name=$1 log=$2 seconds=$3; shift 3
  wait_for "$seconds" "$@" && return
  echo "bench.sh: $name did not start; the end of $log:" >&2
  tail -n 20 "$log" >&2 || true
  exit 2
}

wait_ping() { # PORT [redis-cli options...]
  wait_for 10 redis-cli -p "$@" ping || { echo "bench.sh: redis-server on port $1 did not start" >&2; exit 2; }
}

if wants redis; then
  # A throwaway CA and a server certificate for 127.0.0.1.
  (
    cd "$WORK"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench CA" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -days 1 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile server.ext \
      -out server.crt 2>/dev/null
  )

  private_port PLAIN
  redis-server --port "$PLAIN" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/plain.log" 2>&1 &
  PIDS+=($!)
  private_port TLSPORT
  redis-server --port 0 --tls-port "$TLSPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --tls-cert-file "$WORK/server.crt" --tls-key-file "$WORK/server.key" --tls-ca-cert-file "$WORK/ca.crt" \
    --tls-auth-clients no >"$WORK/tls.log" 2>&1 &
  PIDS+=($!)
  TLSCLI=(--tls --cacert "$WORK/ca.crt")
fi

# The other stores' servers, started together (ZooKeeper's JVM first, the
# slowest) and waited for below. Each start_* sets the store's URL and a
# line for the header, or skips the store when its programs are missing.
declare -A URL=() ABOUT=()

start_zookeeper() {
  local jars=/usr/share/java dir="$WORK/zookeeper" java_log=()
  command -v java >/dev/null || { skip zookeeper java; return; }
  [ -f "$jars/zookeeper.jar" ] || { skip zookeeper "$jars/zookeeper.jar"; return; }
  private_port ZK_PORT
  mkdir -p "$dir/data"
  # ZooKeeper's defaults otherwise: tickTime 2000, forceSync=yes (each
  # write fsynced before it is acknowledged).
  printf '%s\n' "tickTime=2000" "dataDir=$dir/data" "clientPort=$ZK_PORT" "clientPortAddress=127.0.0.1" \
    "admin.enableServer=false" "4lw.commands.whitelist=srvr" "maxClientCnxns=0" >"$dir/zoo.cfg"
  [ -f /etc/zookeeper/conf/log4j.properties ] &&
    java_log=(-Dlog4j.configuration=file:/etc/zookeeper/conf/log4j.properties)
  java -Xmx128m -Dzookeeper.log.dir="$dir" "${java_log[@]}" -cp "$jars/*:/etc/zookeeper/conf" \
    org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" </dev/null >"$dir/server.log" 2>&1 &
  PIDS+=($!)
  URL[zookeeper]="zookeeper://127.0.0.1:$ZK_PORT"
}

start_etcd() {
  local dir="$WORK/etcd" client peer peer_port
  command -v etcd >/dev/null || { skip etcd etcd; return; }
  private_port ETCD_PORT
  private_port peer_port
  client="http://127.0.0.1:$ETCD_PORT" peer="http://127.0.0.1:$peer_port"
  mkdir -p "$dir"
  # A one-member cluster with etcd's defaults: every write fsynced.
  etcd --name bench --data-dir "$dir/data" --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "bench=$peer" \
    </dev/null >"$dir/etcd.log" 2>&1 &
  PIDS+=($!)
  URL[etcd]="etcd://127.0.0.1:$ETCD_PORT"
  ABOUT[etcd]="etcd $(etcd --version | awk '/^etcd Version/ {print $3}') (fsync)"
}

start_memcached() {
  local as_root=()
  command -v memcached >/dev/null || { skip memcached memcached; return; }
  private_port MEMCACHED_PORT
  # memcached refuses to run as root unless told which user to be.
  [ "$(id -u)" = 0 ] && as_root=(-u root)
  memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 "${as_root[@]}" </dev/null >"$WORK/memcached.log" 2>&1 &
  PIDS+=($!)
  URL[memcached]="memcached://127.0.0.1:$MEMCACHED_PORT"
  ABOUT[memcached]="$(memcached -V)"
}

start_mysql() {
  local install server dir="$WORK/mysql" settings
  install=$(find_program mariadb-install-db /usr/sbin /usr/bin) || { skip mysql mariadb-install-db; return; }
  server=$(find_program mariadbd /usr/sbin) || { skip mysql mariadbd; return; }
  MARIADB=$(find_program mariadb) || { skip mysql "mariadb (the client)"; return; }
  mkdir -p "$dir/tmp"
  # No option files, and MariaDB's defaults but for a smaller buffer pool:
  # innodb_flush_log_at_trx_commit=1 (the log flushed at each commit), the
  # doublewrite buffer on, no binary log. Its own tmpdir: in a shared /tmp,
  # mariadb-install-db now and then fails on another server's temporary table.
  settings=(--no-defaults --datadir="$dir/data" --tmpdir="$dir/tmp" --skip-name-resolve
    --innodb-buffer-pool-size=16M)
  # mariadbd refuses to run as root unless told to.
  [ "$(id -u)" = 0 ] && settings+=(--user=root)
  "$install" "${settings[@]}" --auth-root-authentication-method=normal --skip-test-db \
    </dev/null >"$dir/install.log" 2>&1 ||
    { echo "bench.sh: mariadb-install-db failed:" >&2; tail -n 20 "$dir/install.log" >&2; exit 2; }
  private_port MYSQL_PORT
  "$server" "${settings[@]}" --socket="$dir/mariadbd.sock" --pid-file="$dir/mariadbd.pid" \
    --log-error="$dir/error.log" --port="$MYSQL_PORT" --bind-address=127.0.0.1 </dev/null >/dev/null 2>&1 &
  PIDS+=($!)
  URL[mysql]="mysql://bench:bench-secret@127.0.0.1:$MYSQL_PORT/cronlock"
  ABOUT[mysql]="MariaDB $("$server" --version | grep -o '[0-9][0-9.]*-MariaDB' | sed 's/-MariaDB//') (innodb_flush_log_at_trx_commit=1)"
}
mysql_root() { "$MARIADB" --no-defaults --socket="$WORK/mysql/mariadbd.sock" --user=root --batch -e "$1"; }

start_postgres() {
  local bin dir="$WORK/postgres" as=()
  # Debian keeps the server programs in /usr/lib/postgresql/N/bin: the newest.
  bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1 || true)
  PG_INITDB=$(find_program initdb "$bin") || { skip postgres initdb; return; }
  PG_SERVER=$(find_program postgres "$bin") || { skip postgres postgres; return; }
  PG_ISREADY=$(find_program pg_isready "$bin") || { skip postgres pg_isready; return; }
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL will not run as root: the postgres account runs it, in a
    # directory of its own that it reaches through WORK.
    id postgres >/dev/null 2>&1 || { skip postgres "the postgres account (it will not run as root)"; return; }
    command -v setpriv >/dev/null || { skip postgres setpriv; return; }
    as=(setpriv --reuid=postgres --regid=postgres --clear-groups)
    chown postgres: "$dir"
    chmod 711 "$WORK"
  fi
  # Trust for TCP logins from 127.0.0.1: no password, no scram round trip.
  "${as[@]}" "$PG_INITDB" --pgdata="$dir/data" --username=postgres --auth-host=trust --auth-local=trust \
    --encoding=UTF8 --no-locale --no-sync </dev/null >"$dir/initdb.log" 2>&1 ||
    { echo "bench.sh: initdb failed:" >&2; tail -n 20 "$dir/initdb.log" >&2; exit 2; }
  private_port POSTGRES_PORT
  # PostgreSQL's defaults but for shared_buffers: fsync, synchronous_commit
  # and full_page_writes on.
  "${as[@]}" "$PG_SERVER" -D "$dir/data" -c listen_addresses=127.0.0.1 -c port="$POSTGRES_PORT" \
    -c unix_socket_directories="$dir" -c shared_buffers=16MB </dev/null >/dev/null 2>"$dir/postgres.log" &
  PIDS+=($!)
  # A fast shutdown: SIGTERM would wait for every client to leave.
  STOP_SIGNAL[$!]=INT
  URL[postgres]="postgres://postgres@127.0.0.1:$POSTGRES_PORT/postgres?sslmode=disable"
  ABOUT[postgres]="PostgreSQL $("$PG_SERVER" --version | sed -n 's/^postgres (PostgreSQL) \([0-9.]*\).*/\1/p') (fsync, synchronous_commit on, trust, sslmode=disable)"
}

zk_srvr() ( # the answer to ZooKeeper's `srvr`
  exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && printf srvr >&3 && timeout 2 cat <&3
)
zk_serving() { zk_srvr | grep -q 'Mode: standalone'; }
etcd_healthy() ( # etcd's /health over plain HTTP
  exec 3<>"/dev/tcp/127.0.0.1/$ETCD_PORT" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 &&
    timeout 2 cat <&3 | grep -q '"health":"true"'
)
memcached_version() (
  exec 3<>"/dev/tcp/127.0.0.1/$MEMCACHED_PORT" && printf 'version\r\n' >&3 &&
    IFS= read -r -t 2 line <&3 && [[ "$line" == VERSION* ]]
)

for store in zookeeper etcd memcached mysql postgres; do
  if wants "$store"; then "start_$store"; fi
done
if wants redis; then
  wait_ping "$PLAIN"
  wait_ping "$TLSPORT" "${TLSCLI[@]}"
fi
if wants memcached; then started memcached "$WORK/memcached.log" 10 memcached_version; fi
if wants etcd; then started etcd "$WORK/etcd/etcd.log" 30 etcd_healthy; fi
if wants mysql; then
  started mariadbd "$WORK/mysql/error.log" 60 mysql_root "SELECT 1"
  # A user with a password, as a production one would have.
  mysql_root "CREATE DATABASE cronlock; CREATE USER 'bench'@'%' IDENTIFIED BY 'bench-secret';
    GRANT ALL ON cronlock.* TO 'bench'@'%';"
fi
if wants postgres; then
  started postgres "$WORK/postgres/postgres.log" 60 "$PG_ISREADY" -q -h 127.0.0.1 -p "$POSTGRES_PORT"
fi
if wants zookeeper; then
  started zookeeper "$WORK/zookeeper/server.log" 90 zk_serving
  ABOUT[zookeeper]="ZooKeeper $(zk_srvr | sed -n 's/^Zookeeper version: \([^-,]*\).*/\1/p') (forceSync)"
fi

# Every row runs with only these settings (nothing from the caller's
# CRONLOCK_*), no config file, and a grace of -1 so that each run takes the
# lock afresh; the held rows point at a key taken for a day.
for name in $(compgen -e | grep '^CRONLOCK_' || true); do unset "$name"; done
export CRONLOCK_CONFIG=/dev/null CRONLOCK_GRACE=-1
HELD_VALUE=$(( $(date +%s) + 86400 ))
if wants redis; then
  export CRONLOCK_HOST=127.0.0.1 CRONLOCK_PORT="$PLAIN"
  redis-cli -p "$PLAIN" set cronlock.bench-held "$HELD_VALUE" >/dev/null
  redis-cli -p "$TLSPORT" "${TLSCLI[@]}" set cronlock.bench-held "$HELD_VALUE" >/dev/null
  # A semaphore of 3 whose first two slots are held: each run takes the third.
  redis-cli -p "$PLAIN" set cronlock.bench-sem "$HELD_VALUE" >/dev/null
  redis-cli -p "$PLAIN" set cronlock.bench-sem:2 "$HELD_VALUE" >/dev/null
fi
mkdir -p "$WORK/locks"
# The other stores' held key is taken by cronlock itself, for a day.
for store in mysql postgres memcached etcd zookeeper; do
  if wants "$store"; then
    CRONLOCK_URL="${URL[$store]}" CRONLOCK_KEY=bench-held CRONLOCK_GRACE=86400 "$BIN" "$TRUE" ||
      { echo "bench.sh: could not take the held lock on $store (${URL[$store]})" >&2; exit 2; }
  fi
done
if [ -n "$LOCKEX_PYTHON" ]; then
  # lockex's lock has no expiry: a cronlock in its style holds it for the
  # whole bench, in a command that runs until it is stopped.
  LOCKEX_STYLE=(CRONLOCK_URL="${URL[zookeeper]}" CRONLOCK_KEY_STYLE=lockex)
  env "${LOCKEX_STYLE[@]}" CRONLOCK_KEY=bench-held "$BIN" sleep 86400 &
  HOLDERS+=($!)
  # Asked by cronlockctl (exit 1: held), which does not contend for it.
  lockex_held() {
    local code=0
    env "${LOCKEX_STYLE[@]}" "$(dirname "$BIN")/cronlockctl" status --key bench-held || code=$?
    [ "$code" = 1 ]
  }
  wait_for 10 lockex_held ||
    { echo "bench.sh: could not take the held lock in lockex's style on ${URL[zookeeper]}" >&2; exit 2; }
fi

ROWS="$WORK/rows"
: >"$ROWS"
# Whether the rows added next are compared with the original script (a
# Redis client): not for the stores it cannot use.
VERSUS=yes
# The label of the row that the rows added next are compared with instead
# (a peer tool's), if any.
PEER=""
# row LABEL EXPECTED-EXIT RUNS ENV... -- COMMAND...
row() {
  local label=$1 expect=$2 runs=$3; shift 3
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$expect" "$runs" "$(printf '%q ' "${envs[@]}")" "$(printf '%q ' "$@")" \
    "$VERSUS" "$PEER" >>"$ROWS"
}
row "bare true" 0 "$RUNS" -- "$TRUE"
if wants redis; then
  TLSENV=(CRONLOCK_PORT="$TLSPORT" CRONLOCK_TLS=yes CRONLOCK_TLS_CA_FILE="$WORK/ca.crt")
  row "cronlock true (lock taken)" 0 "$RUNS" -- "$BIN" "$TRUE"
  row "cronlock true (lock held, 200)" 200 "$RUNS" CRONLOCK_KEY=bench-held -- "$BIN" "$TRUE"
  row "cronlock true over TLS (taken)" 0 "$RUNS" "${TLSENV[@]}" -- "$BIN" "$TRUE"
  row "cronlock true over TLS (held)" 200 "$RUNS" "${TLSENV[@]}" CRONLOCK_KEY=bench-held -- "$BIN" "$TRUE"
fi
if wants file; then
  row "cronlock true, directory store" 0 "$RUNS" CRONLOCK_URL="file://$WORK/locks" -- "$BIN" "$TRUE"
fi
if wants redis; then
  row "cronlock true, slot 3 of 3 taken" 0 "$RUNS" CRONLOCK_KEY=bench-sem CRONLOCK_CONCURRENCY=3 -- "$BIN" "$TRUE"
  if [ -n "$REF" ]; then
    row "original true (lock taken)" 0 $(( RUNS / 10 > 20 ? RUNS / 10 : 20 )) -- "$REF" "$TRUE"
    row "original true (lock held, 200)" 200 $(( RUNS / 10 > 20 ? RUNS / 10 : 20 )) CRONLOCK_KEY=bench-held -- "$REF" "$TRUE"
  fi
fi
VERSUS=no
for store in mysql postgres memcached etcd zookeeper; do
  if wants "$store"; then
    row "cronlock true, $store (taken)" 0 "$RUNS" CRONLOCK_URL="${URL[$store]}" -- "$BIN" "$TRUE"
    row "cronlock true, $store (held, 200)" 200 "$RUNS" CRONLOCK_URL="${URL[$store]}" CRONLOCK_KEY=bench-held -- "$BIN" "$TRUE"
  fi
done
if [ -n "$LOCKEX_PYTHON" ]; then
  # lockex exits 0 when --no-blocking finds the lock taken. It runs in a
  # session of its own, as in tests/it/lockex_zookeeper.rs; setsid -w passes
  # on its exit status.
  LOCKEX=("$(command -v setsid)" -w "$LOCKEX_PYTHON" "$LOCKEX_DIR/bin/lockex" -z "127.0.0.1:$ZK_PORT" --no-blocking)
  LOCKEX_RUNS=$(( RUNS / 10 > 20 ? RUNS / 10 : 20 ))
  PEER="lockex true (taken)"
  row "cronlock true, lockex style (taken)" 0 "$RUNS" "${LOCKEX_STYLE[@]}" CRONLOCK_KEY=bench-taken -- "$BIN" "$TRUE"
  PEER="lockex true (held)"
  row "cronlock true, lockex style (held, 200)" 200 "$RUNS" "${LOCKEX_STYLE[@]}" CRONLOCK_KEY=bench-held -- "$BIN" "$TRUE"
  PEER=""
  row "lockex true (taken)" 0 "$LOCKEX_RUNS" PYTHONPATH="$LOCKEX_DIR" -- "${LOCKEX[@]}" -i bench-taken -- "$TRUE"
  row "lockex true (held)" 0 "$LOCKEX_RUNS" PYTHONPATH="$LOCKEX_DIR" -- "${LOCKEX[@]}" -i bench-held -- "$TRUE"
fi

echo "# cronlock benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
LINKAGE=$( (file -b "$BIN" 2>/dev/null || true) | grep -o 'statically linked\|dynamically linked' || echo "linkage unknown")
# glibc shows in a static binary by its tunables parser, in a dynamic one by
# its symbol versions; a musl binary has neither.
if grep -aq 'GLIBC_TUNABLES\|GLIBC_2\.' "$BIN"; then LINKAGE="$LINKAGE, glibc"; else LINKAGE="$LINKAGE, no glibc"; fi
if wants redis; then
  echo "# $(redis-server --version | cut -d' ' -f1-3), binary $BIN ($(stat -c %s "$BIN") bytes, $LINKAGE)"
else
  echo "# binary $BIN ($(stat -c %s "$BIN") bytes, $LINKAGE)"
fi
OTHERS=()
for store in mysql postgres memcached etcd zookeeper; do
  if wants "$store"; then OTHERS+=("${ABOUT[$store]}"); fi
done
if [ "${#OTHERS[@]}" -gt 0 ]; then
  echo "# $(printf '%s; ' "${OTHERS[@]}")their data on $(stat -f -c %T "$WORK")"
fi
if [ -n "$LOCKEX_PYTHON" ]; then
  echo "# $(cd "$LOCKEX_DIR" && ls -d lockex-*.dist-info kazoo-*.dist-info | sed 's/\.dist-info$//' | tr '\n' ' ')under $("$LOCKEX_PYTHON" -V 2>&1), $LOCKEX_DIR"
fi
if [ -n "$REF" ] || [ -n "$LOCKEX_PYTHON" ]; then
  echo "# other / this: the original script's wall time over cronlock's (Redis rows), lockex's over cronlock's in its style"
fi
if command -v hyperfine >/dev/null; then
  echo "# wall: median of hyperfine -N ($(hyperfine --version)); CPU: median from wait4 over as many runs; peak RSS: median under GNU time"
else
  echo "# wall and CPU: medians from wait4 over repeated runs (hyperfine not installed); peak RSS: median under GNU time"
fi
echo "# runs per row split into ${BENCH_ROUNDS:-5} rounds, each running every row in turn"
echo "# load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$ROWS" "$WORK" <<'PY'
import json, os, shlex, shutil, statistics, subprocess, sys, time

rows_file, work = sys.argv[1], sys.argv[2]
rows = [line.rstrip("\n").split("\t") for line in open(rows_file)]
output = os.path.join(work, "output")
hyperfine = shutil.which("hyperfine")

gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

def peak_rss(argv, env, runs):
    """Median peak RSS in KiB. Measured under GNU time, a small process: a
    child spawned from Python inherits Python's high-water mark through exec."""
    if not gnu_time:
        return None
    out = os.path.join(work, "rss")
    values = []
    for _ in range(runs):
        subprocess.run([gnu_time, "-f", "%M", "-o", out] + argv, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        values.append(int(open(out).read().split()[-1]))
    return statistics.median(values)

def wait4_stats(argv, env, runs, expect):
    walls, cpus = [], []
    for _ in range(runs):
        start = time.perf_counter()
        # Its output to a file, as hyperfine sends it to /dev/null: shown
        # only when the exit status is not the one expected.
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 1, output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2)])
        _, status, usage = os.wait4(pid, 0)
        walls.append(time.perf_counter() - start)
        code = os.waitstatus_to_exitcode(status)
        if code != expect:
            sys.exit(f"bench.sh: {' '.join(argv)} exited {code}, expected {expect}:\n"
                     + open(output, errors="replace").read()[-2000:])
        cpus.append(usage.ru_utime + usage.ru_stime)
    return walls, cpus

def hyperfine_times(command, env, runs):
    out = os.path.join(work, "hf.json")
    subprocess.run([hyperfine, "-N", "--style", "none", "--warmup", "10", "--runs", str(runs),
                    "-i", "--export-json", out, command], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env)
    return json.load(open(out))["results"][0]["times"]

rounds = max(1, int(os.environ.get("BENCH_ROUNDS", "5")))
prepared = []
versus_original = {label: versus == "yes" for label, *_, versus, _ in rows}
peer_of = {label: peer for label, *_, peer in rows if peer}
for label, expect, runs, assignments, command, _, _ in rows:
    env = dict(os.environ)
    env.update(a.split("=", 1) for a in shlex.split(assignments) if a)
    prepared.append((label, int(expect), max(1, int(runs) // rounds), env, command, shlex.split(command)))

walls = {label: [] for label, *_ in prepared}
cpus = {label: [] for label, *_ in prepared}
for _ in range(rounds):
    for label, expect, runs, env, command, argv in prepared:
        wall, cpu = wait4_stats(argv, env, runs, expect)
        cpus[label] += cpu
        walls[label] += hyperfine_times(command, env, runs) if hyperfine else wall

results = []
for label, expect, runs, env, command, argv in prepared:
    rss = peak_rss(argv, env, min(runs * rounds, 50))
    results.append((label, statistics.median(walls[label]), statistics.median(cpus[label]), rss))

bare = results[0][1]
ours = {label: wall for label, wall, _, _ in results}
orig_taken = ours.get("original true (lock taken)")
orig_held = ours.get("original true (lock held, 200)")
width = max(34, *(len(label) for label, *_ in results))
print(f"{'':{width}} {'wall':>9} {'over bare':>10} {'CPU':>9} {'peak RSS':>10} {'other / this':>16}")
for label, wall, cpu, rss in results:
    versus = ""
    if label in peer_of and peer_of[label] in ours:
        versus = f"{ours[peer_of[label]] / wall:.0f}x faster"
    elif label.startswith("cronlock") and orig_taken and versus_original[label]:
        reference = orig_held if "held" in label else orig_taken
        versus = f"{reference / wall:.0f}x faster"
    over = "" if label == "bare true" else f"{(wall - bare) * 1000:+.2f} ms"
    shown_rss = "n/a" if rss is None else f"{rss / 1024:.1f}MiB"
    print(f"{label:{width}} {wall * 1000:7.2f}ms {over:>10} {cpu * 1000:7.2f}ms {shown_rss:>10} {versus:>16}")
PY

# The rest is measured on Redis.
wants redis || exit 0
echo

# 200 runs at once on one key (the first takes the lock, the grace keeps it).
redis-cli -p "$PLAIN" del cronlock.bench-contention >/dev/null
start=$(date +%s%N)
codes="$WORK/codes"
: >"$codes"
runners=()
for _ in $(seq 200); do
  (code=0; CRONLOCK_GRACE=40 CRONLOCK_KEY=bench-contention "$BIN" "$TRUE" || code=$?; echo "$code" >>"$codes") &
  runners+=($!)
done
wait "${runners[@]}" || true
end=$(date +%s%N)
echo "200 runs at once on one key: all finished in $(( (end - start) / 1000000 )) ms;" \
  "exit codes: $(sort -n "$codes" | uniq -c | awk '{printf "%s × %s, ", $1, $2}' | sed 's/, $//')"

# CRONLOCK_WAIT: a waiter blocked on a held lock, and the moment it starts
# after the holder's command ends (the holder's release is in between).
# Each trial: a holder that runs 300 ms, a waiter started 100 ms into it.
now_ns() { date +%s%N; }
delays=()
for trial in $(seq 20); do
  CRONLOCK_KEY=bench-wait "$BIN" sh -c "sleep 0.3; date +%s%N >$WORK/held-end" &
  holder=$!
  sleep 0.1
  CRONLOCK_KEY=bench-wait CRONLOCK_WAIT=10 "$BIN" sh -c "date +%s%N >$WORK/waiter-start"
  wait "$holder"
  delays+=($(( ($(cat "$WORK/waiter-start") - $(cat "$WORK/held-end")) / 1000 )))
done
sorted=$(printf '%s\n' "${delays[@]}" | sort -n)
median=$(echo "$sorted" | sed -n 10p)
worst=$(echo "$sorted" | tail -1)
echo "WAIT: from the holder's command end to the waiter's start, 20 trials: median $((median / 1000)).$(printf '%03d' $((median % 1000))) ms, worst $((worst / 1000)).$(printf '%03d' $((worst % 1000))) ms"

# What five waiters cost the server while a holder runs for 6 s: commands
# counted by the server over the middle 4 s.
CRONLOCK_KEY=bench-cost "$BIN" sleep 6 &
holder=$!
sleep 0.2
waiters=()
for _ in 1 2 3 4 5; do
  CRONLOCK_KEY=bench-cost CRONLOCK_WAIT=30 "$BIN" "$TRUE" &
  waiters+=($!)
done
sleep 1
before=$(redis-cli -p "$PLAIN" info stats | tr -d '\r' | awk -F: '/^total_commands_processed/ {print $2}')
sleep 4
after=$(redis-cli -p "$PLAIN" info stats | tr -d '\r' | awk -F: '/^total_commands_processed/ {print $2}')
wait "$holder" "${waiters[@]}" || true
# The INFO that reads the first count is counted in the second.
echo "WAIT: 5 waiters cost the server $(python3 -c "print(f'{($after - $before - 1) / 5 / 4:.2f}')") commands per waiter per second"
