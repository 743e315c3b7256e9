#!/usr/bin/env bash
# Tests the release artefacts of scripts/package.sh: the .deb's file list and
# control fields, lintian, an install into a throwaway root (never the
# machine's own /usr) and runs of the installed binaries, the man pages
# rendered with warnings on, and the tarball against SHA256SUMS. Run by
# scripts/test.sh after build.sh, whose musl build package.sh reuses.
# Skipped, with the reason, where dpkg is missing.
#
# Lintian tags still reported (the run prints them; none is an error):
#   W initial-upload-closes-no-bugs   the Debian changelog has one entry and
#                                     no Debian bug to close: cronlock is not
#                                     in Debian.
#   W empty-field Depends             cargo-deb 3.8 writes "Depends:" even
#                                     when there is none (static binaries).
#   I binary-has-unneeded-section .comment
#                                     the release profile's strip keeps
#                                     .comment; package.sh packs the very
#                                     binaries test.sh tested (--no-strip).
#   I no-md5sums-control-file         cargo-deb makes none.
# statically-linked-binary, an error for a package of Debian's own, is
# overridden in the package (usr/share/lintian/overrides/cronlock, written by
# package.sh with the reason): one static musl binary for every release is
# the point of this package.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS

if ! command -v dpkg >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "package-test.sh: skipped: dpkg and dpkg-deb are not installed (not a Debian system)" >&2
  exit 0
fi
for tool in lintian man python3; do
  command -v "$tool" >/dev/null || { echo "package-test.sh: $tool not found" >&2; exit 1; }
done

fail() {
  echo "package-test.sh: FAIL: $*" >&2
  exit 1
}

deb="$(scripts/package.sh | tail -n 1)"
out="$(dirname "$deb")"
echo "package-test.sh: testing $deb" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

ctl=no
cargo metadata --no-deps --format-version 1 | grep -q '"name":"cronlockctl"' && ctl=yes

