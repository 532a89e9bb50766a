#!/usr/bin/env bash
# Set up everything msmine needs on a fresh machine with Python 3.11: a virtual environment in
# .venv with the package and all extras (CPU torch pinned), plus Debian's Chromium for the
# browser test when running as root without it. Idempotent: re-running only fills gaps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.msmine-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: it takes the CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[train,edge,server,postgres,s3,dev]"
  touch "$stamp"
fi
# Label Studio in its own venv (.venv-label-studio): it pins Django and dozens more, so it never
# shares the project's venv; msmine talks to it over HTTP only. The Label Studio connector's tests
# start a real server from it. Then its database migrations run once into a template that each test
# start copies (seconds instead of minutes). MSMINE_NO_LABEL_STUDIO=1 leaves it out (its tests then skip, but fail in CI).
LS_VERSION=1.23.2
if [ "${MSMINE_NO_LABEL_STUDIO:-0}" != "1" ]; then
  ls_stamp=.venv-label-studio/.msmine-installed-$LS_VERSION
  if [ ! -f "$ls_stamp" ]; then
    [ -x .venv-label-studio/bin/python ] || "$PY" -m venv .venv-label-studio
    echo "installing Label Studio $LS_VERSION into .venv-label-studio (a few minutes)..." >&2
    .venv-label-studio/bin/python -m pip install -q "label-studio==$LS_VERSION"
    rm -rf .venv-label-studio/msmine-template
    # (`label-studio user` migrates the database before it looks the user up; nobody is created)
    if ! LATEST_VERSION_CHECK=false .venv-label-studio/bin/label-studio user --username nobody@localhost \
        --data-dir .venv-label-studio/msmine-template >.venv-label-studio/msmine-template.log 2>&1 \
        || [ ! -f .venv-label-studio/msmine-template/label_studio.sqlite3 ]; then
      tail -20 .venv-label-studio/msmine-template.log >&2
      echo "error: could not migrate Label Studio's template database" >&2
      exit 1
    fi
    touch "$ls_stamp"
  fi
fi
# Debian packages the tests use, installed when running as root (CI) and missing:
#   chromium   the gallery's browser test
#   postgresql the PostgreSQL metadata-store tests (the tests start their own throw-away cluster)
#   nginx      the reverse proxy in front of server replicas in the fleet-scale tests
apt_missing=()
if [ "${MSMINE_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  apt_missing+=(chromium)
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_missing+=(postgresql)
fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  apt_missing+=(nginx)
fi
if [ "${#apt_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages for the tests: ${apt_missing[*]}..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null) \
      || echo "warning: could not install ${apt_missing[*]}; tests that need them fail in CI" >&2
  else
    echo "note: ${apt_missing[*]} not installed (run as root to install); tests that need them are skipped" >&2
  fi
fi
