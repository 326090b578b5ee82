"""ringlet.os and ringlet.os.path against os and os.path: the same results
(str or bytes as the argument), the same exceptions (type, errno, filename,
filename2), through io_uring where the kernel has the opcode."""

import asyncio
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import child_env

# IORING_OP_* of the operations that ringlet.os sends through the ring.
STATX, RENAMEAT, UNLINKAT, MKDIRAT, SYMLINKAT, LINKAT = 21, 35, 36, 37, 38, 39


@pytest.fixture(scope="session")
def ros(ringlet):
    import ringlet.os

    return ringlet.os


def outcome(call):
    """(result, None) or (None, exception) of a call, for comparisons."""
    try:
        return call(), None
    except Exception as exc:  # noqa: BLE001
        return None, exc


def same_error(got, want):
    assert type(got) is type(want), (got, want)
    if isinstance(want, OSError):
        assert (got.errno, got.filename, got.filename2) == (want.errno, want.filename, want.filename2)


def check_like_os(run, coro_fn, os_fn, undo=None):
    """Run os_fn (then undo what it did), then the coroutine: same result or same error."""
    want, want_exc = outcome(os_fn)
    if undo is not None and want_exc is None:
        undo()

    async def main():
        return await coro_fn()

    got, got_exc = outcome(lambda: run(main()))
    if want_exc is not None:
        same_error(got_exc, want_exc)
        return want_exc
    assert got_exc is None, got_exc
    assert got == want
    return got


def snapshot(root):
    """Everything below root: (relative dir, sorted names, link targets)."""
    out = []
    for d, dirs, files in os.walk(root):
        names = sorted(dirs + files)
        links = [os.readlink(os.path.join(d, n)) for n in names if os.path.islink(os.path.join(d, n))]
        out.append((os.path.relpath(d, root), names, links))
    return sorted(out)


def like_os_in_fresh_trees(run, root, build, os_call, ringlet_call):
    """os_call(root) on a fresh tree, then ringlet_call(root) on another fresh
    tree at the same place: the same outcome and the same tree afterwards."""
    results = []
    for call in (os_call, lambda r: run(ringlet_call(r))):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        build(root)
        results.append((outcome(lambda: call(root)), snapshot(root)))
    ((want, want_exc), want_tree), ((got, got_exc), got_tree) = results
    if want_exc is not None:
        same_error(got_exc, want_exc)
    else:
        assert got_exc is None, got_exc
        assert got == want
    assert got_tree == want_tree
    return want_exc


def build_tree(root):
    (root / "file").write_bytes(b"f")
    (root / "dir").mkdir()
    (root / "dir" / "x").write_bytes(b"")
    (root / "emptydir").mkdir()
    os.symlink("file", root / "link")
    os.symlink("emptydir", root / "dirlink")


def stat_fields(st):
    """What two stat calls of an unchanged file agree on (not st_atime*)."""
    return (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns, st.st_blksize, st.st_blocks, st.st_rdev, st.st_mtime, st[8])


@pytest.fixture
def tree(tmp_path):
    """A directory with a file, a subdirectory, a link to each, and a broken link."""
    (tmp_path / "file").write_bytes(b"12345")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner").write_bytes(b"")
    os.symlink("file", tmp_path / "link")
    os.symlink("dir", tmp_path / "dirlink")
    os.symlink("missing", tmp_path / "broken")
    return tmp_path


def path_variants(path):
    return [str(path), os.fsencode(str(path)), pathlib.Path(path)]


# --------------------------------------------------------------------------
# imports and documentation
# --------------------------------------------------------------------------


def test_imports(ringlet):
    import ringlet.os
    import ringlet.os.path
    import ringlet.ospath
    from ringlet.os import path as path_from

    assert ringlet.os.path is ringlet.ospath is path_from
    assert callable(ringlet.os.path.exists)
    # ringlet.os does not shadow the standard os inside ringlet's own modules
    import ringlet._binary

    assert ringlet._binary.os is os
    assert ringlet.os.stat is not os.stat