# The file list: exactly these files, nothing in /etc.
{
  echo ./usr/bin/cronlock
  echo ./usr/bin/cronlock-stores
  echo ./usr/share/man/man1/cronlock-stores.1.gz
  echo ./usr/share/doc/cronlock/README.md
  echo ./usr/share/doc/cronlock/docs/performance.md
  echo ./usr/share/doc/cronlock/docs/watching.md
  for doc in docs/stores/*.md; do echo "./usr/share/doc/cronlock/$doc"; done
  echo ./usr/share/doc/cronlock/changelog.Debian.gz
  echo ./usr/share/doc/cronlock/changelog.gz
  echo ./usr/share/doc/cronlock/copyright
  echo ./usr/share/doc/cronlock/examples/cronlock.conf
  echo ./usr/share/lintian/overrides/cronlock
  echo ./usr/share/man/man1/cronlock.1.gz
  echo ./usr/share/man/man5/cronlock.conf.5.gz
  if [ "$ctl" = yes ]; then
    echo ./usr/bin/cronlockctl
    echo ./usr/share/man/man1/cronlockctl.1.gz
  fi
} | sort >"$tmp/want"
dpkg-deb -c "$deb" >"$tmp/contents"
awk '$6 !~ /\/$/ { print $6 }' "$tmp/contents" | sort >"$tmp/got"
diff -u "$tmp/want" "$tmp/got" || fail "the package's files differ from the list above (- wanted, + packed)"
grep -E ' \./usr/bin/cronlock(ctl|-stores)?$' "$tmp/contents" | grep -qv '^-rwxr-xr-x 0/0 ' &&
  fail "a binary is not -rwxr-xr-x, owned by root: $(grep ' ./usr/bin/' "$tmp/contents")"
[ -z "$(dpkg-deb -f "$deb" Depends)" ] || fail "Depends: $(dpkg-deb -f "$deb" Depends), want none"
[ "$(dpkg-deb -f "$deb" Section)" = admin ] || fail "Section is not admin"
[ "$(dpkg-deb -f "$deb" Priority)" = optional ] || fail "Priority is not optional"

# Lintian: no errors; warnings other than the ones listed above fail too, so
# that a new one is looked at.
lintian --fail-on error --display-info "$deb" >"$tmp/lintian" 2>&1 || {
  cat "$tmp/lintian" >&2
  fail "lintian reported errors"
}
if [ -s "$tmp/lintian" ]; then
  echo "package-test.sh: lintian says:" >&2
  grep -v 'running with root privileges' "$tmp/lintian" | sed 's/^/  /' >&2
fi
grep '^W: ' "$tmp/lintian" | grep -Ev ' (initial-upload-closes-no-bugs|empty-field Depends)' &&
  fail "lintian warnings not listed in scripts/package-test.sh"

# Install into a throwaway root with its own dpkg database.
root="$tmp/root"
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info"
touch "$root/var/lib/dpkg/status"
PATH="$PATH:/usr/sbin:/sbin" dpkg --root="$root" --force-not-root --log=/dev/null -i "$deb" >/dev/null
dpkg --root="$root" -s cronlock | grep -qx 'Status: install ok installed' || fail "not installed in $root"
[ ! -e "$root/etc/cronlock.conf" ] || fail "the package installed /etc/cronlock.conf"

# run CONFIG COMMAND...: COMMAND with no CRONLOCK_* variable of ours but the
# config file and the directory store.
run() {
  local config="$1" name
  shift
  local unset=()
  for name in $(compgen -e | grep '^CRONLOCK_' || true); do unset+=(-u "$name"); done
  env "${unset[@]}" CRONLOCK_CONFIG="$config" CRONLOCK_URL="file://$tmp/locks" "$@"
}

# The installed cronlock: runs, then finds the lock held (exit 200) within
# the grace.
[ "$(run /dev/null "$root/usr/bin/cronlock" echo hi)" = hi ] ||
  fail "the installed cronlock did not run echo hi"
status=0
run /dev/null "$root/usr/bin/cronlock" echo hi >/dev/null || status=$?
[ "$status" = 200 ] || fail "a second run exited $status, want 200 (lock held)"
# The example config reads as it is (all commented out) and with every
# default uncommented: the documented defaults are values cronlock accepts.
example="$root/usr/share/doc/cronlock/examples/cronlock.conf"
status=0
run "$example" "$root/usr/bin/cronlock" echo hi >/dev/null || status=$?
[ "$status" = 200 ] || fail "with the example config, exit $status, want 200"
# (The syslog settings without CRONLOCK_SYSLOG=yes are refused, and
# turning it on would write to this machine's syslog.)
sed '/^#CRONLOCK_SYSLOG_/d; s/^#\(CRONLOCK_[A-Z_]*=.\)/\1/' "$example" >"$tmp/defaults.conf"
[ "$(run "$tmp/defaults.conf" "$root/usr/bin/cronlock" echo defaults)" = defaults ] ||
  fail "the example config's defaults, uncommented, are refused"
if [ "$ctl" = yes ]; then
  key="$(printf 'echo hi\n' | md5sum | cut -d' ' -f1)"
  run /dev/null "$root/usr/bin/cronlockctl" key -- echo hi | grep -q "$key" ||
    fail "cronlockctl key -- echo hi does not print the key (…$key)"
  python3 scripts/docs.py --check-ctl "$root/usr/bin/cronlockctl"
fi

# The man pages: no warnings at 80 columns, and what they must list.
for page in "$root"/usr/share/man/man*/*.gz; do
  warnings="$(MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)"
  [ -z "$warnings" ] || fail "man --warnings $page: $warnings"
done
render() { MANWIDTH=200 man -E UTF-8 -l "$root/usr/share/man/$1" 2>/dev/null; }
render man1/cronlock.1.gz >"$tmp/cronlock.1.txt"
render man5/cronlock.conf.5.gz >"$tmp/cronlock.conf.5.txt"
for name in $(grep -v '^#' docs/settings.tsv | cut -f1); do
  grep -q "^ *$name\$" "$tmp/cronlock.1.txt" || fail "cronlock(1) does not list $name"
  grep -q "^ *$name\$" "$tmp/cronlock.conf.5.txt" || fail "cronlock.conf(5) does not list $name"
  grep -q "^#$name=" "$example" || fail "the example config does not list $name"
done
for word in 200 201 202 '126 / 127' '128 + N' /etc/cronlock.conf CRONLOCK_CONFIG EXAMPLES; do
  grep -qF -- "$word" "$tmp/cronlock.1.txt" || fail "cronlock(1) does not mention $word"
done

# The tarball: checksums, contents, and its cronlock runs.
(cd "$out" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match"
tarball="$(ls "$out"/cronlock-*-linux-musl.tar.gz)"
name="$(basename "$tarball" .tar.gz)"
{
  echo "$name/bin/cronlock"
  echo "$name/bin/cronlock-stores"
  echo "$name/share/man/man1/cronlock-stores.1"
  [ "$ctl" = no ] || echo "$name/bin/cronlockctl"
  [ "$ctl" = no ] || echo "$name/share/man/man1/cronlockctl.1"
  echo "$name/share/doc/cronlock/CHANGELOG.md"
  echo "$name/share/doc/cronlock/LICENSE"
  echo "$name/share/doc/cronlock/README.md"
  echo "$name/share/doc/cronlock/docs/performance.md"
  echo "$name/share/doc/cronlock/docs/watching.md"
  for doc in docs/stores/*.md; do echo "$name/share/doc/cronlock/$doc"; done
  echo "$name/share/doc/cronlock/examples/cronlock.conf"
  echo "$name/share/man/man1/cronlock.1"
  echo "$name/share/man/man5/cronlock.conf.5"
} | sort >"$tmp/want"
tar -tzf "$tarball" | grep -v '/$' | sort >"$tmp/got"
diff -u "$tmp/want" "$tmp/got" || fail "the tarball's files differ from the list above"
tar -xzf "$tarball" -C "$tmp"
[ "$(run /dev/null "$tmp/$name/bin/cronlock" echo tarball)" = tarball ] ||
  fail "the tarball's cronlock did not run"

echo "package-test.sh: ok ($((SECONDS - started)) s)" >&2
