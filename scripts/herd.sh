#!/usr/bin/env bash
# The herd soak: N cronlock runs released at one instant against each store
# (tests/it/herd.rs: one job N times, then N different jobs), for N = 100, 300
# and 1,000, each server with its stock connection limit and cronlock with
# its default settings. Prints one row per herd: the time from the release
# until the last run had decided (its 200, or its job's start), median and
# max, and how the runs ended. The test's own assertions still apply: a
# herd that runs a job twice, skips one or exits 201 is reported as failed.
#   CRONLOCK_BIN   the binary (default: what scripts/build.sh builds)
#   HERD_SIZES     the sizes (default: "100 300 1000")
#   HERD_STORES    test name filters, e.g. "postgres mysql" (default: all)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -z "${CRONLOCK_BIN:-}" ]; then
  CRONLOCK_BIN="$(scripts/build.sh)"
fi
export CRONLOCK_BIN
export CRONLOCK_TEST_MOTO_VENV="${CRONLOCK_TEST_MOTO_VENV:-$ROOT/target/moto-venv}"
# A thousand runs at once need a thousand processes and their descriptors.
ulimit -n 65536 2>/dev/null || true
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
failed=0
# The herd tests are the module herd:: of the integration test crate.
filters=()
for store in ${HERD_STORES:-}; do filters+=("herd::$store"); done
[ "${#filters[@]}" -gt 0 ] || filters=("herd::")
for n in ${HERD_SIZES:-100 300 1000}; do
  echo "herd.sh: N=$n" >&2
  HERD_N="$n" HERD_REPORT="$report" cargo test --quiet --test it -- --test-threads 1 "${filters[@]}" >&2 || failed=1
done
printf '%-10s %-14s %6s %10s %10s %8s %6s %6s\n' store herd N median_s max_s started 200s other
sort -k1,1 -k2,2 -k3,3n "$report" | while IFS=$'\t' read -r store kind n median max started held other; do
  printf '%-10s %-14s %6s %10s %10s %8s %6s %6s\n' "$store" "$kind" "$n" "$median" "$max" "$started" "$held" "$other"
done
exit "$failed"