def test_every_function_is_documented_and_a_coroutine_function(ros):
    import inspect

    names = [n for n in ros.__all__ if n != "path"] + ["path." + n for n in ros.path.__all__]
    for name in names:
        fn = ros.path if name.startswith("path.") else ros
        fn = getattr(fn, name.split(".")[-1])
        # scandir returns an object both awaitable and async-iterable (it cannot be a coroutine function);
        # walk is an async generator, as os.walk is a generator
        assert (inspect.iscoroutinefunction(fn) or (name == "scandir" and inspect.isawaitable(fn(".")))
                or (name == "walk" and inspect.isasyncgenfunction(fn))), name
        assert fn.__doc__ and len(fn.__doc__) > 20, name
    assert {"stat", "lstat", "rename", "replace", "remove", "unlink", "mkdir", "makedirs", "rmdir", "link",
            "symlink", "readlink", "listdir", "scandir", "access", "walk"} <= set(ros.__all__)


# --------------------------------------------------------------------------
# stat and lstat
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["file", "dir", "link", "dirlink", "broken", "missing", "file/x"])
@pytest.mark.parametrize("follow", [True, False])
def test_stat_like_os(ros, run, tree, name, follow):
    for path in path_variants(tree / name):
        want, want_exc = outcome(lambda: os.stat(path, follow_symlinks=follow))
        got, got_exc = outcome(lambda: run(ros.stat(path, follow_symlinks=follow)))
        if want_exc is not None:
            same_error(got_exc, want_exc)
        else:
            assert type(got) is os.stat_result
            assert stat_fields(got) == stat_fields(want)


@pytest.mark.parametrize("name", ["file", "link", "broken", "missing"])
def test_lstat_like_os(ros, run, tree, name):
    for path in path_variants(tree / name):
        want, want_exc = outcome(lambda: os.lstat(path))
        got, got_exc = outcome(lambda: run(ros.lstat(path)))
        if want_exc is not None:
            same_error(got_exc, want_exc)
        else:
            assert stat_fields(got) == stat_fields(want)


def test_stat_of_descriptor_and_dir_fd_like_os(ros, run, tree):
    fd = os.open(tree / "file", os.O_RDONLY)
    dir_fd = os.open(tree, os.O_RDONLY)
    try:
        assert stat_fields(run(ros.stat(fd))) == stat_fields(os.stat(fd))
        assert stat_fields(run(ros.stat("link", dir_fd=dir_fd))) == stat_fields(os.stat("link", dir_fd=dir_fd))
        assert stat_fields(run(ros.lstat("link", dir_fd=dir_fd))) == stat_fields(os.lstat("link", dir_fd=dir_fd))
    finally:
        os.close(fd)
        os.close(dir_fd)
    bad_fd = 999_999
    same_error(outcome(lambda: run(ros.stat(bad_fd)))[1], outcome(lambda: os.stat(bad_fd))[1])


@pytest.mark.parametrize("call", [
    lambda m: m.stat(3.5), lambda m: m.stat(None), lambda m: m.stat("a\0b"), lambda m: m.stat(b"a\0b"),
    lambda m: m.lstat(3), lambda m: m.stat(3, follow_symlinks=False), lambda m: m.stat("\udc80\ud800"),
], ids=["float", "None", "nul", "bytes-nul", "lstat-fd", "fd-nofollow", "surrogates"])
def test_stat_bad_arguments_like_os(ros, run, call):
    want = outcome(lambda: call(os))[1]
    got = outcome(lambda: run(call(ros)))[1]
    assert want is not None
    assert type(got) is type(want)
    assert str(got) == str(want)


