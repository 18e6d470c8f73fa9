#!/usr/bin/env bash
# scripts/dev-up run as a newcomer would, from an already-built tree, in a scratch CUSTODY_DEV_DIR
# (never the developer's .dev/): a fresh set-up works and says that a re-run restarts the daemon;
# a re-run does restart it; a stale pid file is removed (and an unrelated process it names is left
# alone); a token whose PIN file is gone is refused with the fix; --reset deletes the environment.
# Usage: dev_up_test.sh BUILD_DIR (holding daemon/custodyd and cli/custodyctl).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:?usage: dev_up_test.sh BUILD_DIR}" && pwd)"
dev_up="$root/scripts/dev-up"

fail() { echo "FAIL: $*" >&2; [ -n "${out:-}" ] && printf '%s\n' "--- output:" "$out" >&2; exit 1; }

# Without the override dev-up would work on the repository's .dev/: never run it then.
grep -q CUSTODY_DEV_DIR "$dev_up" || fail "scripts/dev-up has no CUSTODY_DEV_DIR override"

scratch="$(mktemp -d /tmp/custody-devup.XXXXXX)"
sleeper=""
cleanup() {
  CUSTODY_DEV_DIR="$scratch/dev" CUSTODY_BUILD_DIR="$build" "$dev_up" --stop >/dev/null 2>&1 || true
  [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
export CUSTODY_DEV_DIR="$scratch/dev" CUSTODY_BUILD_DIR="$build"
dev="$CUSTODY_DEV_DIR"

echo "== a fresh set-up"
out="$("$dev_up" 2>&1)" || fail "dev-up failed on a fresh directory"
grep -q "custodyctl round trip ok" <<<"$out" || fail "no round trip"
grep -q "running dev-up again restarts it" <<<"$out" || fail "the output does not say that a re-run restarts the daemon"
[ -f "$dev/custody.pin" ] && [ -S "$dev/service.sock" ] || fail "nothing in $dev"
first_pid="$(cat "$dev/custodyd.pid")"

echo "== a re-run restarts the daemon"
out="$("$dev_up" 2>&1)" || fail "the re-run failed"
grep -q "restarting custodyd" <<<"$out" || fail "the re-run does not say it restarts the daemon"
[ "$(cat "$dev/custodyd.pid")" != "$first_pid" ] || fail "the daemon was not restarted"
kill -0 "$first_pid" 2>/dev/null && fail "the old daemon still runs"

echo "== a stale pid file naming another process"
"$dev_up" --stop >/dev/null
sleep 300 &
sleeper=$!
echo "$sleeper" > "$dev/custodyd.pid"
out="$("$dev_up" 2>&1)" || fail "dev-up failed with a stale pid file"
grep -q "removed a stale pid file" <<<"$out" || fail "the stale pid file was not reported"
kill -0 "$sleeper" 2>/dev/null || fail "dev-up killed a process that is not custodyd"
[ "$(cat "$dev/custodyd.pid")" != "$sleeper" ] || fail "the stale pid file was kept"

echo "== a token without its PIN file"
"$dev_up" --stop >/dev/null
mv "$dev/custody.pin" "$scratch/custody.pin.saved"
if out="$("$dev_up" 2>&1)"; then fail "dev-up went on without the token's PIN file"; fi
grep -q "custody.pin is missing" <<<"$out" || fail "the refusal does not name the missing PIN file"
grep -q -- "--reset" <<<"$out" || fail "the refusal does not say how to fix it"
[ ! -f "$dev/custody.pin" ] || fail "a new PIN file was written"
[ ! -f "$dev/custodyd.pid" ] || fail "a pid file was left behind"

echo "== --reset deletes the environment"
out="$("$dev_up" --reset 2>&1)" || fail "--reset failed"
grep -q "deleting $dev" <<<"$out" || fail "--reset does not say what it deletes"
[ ! -e "$dev" ] || fail "$dev is still there"
echo "PASS"
