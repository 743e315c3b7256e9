#!/usr/bin/env bash
# Compatibility suite: runs every scenario against our binary and, when
# CRONLOCK_REFERENCE names the original script, against the original too.
#   CRONLOCK_BIN        our binary (default: build target/release/cronlock)
#   CRONLOCK_REFERENCE  the original `cronlock` script (optional)
#   COMPAT_ONLY         run only scenarios whose file name contains this
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"

if [ -z "${CRONLOCK_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet) || exit 2
  CRONLOCK_BIN="$ROOT/target/release/cronlock"
fi
OURS="$(cd "$(dirname "$CRONLOCK_BIN")" && pwd)/$(basename "$CRONLOCK_BIN")"
REFERENCE=""
if [ -n "${CRONLOCK_REFERENCE:-}" ]; then
  REFERENCE="$(cd "$(dirname "$CRONLOCK_REFERENCE")" && pwd)/$(basename "$CRONLOCK_REFERENCE")"
  [ -x "$REFERENCE" ] || { echo "CRONLOCK_REFERENCE=$REFERENCE is not executable" >&2; exit 2; }
fi
for tool in redis-server redis-cli md5sum openssl; do
  command -v "$tool" >/dev/null || { echo "compat-tests: $tool is required" >&2; exit 2; }
done

WORK_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/cronlock-compat.XXXXXX")"
WORK="$WORK_ROOT/servers"
mkdir -p "$WORK"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
trap 'WORK="$WORK_ROOT/servers"; stop_all; rm -rf "$WORK_ROOT"' EXIT

start_redis PLAIN
start_redis AUTH --requirepass "$COMPAT_PASSWORD"
start_sentinel
PKI="$WORK_ROOT/pki"
make_pki "$PKI"
start_tls_redis TLS no
start_tls_redis MTLS yes

# compare EXPECTED ACTUAL: line by line; "value=now+N" and "ttl=N" may differ by 1.
compare() {
  awk -v tol=1 '
    function num(s) { sub(/^(value=now|ttl=)/, "", s); return s + 0 }
    function close_enough(a, b) {
      if (a == b) return 1
      if ((a ~ /^value=now[-+][0-9]+$/ && b ~ /^value=now[-+][0-9]+$/) || (a ~ /^ttl=[0-9]+$/ && b ~ /^ttl=[0-9]+$/)) {
        d = num(a) - num(b); return d <= tol && d >= -tol
      }
      return 0
    }
    NR == FNR { want[FNR] = $0; n = FNR; next }
    { got[FNR] = $0; m = FNR }
    END {
      if (n != m) { printf "expected %d observations, got %d", n, m; exit 1 }
      for (i = 1; i <= n; i++) {
        if (want[i] == got[i]) continue
        split(want[i], w, " "); split(got[i], g, " ")
        if (length(w) != length(g)) { printf "line %d: expected [%s] got [%s]", i, want[i], got[i]; exit 1 }
        for (j in w) if (!close_enough(w[j], g[j])) { printf "line %d: expected [%s] got [%s]", i, want[i], got[i]; exit 1 }
      }
    }' "$1" "$2"
}

# run_impl SCENARIO-FILE IMPL OTHER OUT: one clean run of the procedure.
run_impl() {
  local file=$1
  IMPL=$2 OTHER=$3 OBS=$4
  # The same path for every run, so `pwd` prints the same for both.
  WORK="$WORK_ROOT/run"
  rm -rf "$WORK"
  mkdir -p "$WORK/cwd"
  : >"$OBS"
  redis-cli -p "$PLAIN_PORT" flushall >/dev/null
  redis-cli -p "$AUTH_PORT" -a "$COMPAT_PASSWORD" --no-auth-warning flushall >/dev/null
  for port in "$TLS_PORT" "$MTLS_PORT"; do
    # shellcheck disable=SC2046
    redis-cli -p "$port" $(tls_cli_args "$port") flushall >/dev/null
  done
  (
    clean_env
    unset -f procedure expect expect_original
    ONLY_OURS=""
    # shellcheck disable=SC1090
    source "$file"
    mark_time
    procedure
  )
  local rc=$?
  [ "$rc" = 0 ] || echo "procedure failed with $rc" >>"$OBS"
}

passed=0 failed=0
for file in "$HERE"/scenarios/*.sh; do
  name="$(basename "$file" .sh)"
  [ -n "${COMPAT_ONLY:-}" ] && [[ "$name" != *"$COMPAT_ONLY"* ]] && continue
  # What the scenario says of itself, read without running its procedure.
  meta="$(
    # shellcheck disable=SC1090
    PLAIN_PORT=$PLAIN_PORT AUTH_PORT=$AUTH_PORT TLS_PORT=$TLS_PORT MTLS_PORT=$MTLS_PORT PKI=$PKI source "$file"
    declare -F expect_original >/dev/null && echo differs
    [ "${ONLY_OURS:-}" = yes ] && echo only-ours
  )"
  ours_obs="$WORK_ROOT/$name.ours"
  run_impl "$file" "$OURS" "${REFERENCE:-$OURS}" "$ours_obs"
  expected="$WORK_ROOT/$name.expected"
  (source "$file"; expect) >"$expected"
  why=""
  if ! why=$(compare "$expected" "$ours_obs"); then
    why="ours vs expectation: $why"
  elif [ -n "$REFERENCE" ] && [[ "$meta" != *only-ours* ]]; then
    ref_obs="$WORK_ROOT/$name.reference"
    run_impl "$file" "$REFERENCE" "$OURS" "$ref_obs"
    if [[ "$meta" == *differs* ]]; then
      (source "$file"; expect_original) >"$expected.original"
      why=$(compare "$expected.original" "$ref_obs") || why="original vs its documented behaviour: $why"
    else
      why=$(compare "$ref_obs" "$ours_obs") || why="ours vs original: $why"
    fi
  fi
  if [ -z "$why" ]; then
    echo "ok $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $why"
    failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