# --------------------------------------------------------------------------
# rename, replace, remove/unlink, mkdir, rmdir, link, symlink
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", ["rename", "replace"])
@pytest.mark.parametrize("src, dst", [
    ("file", "new"), ("file", "dir/new"), ("file", "link"), ("missing", "new"), ("file", "nodir/new"),
    ("dir", "file"), ("file", "dir"), ("dir", "dir2"),
])
def test_rename_and_replace_like_os(ros, run, tmp_path, func, src, dst):
    for kind in (str, os.fsencode, pathlib.Path):
        error = like_os_in_fresh_trees(run, tmp_path / "t", build_tree,
                                       lambda r: getattr(os, func)(kind(str(r / src)), kind(str(r / dst))),
                                       lambda r: getattr(ros, func)(kind(str(r / src)), kind(str(r / dst))))
        assert error is None or error.filename2 is not None


@pytest.mark.parametrize("func", ["rename", "replace", "link"])
@pytest.mark.parametrize("src", ["file/x", "missing/x", "missing", "file"])
def test_an_empty_second_path_like_os(ros, run, tree, func, src):
    """io_uring takes in both paths before it looks either up, and refuses
    "" there: the first path's own error (ENOTDIR for file/x) comes first,
    as rename(2) and link(2) give it."""
    for kind in (str, os.fsencode):
        error = check_like_os(run, lambda: getattr(ros, func)(kind(str(tree / src)), kind("")),
                              lambda: getattr(os, func)(kind(str(tree / src)), kind("")))
        assert isinstance(error, NotADirectoryError if src == "file/x" else FileNotFoundError), error


@pytest.mark.parametrize("func", ["remove", "unlink", "rmdir"])
@pytest.mark.parametrize("name", ["file", "dir", "emptydir", "link", "dirlink", "missing", "file/x"])
def test_remove_unlink_rmdir_like_os(ros, run, tmp_path, func, name):
    for kind in (str, os.fsencode):
        like_os_in_fresh_trees(run, tmp_path / "t", build_tree, lambda r: getattr(os, func)(kind(str(r / name))),
                               lambda r: getattr(ros, func)(kind(str(r / name))))


@pytest.mark.parametrize("name", ["new", "file", "dir", "missing/new", "file/new"])
def test_mkdir_like_os(ros, run, tree, name):
    for mode in (0o777, 0o700):
        for path in path_variants(tree / name):
            result = check_like_os(run, lambda: ros.mkdir(path, mode), lambda: os.mkdir(path, mode),
                                   undo=lambda: os.rmdir(path))
            if result is None:
                assert stat.S_IMODE(os.stat(path).st_mode) == mode & ~_umask()
                os.rmdir(path)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_mkdir_bad_mode_like_os(ros, run, tmp_path):
    for mode in ("x", 1.5, 2**64):
        want = outcome(lambda: os.mkdir(tmp_path / "m", mode))[1]
        got = outcome(lambda: run(ros.mkdir(tmp_path / "m", mode)))[1]
        assert want is not None and type(got) is type(want)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("name, exist_ok", [
    ("a/b/c", False), ("a/b/c", True), ("dir", False), ("dir", True), ("file", True), ("file/x/y", True),
    ("a/./b/", False), ("link/x", False),
])
def test_makedirs_like_os(ros, run, tmp_path, name, exist_ok):
    for kind in (str, os.fsencode):
        like_os_in_fresh_trees(run, tmp_path / "t", build_tree,
                               lambda r: os.makedirs(kind(os.path.join(str(r), name)), 0o755, exist_ok),
                               lambda r: ros.makedirs(kind(os.path.join(str(r), name)), 0o755, exist_ok))


