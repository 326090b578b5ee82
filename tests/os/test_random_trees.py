"""ringlet.os's path operations and the whole-file helpers against the
synchronous calls (os, shutil.copyfile, open().read(), open().write()), on
random trees of symbolic links: two identical trees, the same random call
on each (paths relative or absolute, str, bytes or pathlib.Path, through
links, trailing slashes, "", "."), then the same outcome (result, or
exception type, errno, filename, filename2, message) and the same trees.

Found this way: io_uring takes in both paths of a rename or a link before it
looks either up, so an empty second path was refused (ENOENT) before the
first one's own error; copy_file answered IsADirectoryError where shutil
says SameFileError (a directory onto itself) or "Directory does not exist".

Known differences, left out of the draw: os.link() before Python 3.14 does
not follow a symbolic link without a dir_fd (CPython gh-81793, ringlet.os
follows as documented: the reference call here passes the working directory
as dir_fd); the helpers copy or block on a FIFO where shutil refuses it and
open() blocks (paths that reach one are not drawn for them).

RINGLET_FUZZ_EXAMPLES=N draws N new trees (a hunt); the suite runs fixed ones."""

import collections
import os
import pathlib
import random
import shutil
import stat

import pytest

TREES = int(os.environ.get("RINGLET_FUZZ_EXAMPLES", "60"))
SEED = None if "RINGLET_FUZZ_EXAMPLES" in os.environ else 29
CALLS_PER_TREE = 12

# Path components; a link's target is one of them, so a path of at most
# three components climbs at most three levels: each side's tree sits four
# levels down in a folder of its own, and nothing outside it is touched.
NAMES = ["f", "d", "d/e", "..", ".", "", "missing", "l0", "l1", "fifo", "new", "d/f2"]
OS_CALLS = ["rename", "replace", "renames", "unlink", "remove", "rmdir", "removedirs", "mkdir", "makedirs",
            "link", "symlink"]
HELPERS = ["read_file", "write_file", "copy_file"]


def build(tree, rng):
    os.makedirs(tree / "d" / "e")
    (tree / "f").write_bytes(b"ff")
    (tree / "d" / "f2").write_bytes(b"f2")
    os.mkfifo(tree / "fifo")
    for i in range(2):
        target = rng.choice(NAMES) or "."
        os.symlink(target + ("/" if rng.random() < 0.2 else ""), tree / rng.choice(["", "d"]) / f"l{i}")


def snapshot(side):
    """Every entry under side: its type, links and content."""
    entries = []
    for folder, dirs, files in os.walk(side):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            detail = (os.readlink(path) if stat.S_ISLNK(st.st_mode)
                      else pathlib.Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None)
            entries.append((os.path.relpath(path, side), stat.S_IFMT(st.st_mode), st.st_nlink, detail))
    return sorted(entries)


