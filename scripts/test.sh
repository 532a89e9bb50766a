#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint and run the whole test suite. Fails on any failure,
# and on "no tests collected".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MSMINE_DATA=${MSMINE_DATA:-$(cd .. && pwd)/shared/data}
echo "== ruff"
.venv/bin/ruff check .
echo "== pytest (MSMINE_DATA=$MSMINE_DATA)"
set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
  echo "error: no tests were collected" >&2
  exit 1
fi
exit "$rc"
