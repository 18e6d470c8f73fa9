#!/usr/bin/env bash
# scripts/dev-up --fleet 3 in a scratch CUSTODY_DEV_DIR, from an already-built tree, against a real
# PostgreSQL it starts itself: .dev/env names the fleet, a key created through daemon 1's admin
# socket (a proposal both dev operators approve) wraps through daemon 3 and unwraps through daemon
# 2, and --stop (twice) leaves no custodyd or postgres of that directory behind. Bad fleet sizes
# are refused; the single daemon and a fleet take turns, and a second fleet keeps the cluster and
# the state of the first. Exits 77 (skipped) without PostgreSQL 15.
# Usage: dev_up_fleet_test.sh BUILD_DIR (holding daemon/custodyd and cli/custodyctl).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:?usage: dev_up_fleet_test.sh BUILD_DIR}" && pwd)"
dev_up="$root/scripts/dev-up"
pg_bin="${CUSTODY_PG_BINDIR:-/usr/lib/postgresql/15/bin}"

fail() { echo "FAIL: $*" >&2; [ -n "${out:-}" ] && printf '%s\n' "--- output:" "$out" >&2; exit 1; }

[ -x "$pg_bin/initdb" ] || { echo "SKIP: $pg_bin/initdb is missing (Debian's postgresql package)"; exit 77; }
grep -q CUSTODY_DEV_DIR "$dev_up" || fail "scripts/dev-up has no CUSTODY_DEV_DIR override"

