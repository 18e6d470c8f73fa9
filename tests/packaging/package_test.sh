#!/usr/bin/env bash
# The Debian package as a host gets it: scripts/package builds it from this build's binaries,
# dpkg-deb -x installs it into a scratch root, and there the shipped custodyd checks every shipped
# sample configuration, with the groups the package's sysusers.d file creates. lintian must
# report no error or warning that is not overridden (with its reason) in packaging/debian.
# Usage: package_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$1"
build="$2"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

deb="$("$src/scripts/package" --build-dir "$build" --out "$scratch" --no-build | tail -n 1)"
[ -f "$deb" ] || fail "scripts/package made no .deb"
echo "package: $deb"

root="$scratch/root"
dpkg-deb -x "$deb" "$root"
dpkg-deb -c "$deb" | awk '{print $6}' >"$scratch/files"
for f in ./usr/sbin/custodyd ./usr/bin/custodyctl \
         ./lib/systemd/system/custodyd.service ./lib/systemd/system/custodyd.socket \
         ./lib/systemd/system/custodyd-admin.socket ./lib/systemd/system/custodyd-kms.socket ./usr/lib/sysusers.d/custody.conf \
         ./usr/share/man/man8/custodyd.8.gz ./usr/share/man/man1/custodyctl.1.gz \
         ./usr/share/man/man5/custodyd.yaml.5.gz ./usr/share/doc/custody/copyright \
         ./usr/share/doc/custody/changelog.Debian.gz ./usr/share/doc/custody/examples/custodyd.yaml; do
  grep -qxF "$f" "$scratch/files" || fail "the package lacks $f"
done
# Nothing under /etc: an unconfigured host has no configuration, so nothing can start.
if grep -q '^\./etc/' "$scratch/files"; then fail "the package ships files under /etc"; fi
control="$(dpkg-deb -f "$deb" Depends)"
case "$control" in *libssl3*) ;; *) fail "Depends lacks the libraries (dpkg-shlibdeps): $control" ;; esac

# Maintainer scripts: never start or enable a unit.
dpkg-deb -e "$deb" "$scratch/DEBIAN"
if grep -nE 'systemctl[^|]*(start|enable|restart)|deb-systemd-invoke[^|]*(start|restart)|deb-systemd-helper[^|]*enable' \
     "$scratch/DEBIAN/postinst"; then
  fail "postinst starts or enables a unit"
fi

# The man pages render without groff warnings.
for page in "$root"/usr/share/man/man*/*.gz; do
  warnings="$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null || true)"
  [ -z "$warnings" ] || fail "$(basename "$page"): $warnings"
done

# The groups the sockets name exist once the package is configured (postinst runs
# systemd-sysusers on the shipped file); here they are added to a private copy of /etc/group,
# bound over the real one in a mount namespace of this test only.
cp /etc/group "$scratch/group"
gid=60990
while read -r type name _; do
  [ "$type" = g ] || [ "$type" = u ] || continue
  getent group "$name" >/dev/null || echo "$name:x:$((gid++)):" >>"$scratch/group"
done <"$root/usr/lib/sysusers.d/custody.conf"
checked=0
for sample in "$root"/usr/share/doc/custody/examples/*.yaml; do
  unshare --mount sh -c 'mount --bind "$1" /etc/group && exec "$2" --check-config --syntax-only --config "$3"' \
    check "$scratch/group" "$root/usr/sbin/custodyd" "$sample" ||
    fail "the shipped custodyd rejects the shipped sample $(basename "$sample")"
  checked=$((checked + 1))
done
[ "$checked" -ge 2 ] || fail "only $checked sample configurations shipped"

lintian --fail-on error,warning "$deb" ||
  fail "lintian reports errors or warnings (fix them, or override each in packaging/debian/lintian-overrides with its reason)"
echo "package test passed: $(wc -l <"$scratch/files") entries, $checked sample configurations valid, lintian clean"
