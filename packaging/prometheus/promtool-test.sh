#!/bin/sh
# Checks custody-alerts.yml and runs its unit tests (one case per alert, in two files by time
# scale). Run from ctest (label unit); exit 77 (skipped) only when promtool is not installed.
set -eu
dir=${1:-$(dirname "$0")}
if ! command -v promtool >/dev/null 2>&1; then
  echo "*** promtool NOT FOUND: the alert rules were NOT checked. Install the Debian package 'prometheus' (scripts/bootstrap does). ***" >&2
  exit 77
fi
cd "$dir"
promtool check rules custody-alerts.yml
promtool test rules custody-alerts.test.yml custody-alerts.daily.test.yml