scratch="$(mktemp -d /tmp/custody-fleet.XXXXXX)"
# Under root the cluster runs as nobody:nogroup, which must be able to pass through the scratch dir.
if [ "$(id -u)" = 0 ]; then chgrp 65534 "$scratch" && chmod 710 "$scratch"; fi
cleanup() {
  CUSTODY_DEV_DIR="$scratch/dev" CUSTODY_BUILD_DIR="$build" "$dev_up" --stop >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
export CUSTODY_DEV_DIR="$scratch/dev" CUSTODY_BUILD_DIR="$build"
dev="$CUSTODY_DEV_DIR"

echo "== bad fleet sizes are refused"
for bad in 0 -1 x 2.5 ""; do
  if out="$("$dev_up" --fleet "$bad" 2>&1)"; then fail "--fleet '$bad' was accepted"; fi
  grep -q "whole number" <<<"$out" || fail "--fleet '$bad' was refused without saying what it takes"
done
[ ! -e "$dev" ] || fail "a refused --fleet made $dev"

echo "== --fleet 3"
out="$("$dev_up" --fleet 3 2>&1)" || fail "dev-up --fleet 3 failed"
grep -q "fleet round trip ok" <<<"$out" || fail "no round trip through daemon 2"

# The environment, read in a clean shell.
env_vars=(CUSTODY_FLEET_SIZE CUSTODY_STATE_DSN CUSTODY_PGDATA CUSTODY_SERVICE_SOCKET CUSTODY_ADMIN_SOCKET
          CUSTODY_CONFIG SOFTHSM2_CONF CUSTODY_AUDIT_LOG CUSTODY_OPERATOR_MODULE CUSTODY_XKS_ENDPOINT)
for i in 1 2 3; do env_vars+=("CUSTODY_SERVICE_SOCKET_$i" "CUSTODY_ADMIN_SOCKET_$i" "CUSTODY_CONFIG_$i"); done
# shellcheck disable=SC1091
. "$dev/env"
for v in "${env_vars[@]}"; do [ -n "${!v:-}" ] || fail "$dev/env does not set $v"; done
[ "$CUSTODY_FLEET_SIZE" = 3 ] || fail "CUSTODY_FLEET_SIZE is '$CUSTODY_FLEET_SIZE'"
# Under root, nobody but the cluster's group may pass through the dev directory.
[ "$(id -u)" != 0 ] || [ "$(stat -c %a "$dev")" = 710 ] || fail "$dev has mode $(stat -c %a "$dev"), not 0710"
[ "$CUSTODY_SERVICE_SOCKET" = "$CUSTODY_SERVICE_SOCKET_1" ] || fail "CUSTODY_SERVICE_SOCKET is not daemon 1's"
[ -f "$CUSTODY_PGDATA/PG_VERSION" ] || fail "CUSTODY_PGDATA ($CUSTODY_PGDATA) is no PostgreSQL data directory"
for i in 1 2 3; do
  s="CUSTODY_SERVICE_SOCKET_$i"; a="CUSTODY_ADMIN_SOCKET_$i"; c="CUSTODY_CONFIG_$i"
  [ -S "${!s}" ] && [ -S "${!a}" ] || fail "daemon $i has no sockets"
  grep -q "backend: postgresql" "${!c}" || fail "${!c} does not use the PostgreSQL state store"
done
[ "$(sort -u < <(for i in 1 2 3; do v="CUSTODY_SERVICE_SOCKET_$i"; echo "${!v}"; done) | wc -l)" = 3 ] ||
  fail "the daemons share sockets"

echo "== a key made through admin socket 1 wraps through daemon 3 and unwraps through daemon 2"
me="$(id -u)"
ctl1=(custodyctl --socket "$CUSTODY_SERVICE_SOCKET_1" --admin-socket "$CUSTODY_ADMIN_SOCKET_1")
"${ctl1[@]}" keys create fleet-test --algorithm aes-256-gcm \
  --policy "[{\"uid\":$me,\"operations\":[\"wrap\",\"unwrap\"]}]" >/dev/null || fail "proposing the key failed"
id="$("${ctl1[@]}" --json admin list | jq -r '[.requests[].request | select(.state == "pending" and .params.name == "fleet-test")] | last | .id')"
[ -n "$id" ] && [ "$id" != null ] || fail "no pending request for fleet-test on daemon 1"
"${ctl1[@]}" admin approve "$id" --operator operator-a --module "$CUSTODY_OPERATOR_MODULE" --token-label operator-a \
  --pin-file "$CUSTODY_OPERATOR_A_PIN_FILE" --yes >/dev/null || fail "operator-a's approval failed"
"${ctl1[@]}" admin approve "$id" --operator operator-b --module "$CUSTODY_OPERATOR_MODULE" --token-label operator-b \
  --pin-file "$CUSTODY_OPERATOR_B_PIN_FILE" --yes >/dev/null || fail "operator-b's approval failed"
# Daemon 3 serves it within the propagation bound (docs/fleet.md); 10 s is far beyond it.
wrapped=""
deadline=$((SECONDS + 10))
while [ "$SECONDS" -lt "$deadline" ]; do
  wrapped="$(printf 'across the fleet' | custodyctl --socket "$CUSTODY_SERVICE_SOCKET_3" wrap fleet-test 2>/dev/null)" && break
  wrapped=""
done
[ -n "$wrapped" ] || fail "daemon 3 never served the key created through daemon 1"
got=""
deadline=$((SECONDS + 10))
while [ "$SECONDS" -lt "$deadline" ]; do
  got="$(custodyctl --socket "$CUSTODY_SERVICE_SOCKET_2" unwrap fleet-test <<<"$wrapped" 2>/dev/null)" && break
  got=""
done
[ "$got" = "across the fleet" ] || fail "daemon 2 did not unwrap what daemon 3 wrapped (got '$got')"

echo "== --stop stops every daemon and PostgreSQL, and is safe twice"
pids=()
for i in 1 2 3; do pids+=("$(cat "$dev/fleet/$i/custodyd.pid")"); done
postmaster="$(head -n 1 "$CUSTODY_PGDATA/postmaster.pid")"
mapfile -t backends < <(pgrep -P "$postmaster" || true)
[ "${#backends[@]}" -gt 0 ] || fail "the postmaster $postmaster has no processes under it"
pids+=("$postmaster" "${backends[@]}")
out="$("$dev_up" --stop 2>&1)" || fail "--stop failed"
grep -q "stopped the fleet's PostgreSQL" <<<"$out" || fail "--stop did not stop PostgreSQL"
# A process that has exited but is not yet reaped (its parent, pg_ctl, is gone: init reaps it) is gone.
alive() { local state; state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"; [ -n "$state" ] && [ "$state" != Z ]; }
for pid in "${pids[@]}"; do
  deadline=$((SECONDS + 5))
  while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do :; done
  alive "$pid" && fail "process $pid ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)) still runs after --stop"
done
left="$(pgrep -af -- "$dev" || true)"
[ -z "$left" ] || fail "processes of $dev still run after --stop: $left"
[ ! -e "$CUSTODY_PGDATA/postmaster.pid" ] || fail "PostgreSQL's postmaster.pid is still there"
out="$("$dev_up" --stop 2>&1)" || fail "a second --stop failed"

echo "== the single daemon and the fleet take turns, on the kept cluster and state"
out="$("$dev_up" 2>&1)" || fail "plain dev-up after the fleet failed"
grep -q "custodyctl round trip ok" <<<"$out" || fail "plain dev-up after the fleet: no round trip"
grep -q CUSTODY_FLEET_SIZE "$dev/env" && fail "plain dev-up left the fleet's variables in $dev/env"
single="$(cat "$dev/custodyd.pid")"
out="$("$dev_up" --fleet 2 2>&1)" || fail "dev-up --fleet 2 over the kept cluster failed"
grep -q "stopped custodyd (pid $single)" <<<"$out" || fail "the fleet did not stop the single daemon"
grep -q "fleet round trip ok" <<<"$out" || fail "--fleet 2 over the kept cluster: no round trip through daemon 2"
grep -q "made the fleet's PostgreSQL cluster" <<<"$out" && fail "--fleet 2 made a new cluster instead of keeping the first"
# The key made through the first fleet's daemon 1 is still served: the state is kept in PostgreSQL.
# shellcheck disable=SC1091
. "$dev/env"
[ "$CUSTODY_FLEET_SIZE" = 2 ] || fail "CUSTODY_FLEET_SIZE is '$CUSTODY_FLEET_SIZE' after --fleet 2"
[ "$(custodyctl --socket "$CUSTODY_SERVICE_SOCKET_2" unwrap fleet-test <<<"$wrapped")" = "across the fleet" ] ||
  fail "the restarted fleet does not serve the key made before"
echo "PASS"
