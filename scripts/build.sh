#!/usr/bin/env bash
# Builds cronlock for release and prints the path of the binary on stdout.
#
# On Linux the binary is linked statically against musl when the Rust target
# <arch>-unknown-linux-musl is installed, or rustup can add it, and musl-gcc
# is there to compile ring's C code (Debian: musl-tools). glibc runs CPU and
# cache detection at every process start, many cpuid instructions that a VM
# traps one by one: about 0.45 ms per start on the 2-core VM of the README's
# figures, where the whole lock-taking run of the musl build costs 0.63 ms
# more than bare `true`. cronlock is one process per cron job, so that start-up is most of
# its cost.
#
# Otherwise it builds for <arch>-unknown-linux-gnu, linked statically and
# without PIE (RUSTFLAGS below; 0.4 ms less per run than the dynamic PIE
# build, measured with scripts/bench.sh). The explicit --target keeps those
# flags off build scripts and proc-macros, which run on the host.
#
#   CRONLOCK_BUILD=glibc   build against glibc even where musl is available
#   CARGO_TARGET_DIR       where cargo builds (default: target), as cargo reads it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The path printed must be where cargo put the binary.
out="${CARGO_TARGET_DIR:-target}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

musl_target() {
  [ "$(uname -s)" = Linux ] && [ "${CRONLOCK_BUILD:-musl}" = musl ] || return 1
  local target lib
  target="$(uname -m)-unknown-linux-musl"
  lib="$(rustc --print sysroot)/lib/rustlib/$target/lib"
  if [ ! -d "$lib" ] && command -v rustup >/dev/null; then
    echo "build.sh: adding the Rust target $target" >&2
    rustup target add "$target" >&2 || true
  fi
  if [ ! -d "$lib" ]; then
    echo "build.sh: the Rust target $target is not installed; building against glibc" >&2
    return 1
  fi
  if ! command -v musl-gcc >/dev/null; then
    echo "build.sh: musl-gcc not found (Debian: musl-tools); building against glibc" >&2
    return 1
  fi
  echo "$target"
}

if target="$(musl_target)"; then
  cargo build --release --quiet --target "$target" >&2
  echo "$out/$target/release/cronlock"
elif [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 -o "$(uname -m)" = aarch64 ] &&
  [[ "$(cc -print-file-name=libc.a 2>/dev/null)" == /* ]]; then
  target="$(uname -m)-unknown-linux-gnu"
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --quiet --target "$target" >&2
  echo "$out/$target/release/cronlock"
else
  cargo build --release --quiet >&2
  echo "$out/release/cronlock"
fi
