#!/usr/bin/env bash
# Side-by-side figures for one machine: median wall time, median CPU time and
# peak RSS of the bare command, cronlock on its paths (lock taken, lock held,
# TLS, directory store, a semaphore slot) and, when CRONLOCK_REFERENCE names
# it, the original script; then 200 runs at once on one key, and how fast
# and how cheaply a waiter (CRONLOCK_WAIT) gets a released lock. Starts its
# own servers.
#   CRONLOCK_BIN        binary to measure (default: what scripts/build.sh builds)
#   CRONLOCK_REFERENCE  the original `cronlock` script (optional)
#   BENCH_RUNS          runs per row (default 1000; the original gets a tenth)
#   BENCH_ROUNDS        rounds the runs are split into (default 5): every row
#                       runs once per round, so a machine that slows down for
#                       a while slows all rows alike
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${BENCH_RUNS:-1000}"

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
for tool in redis-server redis-cli openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is required" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cronlock-bench.XXXXXX")"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# free_port and wait_for, shared with the compatibility suite.
# shellcheck source=../compat-tests/lib.sh
source "$ROOT/compat-tests/lib.sh"

wait_ping() { # PORT [redis-cli options...]
  wait_for 10 redis-cli -p "$@" ping || { echo "bench.sh: redis-server on port $1 did not start" >&2; exit 2; }
}

# A throwaway CA and a server certificate for 127.0.0.1.
(
  cd "$WORK"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench CA" -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
  openssl x509 -req -days 1 -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -extfile server.ext \
    -out server.crt 2>/dev/null
)

PLAIN=$(free_port)
redis-server --port "$PLAIN" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/plain.log" 2>&1 &
PIDS+=($!)
TLSPORT=$(free_port)
redis-server --port 0 --tls-port "$TLSPORT" --bind 127.0.0.1 --save '' --appendonly no \
  --tls-cert-file "$WORK/server.crt" --tls-key-file "$WORK/server.key" --tls-ca-cert-file "$WORK/ca.crt" \
  --tls-auth-clients no >"$WORK/tls.log" 2>&1 &
PIDS+=($!)
TLSCLI=(--tls --cacert "$WORK/ca.crt")
wait_ping "$PLAIN"
wait_ping "$TLSPORT" "${TLSCLI[@]}"

# Every row runs with only these settings (nothing from the caller's
# CRONLOCK_*), no config file, and a grace of -1 so that each run takes the
# lock afresh; the held rows point at a key taken for a day.
for name in $(compgen -e | grep '^CRONLOCK_' || true); do unset "$name"; done
export CRONLOCK_CONFIG=/dev/null CRONLOCK_HOST=127.0.0.1 CRONLOCK_PORT="$PLAIN" CRONLOCK_GRACE=-1
HELD_VALUE=$(( $(date +%s) + 86400 ))
redis-cli -p "$PLAIN" set cronlock.bench-held "$HELD_VALUE" >/dev/null
redis-cli -p "$TLSPORT" "${TLSCLI[@]}" set cronlock.bench-held "$HELD_VALUE" >/dev/null
# A semaphore of 3 whose first two slots are held: each run takes the third.
redis-cli -p "$PLAIN" set cronlock.bench-sem "$HELD_VALUE" >/dev/null
redis-cli -p "$PLAIN" set cronlock.bench-sem:2 "$HELD_VALUE" >/dev/null
mkdir -p "$WORK/locks"