@pytest.mark.parametrize("follow", [True, False])
def test_link_and_symlink_like_os(ros, run, tree, follow):
    for src, dst in [("file", "hard"), ("link", "hard2"), ("missing", "hard3"), ("file", "file")]:
        check_like_os(run, lambda: ros.link(tree / src, tree / dst, follow_symlinks=follow),
                      lambda: os.link(tree / src, tree / dst, follow_symlinks=follow),
                      undo=lambda: os.unlink(tree / dst))
    run(ros.link(tree / "link", tree / "hardlink", follow_symlinks=follow))
    assert os.path.islink(tree / "hardlink") is not follow
    for target, dst in [("file", "sym"), ("anything at all", "sym2"), (b"file", b"sym3"), ("file", "dir")]:
        dst_path = os.path.join(os.fsencode(str(tree)), dst) if isinstance(dst, bytes) else tree / dst
        check_like_os(run, lambda: ros.symlink(target, dst_path), lambda: os.symlink(target, dst_path),
                      undo=lambda: os.unlink(dst_path))
    run(ros.symlink("file", tree / "made"))
    assert os.readlink(tree / "made") == "file"


def test_path_operations_with_dir_fd_like_os(ros, run, tree):
    dir_fd = os.open(tree, os.O_RDONLY)
    try:
        run(ros.mkdir("sub", dir_fd=dir_fd))
        run(ros.rename("sub", "sub2", src_dir_fd=dir_fd, dst_dir_fd=dir_fd))
        run(ros.symlink("file", "s", dir_fd=dir_fd))
        run(ros.link("file", "h", src_dir_fd=dir_fd, dst_dir_fd=dir_fd))
        names = sorted(os.listdir(tree))
        run(ros.unlink("s", dir_fd=dir_fd))
        run(ros.remove("h", dir_fd=dir_fd))
        run(ros.rmdir("sub2", dir_fd=dir_fd))
        with pytest.raises(FileNotFoundError):
            run(ros.rmdir("sub2", dir_fd=dir_fd))
    finally:
        os.close(dir_fd)
    assert {"sub2", "s", "h"} <= set(names)
    assert not {"sub2", "s", "h"} & set(os.listdir(tree))


# --------------------------------------------------------------------------
# readlink, listdir, scandir, access (the executor)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["link", "broken", "file", "missing"])
def test_readlink_like_os(ros, run, tree, name):
    for path in path_variants(tree / name):
        result = check_like_os(run, lambda: ros.readlink(path), lambda: os.readlink(path))
        if not isinstance(result, Exception):
            assert type(result) is (bytes if isinstance(path, bytes) else str)


@pytest.mark.parametrize("name", ["", "dir", "file", "missing"])
def test_listdir_like_os(ros, run, tree, name):
    for path in path_variants(tree / name):
        result = check_like_os(run, lambda: ros.listdir(path), lambda: os.listdir(path))
        if isinstance(result, list):
            assert result and all(type(n) is (bytes if isinstance(path, bytes) else str) for n in result)


