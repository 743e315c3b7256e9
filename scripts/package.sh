#!/usr/bin/env bash
# Builds the release artefacts from a clean checkout, into target/package/:
#
#   cronlock_<version>-1_<debian arch>.deb        the Debian package (cargo-deb)
#   cronlock-<version>-<arch>-linux-musl.tar.gz   binaries, man pages, docs
#   SHA256SUMS                                    of both
#
# and prints the path of the .deb as its last line. Both hold the static musl
# binaries of scripts/build.sh (so one .deb runs on every Debian and Ubuntu
# release of its architecture): cronlock, and cronlockctl once Cargo.toml
# declares it as a [[bin]]. The man pages, the example config and the
# Debian copyright file are written by scripts/docs.py from docs/.
#
# Needs: cargo-deb (installed with `cargo install` when missing), python3,
# musl-gcc (Debian: musl-tools), git for the date of the last commit.
#
#   CRONLOCK_DEB_MAINTAINER="Name <address>"   the package's Maintainer field
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "package.sh: installing cargo-deb (cargo install, a few minutes)" >&2
  cargo install --locked --quiet cargo-deb --version '^3.8' >&2
fi

# The build: the release binaries of build.sh, which must be the musl ones.
# A glibc build (static or not) is refused: the static one reads
# /etc/nsswitch.conf modules of the host's glibc (README, "Building"), and
# the dynamic one would need a Depends on libc6 that this package does not
# declare.
binary="$(scripts/build.sh)"
release_dir="$(dirname "$binary")"
triple="$(basename "$(dirname "$release_dir")")"
case "$triple" in
  *-unknown-linux-musl) ;;
  *)
    echo "package.sh: scripts/build.sh made $binary, not a musl build;" \
      "install musl-tools and the Rust target $(uname -m)-unknown-linux-musl" >&2
    exit 1
    ;;
esac
arch="${triple%%-*}"

# Every [[bin]] of the package, as cargo sees them (cronlockctl included when
# it is declared).
mapfile -t bins < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if "bin" in target["kind"]:
            print(target["name"])
' | sort)
version="$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')"
with_ctl=()
[[ " ${bins[*]} " == *" cronlockctl "* ]] && with_ctl=(--with-ctl)

# Dates inside the artefacts (man pages, changelog, file times) are the last
# commit's, so the same commit packs the same bytes (cargo-deb reads
# SOURCE_DATE_EPOCH too).
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

out="$PWD/target/package"
docs="$out/docs"
rm -rf "$docs" "$out/stage"
rm -f "$out"/*.deb "$out"/*.tar.gz "$out"/SHA256SUMS
mkdir -p "$docs"
python3 scripts/docs.py --out "$docs" "${with_ctl[@]}"

maintainer="${CRONLOCK_DEB_MAINTAINER:-$(python3 -c '
import tomllib
print(tomllib.load(open("Cargo.toml", "rb"))["package"]["metadata"]["deb"]["maintainer"])')}"

# The Debian changelog, for this version only. cargo-deb installs it as
# changelog.Debian.gz; the upstream one is CHANGELOG.md as changelog.gz (see
# Cargo.toml).
cat >"$docs/changelog.Debian" <<EOF
cronlock ($version-1) unstable; urgency=medium

  * Package of cronlock $version: the static musl build, made with cargo-deb.
    The changes of cronlock itself are in changelog.gz.

 -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF

# Lintian's statically-linked-binary (an error, since Debian's own packages
# must link dynamically), overridden in the package with the reason; the tags
# left are listed in scripts/package-test.sh.
{
  echo "# cronlock's binaries are linked statically against musl on purpose,"
  echo "# so that one package runs on every release (see the README)."
  for bin in "${bins[@]}"; do
    echo "cronlock: statically-linked-binary [usr/bin/$bin]"
  done
} >"$docs/lintian-overrides"

# --no-build: cargo-deb packs the files build.sh made (its `target/release/`
# asset paths resolve to target/<triple>/release/ with --target).
# --no-strip: the release profile strips already, and the package then holds
# the very bytes scripts/test.sh tested.
maintainer_flag=()
[ -z "${CRONLOCK_DEB_MAINTAINER:-}" ] || maintainer_flag=(--maintainer "$CRONLOCK_DEB_MAINTAINER")
deb="$(cargo deb --quiet --no-build --no-strip --target "$triple" \
  "${maintainer_flag[@]}" --output "$out" | tail -n 1)"
[ -f "$deb" ] || { echo "package.sh: cargo-deb made no package ($deb)" >&2; exit 1; }

# The tarball: a prefix to unpack under /usr/local (or anywhere), with
# --strip-components=1.
name="cronlock-$version-$arch-linux-musl"
stage="$out/stage/$name"
install -d "$stage/bin" "$stage/share/man/man1" "$stage/share/man/man5" \
  "$stage/share/doc/cronlock/examples"
for bin in "${bins[@]}"; do
  install -m 755 "$release_dir/$bin" "$stage/bin/"
done
install -m 644 "$docs"/man/man1/*.1 "$stage/share/man/man1/"
install -m 644 "$docs"/man/man5/*.5 "$stage/share/man/man5/"
install -m 644 README.md LICENSE CHANGELOG.md "$stage/share/doc/cronlock/"
# The README links these by their path beside it.
install -d "$stage/share/doc/cronlock/docs/stores"
install -m 644 docs/performance.md docs/watching.md "$stage/share/doc/cronlock/docs/"
install -m 644 docs/stores/*.md "$stage/share/doc/cronlock/docs/stores/"
install -m 644 "$docs/cronlock.conf" "$stage/share/doc/cronlock/examples/"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
  -C "$out/stage" -c "$name" | gzip -9n >"$out/$name.tar.gz"
rm -rf "$out/stage"

(cd "$out" && sha256sum "$(basename "$deb")" "$name.tar.gz" >SHA256SUMS)
echo "package.sh: $out/$name.tar.gz and $out/SHA256SUMS" >&2
echo "$deb"
