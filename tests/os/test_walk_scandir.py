"""ringlet.os.walk and ringlet.os.scandir against os.walk and os.scandir."""

import asyncio
import os
import threading

import pytest


@pytest.fixture
def ros(ringlet):
    return ringlet.os


@pytest.fixture
def tree(tmp_path):
    """top/{a/{x, deep/{y}}, b/, f1, f2, link_to_a -> a, broken -> nowhere}."""
    top = tmp_path / "top"
    (top / "a" / "deep").mkdir(parents=True)
    (top / "b").mkdir()
    for p in ("f1", "f2", "a/x", "a/deep/y"):
        (top / p).write_bytes(p.encode())
    os.symlink(top / "a", top / "link_to_a")
    os.symlink(top / "nowhere", top / "broken")
    return top


def _sorted_walk(steps):
    return sorted((d, sorted(ds), sorted(fs)) for d, ds, fs in steps)


async def _collect(agen):
    return [step async for step in agen]


@pytest.mark.parametrize("topdown", [True, False])
@pytest.mark.parametrize("followlinks", [False, True])
@pytest.mark.parametrize("kind", [str, os.fsencode])
def test_walk_like_os(ros, run, tree, topdown, followlinks, kind):
    top = kind(str(tree))
    got = run(_collect(ros.walk(top, topdown=topdown, followlinks=followlinks)))
    want = list(os.walk(top, topdown=topdown, followlinks=followlinks))
    assert _sorted_walk(got) == _sorted_walk(want)
    assert len(got) == (6 if followlinks else 4)  # link_to_a and link_to_a/deep when followed
    # Order: a directory before its children top-down, after them bottom-up, as os.walk.
    index = {d: i for i, (d, _, _) in enumerate(got)}
    child = os.path.join(top, kind("a"))
    assert (index[top] < index[child]) == topdown


def test_walk_top_down_pruning(ros, run, tree):
    async def main():
        seen = []
        async for dirpath, dirnames, _ in ros.walk(tree):
            seen.append(dirpath)
            dirnames[:] = [d for d in dirnames if d != "a"]
        return seen

    want = []
    for dirpath, dirnames, _ in os.walk(tree):
        want.append(dirpath)
        dirnames[:] = [d for d in dirnames if d != "a"]
    assert sorted(run(main())) == sorted(want) == sorted([str(tree), str(tree / "b")])


def test_walk_onerror(ros, run, tmp_path):
    missing = tmp_path / "missing"
    got, want = [], []
    assert run(_collect(ros.walk(missing, onerror=got.append))) == []
    assert list(os.walk(missing, onerror=want.append)) == []
    assert [(type(e), e.errno, e.filename) for e in got] == [(type(e), e.errno, e.filename) for e in want]
    assert len(got) == 1
    # Without onerror the error is ignored, as os.walk does.
    assert run(_collect(ros.walk(missing))) == []


def test_walk_of_a_file_yields_nothing(ros, run, tree):
    assert run(_collect(ros.walk(tree / "f1"))) == list(os.walk(tree / "f1")) == []


def _summary(entries):
    return sorted((e.name, e.path, e.is_dir(), e.is_file(), e.is_symlink()) for e in entries)


@pytest.mark.parametrize("count", [0, 1, 255, 256, 257, 600])
def test_scandir_async_for_like_os(ros, run, tmp_path, count):
    for i in range(count):
        (tmp_path / f"n{i:04d}").write_bytes(b"")

    async def main():
        return [entry async for entry in ros.scandir(tmp_path)]

    got = run(main())
    with os.scandir(tmp_path) as it:
        want = list(it)
    assert len(got) == count
    assert _summary(got) == _summary(want)
    assert all(type(e) is os.DirEntry for e in got)


@pytest.mark.parametrize("kind", [str, os.fsencode])
def test_scandir_async_for_tree_and_bytes(ros, run, tree, kind):
    async def main():
        async with ros.scandir(kind(str(tree))) as it:
            return [entry async for entry in it]

    with os.scandir(kind(str(tree))) as it:
        want = list(it)
    assert _summary(run(main())) == _summary(want)


def test_scandir_default_is_the_current_directory(ros, run, tree, monkeypatch):
    monkeypatch.chdir(tree)

    async def main():
        return [e async for e in ros.scandir()], list(await ros.scandir())

    streamed, whole = run(main())
    with os.scandir() as it:
        want = _summary(it)
    assert _summary(streamed) == _summary(whole) == want


def test_scandir_error_on_first_step(ros, run, tmp_path):
    async def main():
        async for _ in ros.scandir(tmp_path / "missing"):
            pass

    with pytest.raises(FileNotFoundError) as got:
        run(main())
    with pytest.raises(FileNotFoundError) as want:
        os.scandir(tmp_path / "missing")
    assert (got.value.errno, got.value.filename) == (want.value.errno, want.value.filename)


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_scandir_closed_early_leaves_no_descriptor(ros, run, tmp_path):
    for i in range(600):
        (tmp_path / f"n{i:04d}").write_bytes(b"")

    async def main():
        before = _open_fds()
        names = []
        async with ros.scandir(tmp_path) as it:
            async for entry in it:
                names.append(entry.name)
                if len(names) == 300:
                    break
            during = _open_fds()
        return before, during, _open_fds(), names

    before, during, after, names = run(main())
    assert during == before + 1  # the directory is open while iterating
    assert after == before
    assert len(names) == 300 and len(set(names)) == 300


def test_scandir_reads_the_directory_off_the_loop_thread(ros, run, tmp_path, monkeypatch):
    for i in range(600):
        (tmp_path / f"n{i:04d}").write_bytes(b"")
    threads = []
    real_scandir = os.scandir

    class Recording:
        def __init__(self, it):
            self.it = it

        def __iter__(self):
            return self

        def __next__(self):
            threads.append(threading.get_ident())
            return next(self.it)

        def close(self):
            self.it.close()

    def recording_scandir(path):
        threads.append(threading.get_ident())
        return Recording(real_scandir(path))

    monkeypatch.setattr(os, "scandir", recording_scandir)

    async def main():
        return [e async for e in ros.scandir(tmp_path)]

    assert len(run(main())) == 600
    assert len(threads) == 1 + 600 + 1  # the open, each entry, the end
    assert threading.get_ident() not in threads


def test_scandir_one_reader_at_a_time(ros, run, tmp_path):
    for i in range(10):
        (tmp_path / f"n{i}").write_bytes(b"")

    async def main():
        it = ros.scandir(tmp_path)
        first = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0)  # the first task is now reading a batch in the executor
        with pytest.raises(RuntimeError):
            await it.__anext__()
        names = [(await first).name] + [e.name async for e in it]
        return sorted(names)

    assert run(main()) == sorted(os.listdir(tmp_path))
