#!/usr/bin/env bash
# The sdist as a user gets it: `pip install ringlet-VERSION.tar.gz` in a fresh
# virtual environment builds the extension (in pip's isolated build
# environment, from the build requirements in pyproject.toml), then a smoke
# test from outside the checkout: import, backend io_uring, a round trip.
#
#   tools/test_sdist.sh DIST_DIR
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dist=$(cd "$1" && pwd)
python=${PYTHON:-python3}

sdists=("$dist"/ringlet-*.tar.gz)
[ ${#sdists[@]} -eq 1 ] && [ -f "${sdists[0]}" ] || { echo "expected one sdist in $dist" >&2; exit 1; }
sdist=${sdists[0]}
version=$(basename "$sdist" .tar.gz | cut -d- -f2)

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
