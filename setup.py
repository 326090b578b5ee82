"""Build script for ringlet.

Project metadata lives in pyproject.toml; this file only describes the C
extension ``ringlet._ringlet``, because it needs logic that static metadata
cannot express: finding liburing with pkg-config and linking its static
library, so the installed module does not depend on liburing.so at run time
(where a distribution ships no liburing.a, the shared library is linked
instead, with a warning). Without liburing the build stops at once with the
package to install (HELP below); `make dist` builds the wheel and sdist.

Environment:
    RINGLET_SANITIZE=1   build with AddressSanitizer + UBSan (see `make sanitize`).
    RINGLET_FAULTS=1     compile in fault injection for tests (`ringlet._ringlet._fault_arm`);
                         never in a normal build.
    RINGLET_VALGRIND=1   mark what the kernel fills through the ring as written, for
                         valgrind's memcheck (see `make valgrind`); needs valgrind's headers.
"""

import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))

LIBURING_MIN_VERSION = "2.3"
LIBURING_FALLBACK_LIBDIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr/local/lib"]

# What to install, per distribution, when liburing cannot be found. The
# static library is preferred (the module then needs nothing but libc); a
# distribution that ships only liburing.so (Fedora's liburing-devel) gets a
# module linked to it instead (see find_liburing).
HELP = """\
ringlet is being built from source, and that needs liburing (>= {min}), found
with pkg-config. Install it with your system's package manager, then run pip
again:

    Debian/Ubuntu:  apt-get install liburing-dev pkg-config
    Fedora/RHEL:    dnf install liburing-devel pkgconf-pkg-config
    Alpine:         apk add liburing-dev pkgconf
    Arch:           pacman -S liburing pkgconf

(or build liburing from source so that `pkg-config --modversion liburing`
finds it). A build also needs a C compiler and Python's headers. A ringlet
wheel (`pip install ringlet-*.whl`) needs none of this.

Problem found: {problem}"""


class LiburingError(RuntimeError):
    pass


def _fail(problem):
    raise LiburingError(HELP.format(min=LIBURING_MIN_VERSION, problem=problem))


def _pkg_config(*args):
    """Run pkg-config for liburing; return its stripped stdout or fail clearly."""
    if shutil.which("pkg-config") is None:
        _fail("the `pkg-config` command was not found.")
    proc = subprocess.run(
        ["pkg-config", *args, "liburing"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    if proc.returncode != 0:
        _fail(
            "`pkg-config {} liburing` failed: {}".format(
                " ".join(args), " ".join(proc.stderr.split()) or "liburing.pc not found"
            )
        )
    return proc.stdout.strip()


def find_liburing():
    """Return (include_dirs, other_cflags, static_library, link_flags).

    static_library is the path of liburing.a, linked into the module so that
    it needs nothing but libc at run time (what a wheel must be). Where a
    distribution ships only the shared library (Fedora's liburing-devel
    leaves liburing.a out), static_library is None and link_flags links
    liburing.so: fine for a module built on the machine that runs it.
    """
    version = _pkg_config("--modversion")
    # --atleast-version prints nothing; it answers with its exit status.
    if subprocess.run(
        ["pkg-config", "--atleast-version=" + LIBURING_MIN_VERSION, "liburing"]
    ).returncode != 0:
        _fail("liburing {} is installed, {} or newer is required.".format(
            version, LIBURING_MIN_VERSION))

    include_dirs, cflags = [], []
    for flag in _pkg_config("--cflags").split():
        if flag.startswith("-I"):
            include_dirs.append(flag[2:])
        else:
            cflags.append(flag)

    libdirs = []
    libdir = _pkg_config("--variable=libdir")
    if libdir:
        libdirs.append(libdir)
    libdirs += [d for d in LIBURING_FALLBACK_LIBDIRS if d not in libdirs]
    for d in libdirs:
        candidate = os.path.join(d, "liburing.a")
        if os.path.isfile(candidate):
            return include_dirs, cflags, candidate, []
    if any(os.path.exists(os.path.join(d, "liburing.so")) for d in libdirs):
        return include_dirs, cflags, None, _pkg_config("--libs").split()
    _fail("neither liburing.a nor liburing.so was found in any of: {}.".format(
        ", ".join(libdirs)))


def sources(*patterns):
    """Sorted C sources, relative to this file (setuptools wants relative paths)."""
    found = []
    for pattern in patterns:
        found += glob.glob(os.path.join(HERE, pattern))
    return sorted(os.path.relpath(p, HERE) for p in found)


class BuildExt(build_ext):
    """Locate liburing only when the extension is really compiled.

    Doing it here rather than at import time keeps `setup.py sdist` and
    metadata generation working on a machine without liburing.
    """

    def finalize_options(self):
        super().finalize_options()
        # Always recompile: distutils only compares .c timestamps against the
        # .so, so a changed compiler flag (RINGLET_SANITIZE) or header would
        # otherwise leave a stale module behind. The C sources build in seconds.
        self.force = True

    def build_extensions(self):
        try:
            include_dirs, cflags, liburing_a, liburing_libs = find_liburing()
        except LiburingError as exc:
            sys.stderr.write("\nerror: {}\n\n".format(exc))
            raise SystemExit(1)
        if liburing_a is None:
            sys.stderr.write("\nwarning: no liburing.a here: linking liburing.so ({}), so this "
                             "ringlet needs liburing at run time.\n\n".format(" ".join(liburing_libs)))

        sanitize = os.environ.get("RINGLET_SANITIZE", "") not in ("", "0")
        san_flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
                     "-O1", "-g"]

        for ext in self.extensions:
            ext.include_dirs += include_dirs
            ext.extra_compile_args += cflags
            if liburing_a is not None:
                # Static link: no run-time dependency on liburing.so.
                ext.extra_objects.append(liburing_a)
                # Keep liburing's symbols private to our .so so they cannot clash
                # with another extension that brings its own liburing.
                ext.extra_link_args.append("-Wl,--exclude-libs,liburing.a")
            else:
                ext.extra_link_args += liburing_libs
            if os.environ.get("RINGLET_FAULTS", "") not in ("", "0"):
                ext.define_macros.append(("RINGLET_FAULTS", "1"))
            if os.environ.get("RINGLET_VALGRIND", "") not in ("", "0"):
                ext.define_macros.append(("RINGLET_VALGRIND", "1"))
                ext.extra_compile_args.append("-g")
            if sanitize:
                # Later flags win, so -O1 overrides the default -O2.
                ext.extra_compile_args += san_flags
                ext.extra_link_args += san_flags
        super().build_extensions()


ext = Extension(
    "ringlet._ringlet",
    sources=sources("csrc/*.c", "csrc/py/*.c"),
    depends=sources("csrc/*.h", "csrc/py/*.h"),
    include_dirs=["csrc"],
    extra_compile_args=["-Wall", "-Wextra", "-Werror", "-O2", "-std=gnu11"],
)

setup(
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExt},
)
