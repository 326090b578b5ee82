#!/usr/bin/env bash
# The wheel as a user gets it: installed into a fresh virtual environment,
# used from a directory outside the checkout (so `import ringlet` cannot find
# the sources), with the C compiler hidden, against the test suite.
#
#   tools/test_wheel.sh DIST_DIR SECCOMP_LAUNCHER EXTRAS "TEST TOOLS"
#
# The compiler is hidden in a private mount namespace (unshare --mount, as
# root): /dev/null is bound over every compiler driver and an empty tmpfs over
# gcc's internal programs (cc1, ...). The seccomp launcher the backend tests
# need is C, so it comes prebuilt (make builds it before hiding the compiler).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dist=$(cd "$1" && pwd)
launcher=$(realpath "$2")
extras=$3
test_tools=$4
python=${PYTHON:-python3}

wheels=("$dist"/ringlet-*-manylinux*.whl)
[ ${#wheels[@]} -eq 1 ] && [ -f "${wheels[0]}" ] || { echo "expected one manylinux wheel in $dist" >&2; exit 1; }
wheel=${wheels[0]}
version=$(basename "$wheel" | cut -d- -f2)

work=$(mktemp -d /tmp/ringlet-wheel-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
venv=$work/venv

echo "== wheel test: fresh virtual environment $venv"
"$python" -m venv "$venv"
echo "pip install $(basename "$wheel")[$extras] and the test tools: $test_tools"
# shellcheck disable=SC2086  # test_tools is a list of names
"$venv/bin/python" -m pip install -q "$wheel[$extras]" $test_tools

# What the tests read besides ringlet: the tests, the examples and notebooks
# that tests/examples and tests/integrations run, pytest's settings, the
# prebuilt launcher where tests/engine looks for it (ROOT/build/seccomp).
cp -r "$root/tests" "$work/tests"
mkdir -p "$work/build/seccomp"
cp -r "$root/examples" "$work/examples"
cp "$root/pyproject.toml" "$work/pyproject.toml"
cp "$launcher" "$work/build/seccomp/"
find "$work/tests" "$work/examples" -name __pycache__ -prune -exec rm -rf {} +

# Every compiler driver on PATH, resolved through its symlinks (cc -> gcc ->
# x86_64-linux-gnu-gcc-12), and the one Python's sysconfig would use.
drivers=$("$venv/bin/python" - <<'PY'
import os, shutil, sysconfig
names = ["cc", "gcc", "c89", "c99", "c++", "g++", "clang", "clang++", "tcc"]
names.append((sysconfig.get_config_var("CC") or "cc").split()[0])
print(" ".join(sorted({os.path.realpath(p) for p in map(shutil.which, names) if p})))
PY
)
echo "compilers to hide: $drivers"

cd "$work"
export RINGLET_EXPECTED_VERSION=$version VENV=$venv DRIVERS=$drivers ROOT=$root
unset PYTHONPATH RINGLET_BACKEND RINGLET_SECCOMP_NO_IO_URING
unshare --mount --propagation private bash -euo pipefail -c '
for d in $DRIVERS; do mount --bind /dev/null "$d"; done
for d in /usr/lib/gcc /usr/libexec/gcc; do if [ -d "$d" ]; then mount -t tmpfs -o ro tmpfs "$d"; fi; done
for c in gcc cc; do
  if out=$($c --version 2>&1); then echo "$c still runs: $out" >&2; exit 1; fi
  echo "$c is not runnable here: $out"
done
echo "== wheel test: outside the checkout ($PWD), compiler hidden"
"$VENV/bin/python" "$ROOT/tools/smoke_installed.py" "$RINGLET_EXPECTED_VERSION"
echo "== wheel test: pytest tests (the installed package)"
"$VENV/bin/python" -m pytest tests -q -rs -p no:cacheprovider
'
