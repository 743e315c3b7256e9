#!/usr/bin/env bash
# Installs coolock 0.0.1 and tooz 1.67.2 under Python 2.7, with the client
# library of every tooz driver that installs there, into a pip --target
# directory: $1, or target/coolock. The coolock tests run it with
# PYTHONPATH=<dir> python2 <dir>/bin/coolock. Where python2 or a package
# cannot be had, it says why in one line on stderr and exits 0, so that the
# tests can skip with that reason; a directory without bin/coolock, or
# without a driver's module, means "not installed".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${1:-target/coolock}"

py2() { PYENV_VERSION=2.7.18 python2 "$@"; }

if ! py2 -c '' 2>/dev/null; then
  echo "coolock-install.sh: python2 (2.7) is not installed; the coolock tests are skipped" >&2
  exit 0
fi
[ ! -x "$target/bin/coolock" ] || exit 0

# Pinned to the versions the tooz key style was read from and tested with.
# Left to itself pip takes releases that break tooz 1.67.2 on Python 2.7:
# - tenacity 7 no longer wraps tooz's one-argument retry predicate, so every
#   acquire of the memcached, MySQL, PostgreSQL and etcd3+http drivers (and
#   the etcd3 client's waiting acquire) fails with a TypeError;
# - PyMySQL 0.10 dropped the connection's context manager that tooz's MySQL
#   lock enters ("AttributeError: __exit__");
# - kazoo 2.10 and later no longer import under Python 2;
# - grpcio 1.40 and later have no Python 2.7 wheel: pip would compile one for
#   many minutes.
# psycopg2-binary provides the psycopg2 module without libpq's headers.
base=(coolock==0.0.1 tooz==1.67.2 tenacity==6.3.1 configargparse==1.5.3
  redis==3.5.3 PyMySQL==0.9.3 psycopg2-binary==2.8.6 kazoo==2.9.0
  pymemcache==3.5.2 etcd3gw==0.2.6)
etcd3=(etcd3==0.12.0 grpcio==1.39.0 protobuf==3.17.3 tenacity==6.3.1)

pip2() { py2 -m pip install --quiet --disable-pip-version-check --no-warn-script-location "$@"; }

# Built beside the target and moved there whole, so that an interrupted run
# leaves no half-installed directory that looks complete.
partial="$target.partial"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
mkdir -p "$(dirname "$target")"
rm -rf "$partial"
if ! pip2 --target "$partial" "${base[@]}" >/dev/null 2>"$log"; then
  echo "coolock-install.sh: could not install coolock: $(grep -m1 -E 'Error|error' "$log" || tail -n1 "$log"); the coolock tests are skipped" >&2
  rm -rf "$partial"
  exit 0
fi
# etcd3 (gRPC) apart: without it only the etcd3:// tests are skipped.
if pip2 --target "$partial" "${etcd3[@]}" >/dev/null 2>"$log"; then
  # protobuf's "google" namespace is declared by a .pth file, which only
  # site-packages reads; on PYTHONPATH the package needs an __init__.py.
  [ -e "$partial/google/__init__.py" ] || : >"$partial/google/__init__.py"
else
  echo "coolock-install.sh: could not install etcd3: $(grep -m1 -E 'Error|error' "$log" || tail -n1 "$log"); coolock's etcd3:// tests are skipped" >&2
fi
rm -rf "$target"
mv "$partial" "$target"