ROWS="$WORK/rows"
: >"$ROWS"
# row LABEL EXPECTED-EXIT RUNS ENV... -- COMMAND...
row() {
  local label=$1 expect=$2 runs=$3; shift 3
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$expect" "$runs" "$(printf '%q ' "${envs[@]}")" "$(printf '%q ' "$@")" >>"$ROWS"
}
TLSENV=(CRONLOCK_PORT="$TLSPORT" CRONLOCK_TLS=yes CRONLOCK_TLS_CA_FILE="$WORK/ca.crt")
row "bare true" 0 "$RUNS" -- "$TRUE"
row "cronlock true (lock taken)" 0 "$RUNS" -- "$BIN" "$TRUE"
row "cronlock true (lock held, 200)" 200 "$RUNS" CRONLOCK_KEY=bench-held -- "$BIN" "$TRUE"
row "cronlock true over TLS (taken)" 0 "$RUNS" "${TLSENV[@]}" -- "$BIN" "$TRUE"
row "cronlock true over TLS (held)" 200 "$RUNS" "${TLSENV[@]}" CRONLOCK_KEY=bench-held -- "$BIN" "$TRUE"
row "cronlock true, directory store" 0 "$RUNS" CRONLOCK_URL="file://$WORK/locks" -- "$BIN" "$TRUE"
row "cronlock true, slot 3 of 3 taken" 0 "$RUNS" CRONLOCK_KEY=bench-sem CRONLOCK_CONCURRENCY=3 -- "$BIN" "$TRUE"
if [ -n "$REF" ]; then
  row "original true (lock taken)" 0 $(( RUNS / 10 > 20 ? RUNS / 10 : 20 )) -- "$REF" "$TRUE"
  row "original true (lock held, 200)" 200 $(( RUNS / 10 > 20 ? RUNS / 10 : 20 )) CRONLOCK_KEY=bench-held -- "$REF" "$TRUE"
fi

echo "# cronlock benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
LINKAGE=$( (file -b "$BIN" 2>/dev/null || true) | grep -o 'statically linked\|dynamically linked' || echo "linkage unknown")
# glibc shows in a static binary by its tunables parser, in a dynamic one by
# its symbol versions; a musl binary has neither.
if grep -aq 'GLIBC_TUNABLES\|GLIBC_2\.' "$BIN"; then LINKAGE="$LINKAGE, glibc"; else LINKAGE="$LINKAGE, no glibc"; fi
echo "# $(redis-server --version | cut -d' ' -f1-3), binary $BIN ($(stat -c %s "$BIN") bytes, $LINKAGE)"
if command -v hyperfine >/dev/null; then
  echo "# wall: median of hyperfine -N ($(hyperfine --version)); CPU: median from wait4 over as many runs; peak RSS: median under GNU time"
else
  echo "# wall and CPU: medians from wait4 over repeated runs (hyperfine not installed); peak RSS: median under GNU time"
fi
echo "# runs per row split into ${BENCH_ROUNDS:-5} rounds, each running every row in turn"
echo

python3 - "$ROWS" "$WORK" <<'PY'
import json, os, shlex, shutil, statistics, subprocess, sys, time

rows_file, work = sys.argv[1], sys.argv[2]
rows = [line.rstrip("\n").split("\t") for line in open(rows_file)]
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
        pid = os.posix_spawn(argv[0], argv, env)
        _, status, usage = os.wait4(pid, 0)
        walls.append(time.perf_counter() - start)
        code = os.waitstatus_to_exitcode(status)
        if code != expect:
            sys.exit(f"bench.sh: {' '.join(argv)} exited {code}, expected {expect}")
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
for label, expect, runs, assignments, command in rows:
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
print(f"{'':34} {'wall':>9} {'over bare':>10} {'CPU':>9} {'peak RSS':>10} {'original / this':>16}")
for label, wall, cpu, rss in results:
    versus = ""
    if label.startswith("cronlock") and orig_taken:
        reference = orig_held if "held" in label else orig_taken
        versus = f"{reference / wall:.0f}x faster"
    over = "" if label == "bare true" else f"{(wall - bare) * 1000:+.2f} ms"
    shown_rss = "n/a" if rss is None else f"{rss / 1024:.1f}MiB"
    print(f"{label:34} {wall * 1000:7.2f}ms {over:>10} {cpu * 1000:7.2f}ms {shown_rss:>10} {versus:>16}")
PY

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
