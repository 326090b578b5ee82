# Sourced by the sdist tests: the checkout (root), the interpreter to make
# virtual environments with (python), and the one sdist in DIST_DIR ($1):
# its path (sdist) and version.
root=$(cd "$(dirname "$0")/.." && pwd)
dist=$(cd "$1" && pwd)
python=${PYTHON:-python3}

sdists=("$dist"/ringlet-*.tar.gz)
[ ${#sdists[@]} -eq 1 ] && [ -f "${sdists[0]}" ] || { echo "expected one sdist in $dist" >&2; exit 1; }
sdist=${sdists[0]}
version=$(basename "$sdist" .tar.gz | cut -d- -f2)
