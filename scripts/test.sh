#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs the Rust
# tests (unit and integration, against private redis-server, mariadbd and
# postgres processes) and the shell compatibility suite, and the
# integration tests and that suite again against the release binary of
# scripts/build.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v openssl >/dev/null || need+=(openssl)
command -v flock >/dev/null || need+=(util-linux)
# The MariaDB and PostgreSQL fixtures (tests/util/) run these programs
# themselves; Debian keeps the servers off PATH.
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || need+=(mariadb-server)
command -v mariadb >/dev/null || need+=(mariadb-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
# The DynamoDB tests run moto's emulator from a virtualenv made below.
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The static build (.cargo/config.toml) links glibc's libc.a.
case "$(cc -print-file-name=libc.a 2>/dev/null)" in /*) ;; *) need+=(libc6-dev) ;; esac
# The musl build (scripts/build.sh) needs musl-gcc. Without it that build is
# skipped, not failed: the glibc build is tested either way.
want=()
[ "$(uname -s)" != Linux ] || command -v musl-gcc >/dev/null || want+=(musl-tools)
if [ "${#need[@]}" -gt 0 ] && ! command -v apt-get >/dev/null; then
  echo "test.sh: please install: ${need[*]} (redis-server 6 or newer)" >&2
  exit 1
fi
if [ "$(( ${#need[@]} + ${#want[@]} ))" -gt 0 ] && command -v apt-get >/dev/null; then
  echo "test.sh: installing ${need[*]} ${want[*]}" >&2
  as_root apt-get update -qq || [ "${#need[@]}" = 0 ]
  if [ "${#need[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ "${#want[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${want[@]}" >/dev/null ||
      echo "test.sh: could not install ${want[*]}; the musl build is not tested" >&2
  fi
fi

# Installing redis-server, mariadb-server or postgresql from a package may
# start a service on 6379, 3306 or 5432; the tests use none of them (nor
# their sockets or config files): they start their own servers, with their
# own data directories, on free ports.

# moto's DynamoDB emulator for tests/store_dynamodb.rs, in a virtualenv of
# its own (tests/util/dynamodb.rs finds it there), made once.
export CRONLOCK_TEST_MOTO_VENV="$PWD/target/moto-venv"
if [ ! -x "$CRONLOCK_TEST_MOTO_VENV/bin/moto_server" ]; then
  echo "test.sh: installing moto[server] into $CRONLOCK_TEST_MOTO_VENV" >&2
  rm -rf "$CRONLOCK_TEST_MOTO_VENV"
  python3 -m venv "$CRONLOCK_TEST_MOTO_VENV"
  "$CRONLOCK_TEST_MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo build --release --quiet
cargo test --quiet 2>&1
# The allocator's unsafe code under Miri, where a nightly toolchain with
# Miri is installed (rustup component add miri rust-src --toolchain nightly).
if cargo +nightly miri --version >/dev/null 2>&1; then
  MIRIFLAGS=-Zmiri-strict-provenance cargo +nightly miri test --quiet --lib arena 2>&1
else
  echo "test.sh: Miri not installed; src/arena.rs not checked under Miri" >&2
fi
CRONLOCK_BIN="$PWD/target/release/cronlock" bash compat-tests/run.sh

# The binary scripts/build.sh makes (static musl where it can) passes the
# integration tests and the compatibility suite too.
release="$(scripts/build.sh)"
if [ "$release" != "$PWD/target/release/cronlock" ]; then
  echo "test.sh: testing $release" >&2
  CRONLOCK_BIN="$release" cargo test --quiet --test '*' 2>&1
  CRONLOCK_BIN="$release" bash compat-tests/run.sh
fi
