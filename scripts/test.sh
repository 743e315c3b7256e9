#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs the Rust
# unit tests, then the integration tests (against private redis-server,
# mariadbd, postgres, memcached, etcd and ZooKeeper processes) and the shell
# compatibility suite against the release binaries of scripts/build.sh, and
# the package made from them (scripts/package-test.sh).
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
# tests/it/util/memcached.rs runs its own memcached on a free port.
command -v memcached >/dev/null || need+=(memcached)
# The MariaDB and PostgreSQL fixtures (tests/it/util/) run these programs
# themselves; Debian keeps the servers off PATH.
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || need+=(mariadb-server)
command -v mariadb >/dev/null || need+=(mariadb-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
# The ZooKeeper fixture (tests/it/util/zookeeper.rs) runs the package's jars with java.
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
command -v java >/dev/null || need+=(default-jre-headless)
# The DynamoDB tests run moto's emulator from a virtualenv made below.
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The static build (.cargo/config.toml) links glibc's libc.a.
case "$(cc -print-file-name=libc.a 2>/dev/null)" in /*) ;; *) need+=(libc6-dev) ;; esac
# The musl build (scripts/build.sh) needs musl-gcc. Without it that build is
# skipped, not failed: the glibc build is tested either way.
want=()
[ "$(uname -s)" != Linux ] || command -v musl-gcc >/dev/null || want+=(musl-tools)
# promtool (Debian ships it with the prometheus package) checks the metrics
# files in tests/it/watch.rs; without it a Rust parser alone reads them.
command -v promtool >/dev/null || want+=(prometheus)
# The package test (scripts/package-test.sh) runs where dpkg is: lintian,
# man (man-db) to render the pages with warnings on, python3 for
# scripts/docs.py. package.sh installs cargo-deb with cargo when missing.
if command -v dpkg >/dev/null; then
  command -v lintian >/dev/null || want+=(lintian)
  command -v man >/dev/null || want+=(man-db)
  command -v python3 >/dev/null || want+=(python3)
fi
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
      echo "test.sh: could not install ${want[*]}; the musl build, the package or promtool's check of the metrics is not tested" >&2
  fi
fi

# Installing redis-server, mariadb-server, postgresql, memcached or
# etcd-server from a package may start a service on its usual port; the
# tests use none of them (nor their sockets or config files): they start
# their own servers, with their own data directories, on free ports.

# lockex (Python 2), for tests/it/lockex_zookeeper.rs: installed under target/
# when python2 is there; without it those tests print why and pass.
if [ ! -x target/lockex/bin/lockex ] && PYENV_VERSION=2.7.18 python2 -c '' 2>/dev/null; then
  PYENV_VERSION=2.7.18 python2 -m pip install -q --target target/lockex lockex 2>/dev/null ||
    echo "test.sh: could not install lockex; the lockex tests are skipped" >&2
fi
[ ! -x target/lockex/bin/lockex ] || export CRONLOCK_TEST_LOCKEX="$PWD/target/lockex"
# coolock and tooz (Python 2), for tests/it/tooz/: installed under target/ by
# scripts/coolock-install.sh, which says why when it cannot; without them
# those tests print why and pass.
scripts/coolock-install.sh target/coolock
[ ! -x target/coolock/bin/coolock ] || export CRONLOCK_TEST_COOLOCK="$PWD/target/coolock"

# moto's DynamoDB emulator for tests/it/stores/dynamodb.rs, in a virtualenv of
# its own (tests/it/util/dynamodb.rs finds it there), made once.
export CRONLOCK_TEST_MOTO_VENV="$PWD/target/moto-venv"
if [ ! -x "$CRONLOCK_TEST_MOTO_VENV/bin/moto_server" ]; then
  echo "test.sh: installing moto[server] into $CRONLOCK_TEST_MOTO_VENV" >&2
  rm -rf "$CRONLOCK_TEST_MOTO_VENV"
  python3 -m venv "$CRONLOCK_TEST_MOTO_VENV"
  "$CRONLOCK_TEST_MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# Unit tests here; the integration tests run once, below, against the
# release binaries that ship.
cargo test --quiet --lib --bins 2>&1
# The allocator's unsafe code under Miri, where a nightly toolchain with
# Miri is installed (rustup component add miri rust-src --toolchain nightly).
if cargo +nightly miri --version >/dev/null 2>&1; then
  MIRIFLAGS=-Zmiri-strict-provenance cargo +nightly miri test --quiet \
    --manifest-path scripts/miri-arena/Cargo.toml --target-dir target/miri-arena 2>&1
else
  echo "test.sh: Miri not installed; src/speed/arena.rs not checked under Miri" >&2
fi

# The binaries scripts/build.sh makes (static musl where it can), the ones
# that ship, pass the integration tests and the compatibility suite.
release="$(scripts/build.sh)"
echo "test.sh: testing $release" >&2
export CRONLOCK_BIN="$release" CRONLOCKCTL_BIN="$(dirname "$release")/cronlockctl"
# nextest where it is installed (the machine image has it): two tests at a
# time across every file, as many as cores here (more made the database
# tests time out on 2 cores); cargo test file by file elsewhere.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --test '*' --test-threads 2 --no-fail-fast --failure-output final --status-level fail 2>&1
else
  cargo test --quiet --test '*' 2>&1
fi
bash compat-tests/run.sh

# The Debian package and the tarball (scripts/package.sh) of that musl build:
# file list, lintian, an install into a throwaway root, the man pages.
case "$release" in
  */*-linux-musl/release/cronlock) bash scripts/package-test.sh ;;
  *) echo "test.sh: no musl build; the package (scripts/package-test.sh) is not tested" >&2 ;;
esac

# The build without the heavy stores (cargo build --no-default-features):
# clippy-clean, its unit tests, and against its own debug binaries the
# tests of bad input (a store built out is refused with one line) and of
# the Redis and directory stores. Last, since it rebuilds target/debug.
cargo clippy --no-default-features --all-targets --quiet -- -D warnings
cargo test --no-default-features --quiet --lib 2>&1
if cargo nextest --version >/dev/null 2>&1; then
  env -u CRONLOCK_BIN -u CRONLOCKCTL_BIN cargo nextest run --no-default-features --test it \
    --test-threads 2 --no-fail-fast --failure-output final --status-level fail \
    -E 'test(/^bad_input::|^stores::(redis|directory)::/)' 2>&1
else
  env -u CRONLOCK_BIN -u CRONLOCKCTL_BIN cargo test --no-default-features --quiet --test it -- bad_input:: stores::redis:: stores::directory:: 2>&1
fi
