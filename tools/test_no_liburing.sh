#!/usr/bin/env bash
# `pip install` of the sdist on a machine without liburing must stop at once,
# before compiling anything, naming the package to install on Debian/Ubuntu,
# Fedora/RHEL, Alpine and Arch (setup.py's HELP). And where only liburing.a is
# missing (Fedora's liburing-devel ships none), it must build a working module
# linked to liburing.so, saying so.
#
#   tools/test_no_liburing.sh DIST_DIR
#
# liburing is hidden in a private mount namespace (unshare --mount, as root):
# each directory holding liburing's headers, libraries or pkg-config file gets
# an overlay whose upper layer has a whiteout (a 0/0 character device) for
# each liburing entry, so those paths do not exist there at all.
set -euo pipefail

source "$(dirname "$0")/_sdist.sh"  # root, python, sdist, version

work=$(mktemp -d /tmp/ringlet-no-liburing.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Where liburing can be: what pkg-config says, and the usual places.
dirs=$(
  for v in includedir libdir; do pkg-config --variable=$v liburing 2>/dev/null || true; done
  for d in $(pkg-config --variable=pc_path pkg-config 2>/dev/null | tr : ' '); do echo "$d"; done
  printf '%s\n' /usr/include /usr/local/include /usr/lib /usr/lib64 /usr/lib/x86_64-linux-gnu \
    /usr/local/lib /usr/lib/pkgconfig /usr/share/pkgconfig /usr/local/lib/pkgconfig \
    /usr/lib/x86_64-linux-gnu/pkgconfig
)
# "dir name" for every liburing entry, parents before children.
entries=$(for d in $(echo "$dirs" | sort -u); do
  [ -d "$d" ] || continue
  for p in "$d"/liburing*; do
    if [ -e "$p" ] || [ -L "$p" ]; then echo "$(realpath "$d") $(basename "$p")"; fi
  done
done | sort -u)
[ -n "$entries" ] || { echo "liburing is not installed here: nothing to hide" >&2; exit 1; }

"$python" -m venv "$work/venv"

# hide PATTERN CMD...: run CMD in a mount namespace where the liburing entries
# whose names match the extended regex PATTERN do not exist.
hide() {
  local pattern=$1; shift
  ENTRIES=$(echo "$entries" | awk -v re="$pattern" '$2 ~ re') OVL=$work/ovl \
  unshare --mount --propagation private bash -euo pipefail -c '
    mkdir -p "$OVL" && mount -t tmpfs tmpfs "$OVL"
    n=0
    for d in $(echo "$ENTRIES" | cut -d" " -f1 | sort -u | awk "{print length, \$0}" | sort -n | cut -d" " -f2); do
      n=$((n + 1)); mkdir -p "$OVL/$n/upper" "$OVL/$n/work"
      for name in $(echo "$ENTRIES" | awk -v d="$d" "\$1 == d {print \$2}"); do
        mknod "$OVL/$n/upper/$name" c 0 0          # an overlay whiteout: "no such file"
        echo "hidden: $d/$name"
      done
      mount -t overlay overlay -o "lowerdir=$d,upperdir=$OVL/$n/upper,workdir=$OVL/$n/work" "$d"
    done
    exec "$@"' hide "$@"
}

echo "== no liburing at all: pip install $(basename "$sdist") must fail at once with the package to install"
set +e
hide '^liburing' bash -c '
  if pkg-config --exists liburing; then echo "pkg-config still finds liburing" >&2; exit 97; fi
  echo "pkg-config --exists liburing: not found"
  if echo "#include <liburing.h>" | cc -E -x c - >/dev/null 2>&1; then echo "liburing.h still found" >&2; exit 97; fi
  echo "#include <liburing.h>: not found by the compiler"
  exec "$0" -m pip install --no-cache-dir "$1"' "$work/venv/bin/python" "$sdist" >"$work/pip.log" 2>&1
rc=$?
set -e
grep '^hidden:\|: not found' "$work/pip.log"
if [ $rc -eq 0 ] || [ $rc -eq 97 ]; then
  cat "$work/pip.log"; echo "FAILED: pip install exited $rc (expected a build failure)" >&2; exit 1
fi
echo "pip install exited $rc; the message:"
sed -n '/ringlet is being built from source/,/Problem found/p' "$work/pip.log" | sed -E 's/^ {6}//'
missing=0
for want in "apt-get install liburing-dev" "dnf install liburing-devel" "apk add liburing-dev" \
            "pacman -S liburing" "Problem found: \`pkg-config --modversion liburing\` failed"; do
  grep -qF -- "$want" "$work/pip.log" || { echo "FAILED: the output lacks: $want" >&2; missing=1; }
done
# At once: nothing was compiled before the message.
if grep -q 'csrc/.*\.c' "$work/pip.log"; then echo "FAILED: C sources were compiled before the failure" >&2; missing=1; fi
[ $missing -eq 0 ] || { cat "$work/pip.log"; exit 1; }
echo "no-liburing test: pip failed at once with the message naming each distribution's package"

echo "== only liburing.a missing: pip install builds a module linked to liburing.so, and says so"
"$python" -m venv "$work/venv-shared"
hide '^liburing\.a$' "$work/venv-shared/bin/python" -m pip install -v --no-cache-dir "$sdist" >"$work/pip-shared.log" 2>&1 \
  || { cat "$work/pip-shared.log"; echo "FAILED: the build without liburing.a failed" >&2; exit 1; }
grep '^hidden:' "$work/pip-shared.log"
grep -F "warning: no liburing.a here" "$work/pip-shared.log" | sed 's/^ *//' \
  || { echo "FAILED: no warning about linking liburing.so" >&2; exit 1; }
so=$(ls "$work"/venv-shared/lib/python3*/site-packages/ringlet/_ringlet*.so)
needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "readelf -d: NEEDED $needed"
case " $needed" in *" liburing.so"*) ;; *) echo "FAILED: the module does not link liburing.so" >&2; exit 1;; esac
(cd "$work" && "$work/venv-shared/bin/python" "$root/tools/smoke_installed.py" "$version")
echo "no-liburing test: passed"
