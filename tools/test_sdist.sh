#!/usr/bin/env bash
# The sdist as a user gets it: `pip install ringlet-VERSION.tar.gz` in a fresh
# virtual environment builds the extension (in pip's isolated build
# environment, from the build requirements in pyproject.toml), then a smoke
# test from outside the checkout: import, backend io_uring, a round trip.
#
#   tools/test_sdist.sh DIST_DIR
set -euo pipefail

source "$(dirname "$0")/_sdist.sh"  # root, python, sdist, version

work=$(mktemp -d /tmp/ringlet-sdist-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== sdist test: fresh virtual environment; pip install $(basename "$sdist")"
"$python" -m venv "$work/venv"
# --no-cache-dir: build from the sdist, never reuse a wheel built earlier.
"$work/venv/bin/python" -m pip install -q --no-cache-dir "$sdist"
cd "$work"
unset PYTHONPATH RINGLET_BACKEND
"$work/venv/bin/python" "$root/tools/smoke_installed.py" "$version"
echo "sdist test: passed"
