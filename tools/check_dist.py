"""Check what `make dist` wrote: one sdist and one manylinux wheel of the
version in python/ringlet/_version.py, holding what a user needs and nothing
else, with an extension that needs nothing but libc at run time.

    python tools/check_dist.py [DIST_DIR]

Prints what it checked; exits 1 with the list of problems if any.
"""

from __future__ import annotations

import ast
import email.message
import email.parser
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(ROOT, "python", "ringlet")
# The oldest glibc baseline the wheel may ask for (x86_64: manylinux_2_28).
MAX_GLIBC_MINOR = 28
EXTRAS = {"plot", "starlette", "fastapi", "aiohttp"}
CLASSIFIERS = {"Operating System :: POSIX :: Linux", "Framework :: AsyncIO", "Programming Language :: Python :: 3"}
# Top-level entries of the sdist (setuptools writes PKG-INFO, setup.cfg and
# python/ringlet.egg-info itself).
SDIST_TOP = {"PKG-INFO", "pyproject.toml", "setup.py", "setup.cfg", "LICENSE", "README.md", "MANIFEST.in",
             "csrc", "python"}


def version() -> str:
    """The version, read from _version.py without importing ringlet."""
    with open(os.path.join(PACKAGE_DIR, "_version.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__version__"
                                                for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, str)
            return value
    raise SystemExit("python/ringlet/_version.py has no __version__")


def tree_files(top: str, suffixes: tuple[str, ...]) -> set[str]:
    """Files under top (relative to ROOT) whose names end with suffixes."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith(suffixes):
                found.add(os.path.relpath(os.path.join(dirpath, name), ROOT))
    return found


def package_files() -> set[str]:
    """What the wheel must hold of python/ringlet, as paths inside the wheel."""
    return {os.path.relpath(p, "python") for p in tree_files(os.path.join("python", "ringlet"), (".py", ".pyi", "py.typed"))}


def needed_libraries(so_bytes: bytes) -> list[str]:
    """The DT_NEEDED entries of a shared object, as `readelf -d` lists them."""
    with tempfile.NamedTemporaryFile(suffix=".so") as f:
        f.write(so_bytes)
        f.flush()
        out = subprocess.run(["readelf", "-d", f.name], capture_output=True, text=True, check=True).stdout
    print("readelf -d ringlet/_ringlet*.so | grep NEEDED:")
    for line in out.splitlines():
        if "(NEEDED)" in line:
            print("   " + line.strip())
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def check_metadata(meta: email.message.Message, expected_version: str, problems: list[str]) -> None:
    if meta["Name"] != "ringlet" or meta["Version"] != expected_version:
        problems.append(f"METADATA names {meta['Name']} {meta['Version']}, expected ringlet {expected_version}")
    if meta["License-Expression"] != "MIT" or "LICENSE" not in (meta.get_all("License-File") or []):
        problems.append("METADATA: License-Expression MIT with License-File LICENSE expected")
    if not meta["Requires-Python"]:
        problems.append("METADATA: no Requires-Python")
    classifiers = set(meta.get_all("Classifier") or [])
    if not CLASSIFIERS <= classifiers:
        problems.append(f"METADATA: classifiers missing: {sorted(CLASSIFIERS - classifiers)}")
    if not any(re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c) for c in classifiers):
        problems.append("METADATA: no classifier naming a Python version")
    extras = set(meta.get_all("Provides-Extra") or [])
    if not EXTRAS <= extras:
        problems.append(f"METADATA: extras missing: {sorted(EXTRAS - extras)}")
    if meta["Description-Content-Type"] != "text/markdown":
        problems.append(f"METADATA: Description-Content-Type is {meta['Description-Content-Type']}")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    body = meta.get_payload()
    if not isinstance(body, str) or body.strip() != readme.strip():
        problems.append("METADATA: the long description is not README.md")


def check_wheel(path: str, expected_version: str, problems: list[str]) -> None:
    name = os.path.basename(path)
    m = re.fullmatch(r"ringlet-(?P<v>[^-]+)-(?P<py>cp3\d+)-(?P<abi>cp3\d+)-(?P<plat>[^-]+)\.whl", name)
    if m is None:
        problems.append(f"{name}: not a CPython wheel name")
        return
    if m["v"] != expected_version:
        problems.append(f"{name}: version {m['v']}, _version.py says {expected_version}")
    glibc = [int(g) for g in re.findall(r"manylinux_2_(\d+)_", m["plat"])]
    if not glibc or min(glibc) > MAX_GLIBC_MINOR:
        problems.append(f"{name}: platform tag {m['plat']} is not manylinux_2_{MAX_GLIBC_MINOR} or older")

    dist_info = f"ringlet-{m['v']}.dist-info"
    with zipfile.ZipFile(path) as whl:
        names = {n for n in whl.namelist() if not n.endswith("/")}  # files, not directory entries
        package = {n for n in names if n.startswith("ringlet/")}
        extensions = sorted(n for n in package if re.fullmatch(r"ringlet/_ringlet\.[^/]*\.so", n))
        want = package_files()
        if want - package:
            problems.append(f"wheel lacks: {sorted(want - package)}")
        extra = package - want - set(extensions)
        if extra:
            problems.append(f"wheel holds what is not the package: {sorted(extra)}")
        if len(extensions) != 1:
            problems.append(f"wheel holds {len(extensions)} extension modules: {extensions}")
        outside = {n for n in names if not n.startswith(("ringlet/", dist_info + "/"))}
        if outside:
            problems.append(f"wheel holds files outside ringlet/ and {dist_info}/: {sorted(outside)}")
        for required in ("METADATA", "WHEEL", "RECORD", "licenses/LICENSE"):
            if f"{dist_info}/{required}" not in names:
                problems.append(f"wheel lacks {dist_info}/{required}")
        modules = sum(n.endswith(".py") for n in package)
        others = ", ".join(sorted(os.path.basename(n) for n in package if not n.endswith(".py")))
        print(f"{name}: {len(names)} files: {modules} modules and {others} in ringlet/, "
              f"{len(names) - len(package)} in {dist_info}/")
        if extensions:
            needed = needed_libraries(whl.read(extensions[0]))
            if any("uring" in lib for lib in needed):
                problems.append(f"the extension links liburing dynamically: NEEDED {needed}")
            if set(needed) != {"libc.so.6"}:
                problems.append(f"the extension needs more than libc at run time: NEEDED {needed}")
        meta = email.parser.Parser().parsestr(whl.read(f"{dist_info}/METADATA").decode("utf-8"))
    check_metadata(meta, expected_version, problems)


def check_sdist(path: str, expected_version: str, problems: list[str]) -> None:
    name = os.path.basename(path)
    prefix = f"ringlet-{expected_version}/"
    if name != f"ringlet-{expected_version}.tar.gz":
        problems.append(f"{name}: expected ringlet-{expected_version}.tar.gz")
    with tarfile.open(path) as sdist:
        members = [m.name for m in sdist.getmembers() if m.isfile()]
    if any(not n.startswith(prefix) for n in members):
        problems.append(f"{name}: members outside {prefix}")
    files = {n[len(prefix):] for n in members if n.startswith(prefix)}
    tops = {f.split("/", 1)[0] for f in files}
    if tops - SDIST_TOP:
        problems.append(f"{name} holds what does not build ringlet: {sorted(tops - SDIST_TOP)}")
    want = tree_files("csrc", (".c", ".h")) | tree_files(os.path.join("python", "ringlet"), (".py", ".pyi", "py.typed"))
    want |= {"pyproject.toml", "setup.py", "LICENSE", "README.md"}
    if want - files:
        problems.append(f"{name} lacks: {sorted(want - files)}")
    leftovers = sorted(f for f in files if f.endswith((".so", ".o", ".pyc")) or "__pycache__" in f)
    if leftovers:
        problems.append(f"{name} holds build leftovers: {leftovers}")
    print(f"{name}: {len(files)} files; top level: {', '.join(sorted(tops))}")


def main() -> int:
    dist = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "dist")
    expected = version()
    entries = sorted(os.listdir(dist))
    wheels = [e for e in entries if e.endswith(".whl")]
    sdists = [e for e in entries if e.endswith(".tar.gz")]
    problems: list[str] = []
    if len(wheels) != 1 or len(sdists) != 1 or len(entries) != 2:
        problems.append(f"{dist} should hold one wheel and one sdist, it holds {entries}")
    for w in wheels:
        check_wheel(os.path.join(dist, w), expected, problems)
    for s in sdists:
        check_sdist(os.path.join(dist, s), expected, problems)
    if problems:
        print("check_dist: FAILED", *problems, sep="\n  ")
        return 1
    print(f"check_dist: {dist} holds ringlet {expected}: sdist and manylinux wheel as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
