#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint and run the test suite. Fails on any failure, and on
# "no tests collected".
#   bash scripts/test.sh            everything (what CI runs, via .ci/run)
#   bash scripts/test.sh --fast     the edit-test lane: leaves out the tests marked `slow`
#   bash scripts/test.sh [--fast] tests/server -k upload    extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
selection=()
if [ "${1:-}" = "--fast" ]; then
  shift
  selection=(-m "not slow")
fi
bash scripts/setup.sh
export MSMINE_DATA=${MSMINE_DATA:-$(cd .. && pwd)/shared/data}
echo "== ruff"
.venv/bin/ruff check .
echo "== pytest (MSMINE_DATA=$MSMINE_DATA)"
set +e
.venv/bin/python -m pytest -q --durations=15 "${selection[@]}" "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
  echo "error: no tests were collected" >&2
  exit 1
fi
exit "$rc"
