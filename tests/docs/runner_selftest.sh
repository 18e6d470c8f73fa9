#!/usr/bin/env bash
# The documented-commands runner must fail on a broken block and name it, and must refuse an
# unmarked or misspelt shell block and a broken relative link; a passing file must pass. Runs without a dev instance.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
runner=("python3" "$here/run_doc_blocks.py" --no-dev --repo "$here/../.." --timeout 60)
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
fail() { echo "runner_selftest: $*" >&2; echo "--- runner output:" >&2; cat "$out" >&2; exit 1; }

# run FIXTURE EXPECTED_STATUS: runs the runner on one fixture, output in $out.
run() {
  local status=0
  "${runner[@]}" "tests/docs/fixtures/$1" >"$out" 2>&1 || status=$?
  [ "$status" -eq "$2" ] || fail "$1: exit status $status, expected $2"
}

run passing.md 0
grep -q "tests/docs/fixtures/passing.md: 2 block(s) passed" "$out" || fail "passing.md: expected 2 executed blocks"

run failing.md 1
grep -q "FAILED: tests/docs/fixtures/failing.md, block 2 (starts at line 8), failing command at line 9" "$out" \
  || fail "failing.md: the failure does not name the block and line"
grep -q "about to fail" "$out" || fail "failing.md: the block's output is not shown"
grep -q "printf 'x' | grep -q y" "$out" || fail "failing.md: the block is not shown"
if grep -q "not reached" "$out" && ! grep -q "echo not reached" "$out"; then fail "failing.md: ran past the failure"; fi

run unmarked.md 1
grep -q "tests/docs/fixtures/unmarked.md:3: block 1: unmarked" "$out" || fail "unmarked.md: the unmarked block is not named"

run misspelt.md 1
grep -q "unknown marking 'sh exmaple'" "$out" || fail "misspelt.md: the misspelt marking is not named"
run badlink.md 1
grep -q "link no-such-page.md: no such file" "$out" || fail "badlink.md: a link to a missing file is not named"
grep -q "link passing.md#no-such-heading: no heading with that anchor" "$out" || fail "badlink.md: a missing anchor is not named"
grep -q "leaves the repository" "$out" || fail "badlink.md: a link out of the repository is not named"
if grep -q "passing.md#a-fixture-that-passes" "$out"; then fail "badlink.md: a good link is reported"; fi
# Without a dev instance, a block's scripts/dev-up must not reach the repository's own .dev/.
run devup.md 1
grep -q "scripts/dev-up is not available" "$out" || fail "devup.md: --no-dev let a block run dev-up"
echo "runner_selftest: ok"