def test_listdir_default_and_descriptor(ros, run, tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert sorted(run(ros.listdir())) == sorted(os.listdir())
    fd = os.open(tree / "dir", os.O_RDONLY)
    try:
        assert run(ros.listdir(fd)) == ["inner"]
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", [str, os.fsencode])
def test_scandir_like_os(ros, run, tree, kind):
    async def main():
        with await ros.scandir(kind(str(tree))) as entries:
            first = next(entries)
            rest = list(entries)
        return [first] + rest

    got = run(main())
    with os.scandir(kind(str(tree))) as it:
        want = list(it)
    summary = lambda es: sorted((e.name, e.path, e.is_dir(), e.is_file(), e.is_symlink()) for e in es)  # noqa: E731
    assert summary(got) == summary(want)
    assert all(type(e) is os.DirEntry for e in got)
    same_error(outcome(lambda: run(ros.scandir(tree / "missing")))[1],
               outcome(lambda: os.scandir(tree / "missing"))[1])


@pytest.mark.parametrize("name", ["file", "dir", "broken", "missing"])
@pytest.mark.parametrize("mode", [os.F_OK, os.R_OK, os.W_OK | os.X_OK])
def test_access_like_os(ros, run, tree, name, mode):
    check_like_os(run, lambda: ros.access(tree / name, mode), lambda: os.access(tree / name, mode))


def test_rarer_aiofiles_functions(ros, run, tree):
    run(ros.makedirs(tree / "r" / "s" / "t"))
    run(ros.renames(tree / "r" / "s" / "t", tree / "u" / "v"))
    assert os.path.isdir(tree / "u" / "v") and not os.path.exists(tree / "r")
    run(ros.removedirs(tree / "u" / "v"))
    assert not os.path.exists(tree / "u")
    assert run(ros.statvfs(tree)).f_bsize == os.statvfs(tree).f_bsize
    assert run(ros.getcwd()) == os.getcwd()


# --------------------------------------------------------------------------
# ringlet.os.path
# --------------------------------------------------------------------------

PATH_FUNCS = ["exists", "lexists", "isfile", "isdir", "islink", "getsize", "getmtime", "getctime"]


@pytest.mark.parametrize("func", PATH_FUNCS)
@pytest.mark.parametrize("name", ["file", "dir", "link", "dirlink", "broken", "missing", "file/x", "bad\0name"])
def test_path_functions_like_os_path(ros, run, tree, func, name):
    for path in path_variants(str(tree / "x")[:-1] + name):
        check_like_os(run, lambda: getattr(ros.path, func)(path), lambda: getattr(os.path, func)(path))


def test_path_functions_on_descriptors_and_pairs(ros, run, tree):
    fd = os.open(tree / "file", os.O_RDONLY)
    fd2 = os.open(tree / "link", os.O_RDONLY)
    try:
        assert run(ros.path.exists(fd)) is os.path.exists(fd) is True
        assert run(ros.path.getsize(fd)) == 5
        assert run(ros.path.sameopenfile(fd, fd2)) is True
        assert run(ros.path.samefile(tree / "file", tree / "link")) is True
        assert run(ros.path.samefile(tree / "file", tree / "dir")) is False
        assert run(ros.path.ismount("/")) is True and run(ros.path.ismount(tree)) is False
        assert run(ros.path.abspath("x")) == os.path.abspath("x")
        assert run(ros.path.getatime(tree / "file")) == pytest.approx(os.path.getatime(tree / "file"), abs=1)
    finally:
        os.close(fd)
        os.close(fd2)
    with pytest.raises(TypeError):
        os.path.exists(None)
    with pytest.raises(TypeError):
        run(ros.path.exists(None))


# --------------------------------------------------------------------------
# which way the calls go
# --------------------------------------------------------------------------


def test_ring_operations_use_no_thread(ringlet, ros, run, require_io_uring, tmp_path):
    async def main():
        engine = ringlet.get_engine()
        if not all(engine.supports(op) for op in (STATX, RENAMEAT, UNLINKAT, MKDIRAT, SYMLINKAT, LINKAT)):
            pytest.skip("this kernel lacks some of the path opcodes")
        before_threads = set(threading.enumerate())  # an earlier test's thread may end: none may start
        before = engine.stats()["submitted"]
        d = tmp_path / "d"
        await ros.mkdir(d)
        await ros.makedirs(d / "a" / "b")
        (d / "f").write_bytes(b"abc")
        await ros.rename(d / "f", d / "g")
        await ros.replace(d / "g", d / "h")
        await ros.link(d / "h", d / "i")
        await ros.symlink("h", d / "j")
        sizes = [await ros.path.getsize(d / "j"), (await ros.lstat(d / "j")).st_size]
        flags = [await ros.path.exists(d / "h"), await ros.path.isdir(d / "a"), await ros.path.islink(d / "j")]
        for name in ("h", "i", "j"):
            await ros.remove(d / name)
        await ros.rmdir(d / "a" / "b")
        return sizes, flags, engine.stats()["submitted"] - before, set(threading.enumerate()) - before_threads

    sizes, flags, submitted, new_threads = run(main())
    assert sizes == [3, 1] and flags == [True, True, True]
    assert submitted >= 14  # each call above is at least one io_uring operation
    assert not new_threads, new_threads


def test_fallbacks_run_in_the_default_executor(ringlet, ros, run, tree):
    seen = []

    class Recording(__import__("concurrent.futures").futures.ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            seen.append(getattr(fn, "func", fn).__name__)
            return super().submit(fn, *args, **kwargs)

    async def main():
        executor = Recording(1)
        asyncio.get_running_loop().set_default_executor(executor)
        names = await ros.listdir(tree)
        target = await ros.readlink(tree / "link")
        ok = await ros.access(tree / "file", os.R_OK)
        return sorted(names), target, ok

    assert run(main()) == (sorted(os.listdir(tree)), "file", True)
    assert seen == ["listdir", "readlink", "access"]


# --------------------------------------------------------------------------
# a script written for aiofiles, with only its import changed
# --------------------------------------------------------------------------

AIOFILES_SCRIPT = textwrap.dedent('''
    import asyncio
    import sys

    import aiofiles
    import aiofiles.os

    async def main(d):
        path = d + "/notes.txt"
        async with aiofiles.open(path, mode="w") as f:
            await f.write("first line\\n")
            await f.write("second line\\n")
            await f.writelines(["third\\n", "fourth\\n"])
        async with aiofiles.open(path, mode="r") as f:
            contents = await f.read()
        print(repr(contents))
        async with aiofiles.open(path) as f:
            print(repr(await f.readline()))
            position = await f.tell()
            print(position)
            print([line async for line in f])
            await f.seek(position)
            print(repr(await f.read(6)))
        async with aiofiles.open(path, "rb") as f:
            print(await f.read(5), await f.readlines())
        async with aiofiles.open(path, "a") as f:
            await f.write("appended\\n")
            await f.flush()
        stat = await aiofiles.os.stat(path)
        print(stat.st_size)
        print(await aiofiles.os.path.exists(path), await aiofiles.os.path.isfile(path),
              await aiofiles.os.path.isdir(d), await aiofiles.os.path.getsize(path))
        await aiofiles.os.rename(path, d + "/renamed.txt")
        print(await aiofiles.os.path.exists(path), sorted(await aiofiles.os.listdir(d)))
        await aiofiles.os.mkdir(d + "/sub")
        await aiofiles.os.rmdir(d + "/sub")
        await aiofiles.os.remove(d + "/renamed.txt")
        print(await aiofiles.os.path.exists(d + "/renamed.txt"), await aiofiles.os.listdir(d))

    asyncio.run(main(sys.argv[1]))
''')

AIOFILES_OUTPUT = textwrap.dedent('''\
    'first line\\nsecond line\\nthird\\nfourth\\n'
    'first line\\n'
    11
    ['second line\\n', 'third\\n', 'fourth\\n']
    'second'
    b'first' [b' line\\n', b'second line\\n', b'third\\n', b'fourth\\n']
    45
    True True True 45
    False ['renamed.txt']
    False []
''')


def _run_script(script, directory):
    env = child_env()
    return subprocess.run([sys.executable, "-c", script, str(directory)], capture_output=True, text=True,
                          env=env, timeout=60)


def test_aiofiles_script_runs_with_only_the_import_changed(tmp_path):
    script = AIOFILES_SCRIPT.replace("import aiofiles\nimport aiofiles.os\n",
                                     "import ringlet as aiofiles\nimport ringlet.os\n")
    assert script.count("import") == AIOFILES_SCRIPT.count("import")  # only the import lines differ
    assert script != AIOFILES_SCRIPT
    done = _run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == AIOFILES_OUTPUT
    assert os.listdir(tmp_path) == []


def test_aiofiles_script_output_is_aiofiles_own(tmp_path):
    """The expected output above is what aiofiles itself prints (when installed)."""
    pytest.importorskip("aiofiles")
    done = _run_script(AIOFILES_SCRIPT, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == AIOFILES_OUTPUT