def rebase(value, old, new):
    """value with the tree's absolute path old made new (or "TREE", to compare)."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, bytes):
        return value.replace(os.fsencode(old), os.fsencode(new))
    if isinstance(value, pathlib.PurePath):
        return type(value)(str(value).replace(old, new))
    return value


def outcome(call, tree):
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - compared with the other side's
        return ("raised", type(exc), getattr(exc, "errno", None), rebase(getattr(exc, "filename", None), tree, "TREE"),
                rebase(getattr(exc, "filename2", None), tree, "TREE"), rebase(str(exc), tree, "TREE"))
    return ("returned", len(result) if isinstance(result, bytes) else result)


EXISTING = ["f", "d", "d/f2", "l0", "d/e"]
FRESH = ["new", "d/new", "d/e/new", "new2", "new/", "missing/new"]


def draw_path(rng, tree, likely=()):
    """A random path; half the time one of likely (so that calls succeed too)."""
    if likely and rng.random() < 0.5:
        path = rng.choice(likely)
    else:
        path = "/".join(rng.choice(NAMES) for _ in range(rng.choice([1, 1, 2, 3])))
    if rng.random() < 0.2:
        path += "/"
    if path.startswith("/"):
        path = "." + path  # relative: it stays in the tree's folder
    if rng.random() < 0.3:
        path = f"{tree}/{path}"
    kind = rng.random()
    return os.fsencode(path) if kind < 0.15 else pathlib.Path(path) if kind < 0.3 and path else path


def draw_call(rng, tree):
    name = rng.choice(OS_CALLS + HELPERS * 2)
    kw = {}
    if name in ("rename", "replace", "renames", "link", "copy_file"):
        args = (draw_path(rng, tree, EXISTING), draw_path(rng, tree, FRESH))
    elif name == "symlink":
        args = (rng.choice(NAMES), draw_path(rng, tree, FRESH))
    elif name == "write_file":
        args = (draw_path(rng, tree, FRESH + EXISTING), rng.choice([b"", b"data", bytes(70_000)]))
    elif name in ("mkdir", "makedirs"):
        args = (draw_path(rng, tree, FRESH),)
    else:
        args = (draw_path(rng, tree, EXISTING),)
    if name == "mkdir" and rng.random() < 0.3:
        args += (rng.choice([0o700, -1, 2**31, 2**40, True, "x"]),)
    if name == "makedirs":
        kw["exist_ok"] = rng.random() < 0.5
    if name == "link" and rng.random() < 0.3:
        kw["follow_symlinks"] = False
    return name, args, kw


def reaches_a_fifo(path):
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def sync_call(name, kw):
    if name == "read_file":
        def read(path):
            with open(path, "rb") as f:
                return f.read()
        return read
    if name == "write_file":
        def write(path, data):
            with open(path, "wb") as f:
                return f.write(data)
        return write
    if name == "copy_file":
        return lambda src, dst: shutil.copyfile(src, dst) and None  # dst: compared as None
    if name == "link" and kw.get("follow_symlinks", True):
        # os.link follows a symbolic link only given a dir_fd before 3.14 (gh-81793)
        def link(src, dst, **kw):
            cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
            try:
                return os.link(src, dst, src_dir_fd=cwd, dst_dir_fd=cwd, **kw)
            finally:
                os.close(cwd)
        return link
    return getattr(os, name)


def test_same_outcomes_and_trees_as_the_sync_calls(ringlet, run, tmp_path, monkeypatch):
    import ringlet.os as ros

    rng = random.Random(SEED)
    sides = {side: tmp_path / side / "1" / "2" / "3" / "tree" for side in ("sync", "ringlet")}

    def fresh_trees(tree_seed):
        for side, tree in sides.items():
            shutil.rmtree(tmp_path / side, ignore_errors=True)
            build(tree, random.Random(tree_seed))

    differences, seen = [], collections.Counter()
    for _ in range(TREES):
        tree_seed = rng.random()
        fresh_trees(tree_seed)
        for _ in range(CALLS_PER_TREE):
            if not all(tree.is_dir() for tree in sides.values()):  # a call renamed or removed one
                fresh_trees(tree_seed)
            name, args, kw = draw_call(rng, str(sides["sync"]))
            monkeypatch.chdir(sides["sync"])
            if name in HELPERS and any(reaches_a_fifo(path) for path in (args[:1] if name == "write_file" else args)):
                continue
            want = outcome(lambda: sync_call(name, kw)(*args, **kw), str(sides["sync"]))
            ours = tuple(rebase(arg, str(sides["sync"]), str(sides["ringlet"])) for arg in args)
            monkeypatch.chdir(sides["ringlet"])
            got = outcome(lambda: run(getattr(ringlet if name in HELPERS else ros, name)(*ours, **kw)),
                          str(sides["ringlet"]))
            if name == "copy_file" and got[0] == "returned":
                got = ("returned", None)  # the bytes copied, where shutil.copyfile returns dst
            seen[name, want[1] if want[0] == "raised" else None] += 1
            shutils_own_message = want[0] == "raised" and want[5].startswith("Directory does not exist")
            if got != want or snapshot(tmp_path / "sync") != snapshot(tmp_path / "ringlet"):
                differences.append((name, args, kw, want, got))
            if shutils_own_message:
                seen[name, "Directory does not exist"] += 1
                fresh_trees(tree_seed)
    assert not differences, f"{len(differences)} differences, the first ones: {differences[:5]}"
    if SEED is None:
        return  # a hunt: its draws need not reach everything below
    # The draws reach the outcomes that matter: a guard against a draw that tests little.
    for name in OS_CALLS + HELPERS:
        assert (name, None) in seen, f"{name} never succeeded"
    for name, error in [("rename", NotADirectoryError), ("rmdir", OSError), ("mkdir", FileExistsError),
                        ("link", FileExistsError), ("read_file", IsADirectoryError),
                        ("copy_file", shutil.SameFileError), ("copy_file", FileNotFoundError)]:
        assert any(n == name and isinstance(k, type) and issubclass(k, error) for n, k in seen), (name, error)
    assert seen["copy_file", "Directory does not exist"], "no copy_file into a missing directory"
