#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
MSMINE_SKIP_BROWSER=1 bash scripts/setup.sh
exec .venv/bin/msmine demo "$@"
