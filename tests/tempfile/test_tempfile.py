"""ringlet.tempfile against the tempfile module (aiofiles.tempfile's API)."""

import io
import os
import tempfile

import pytest


@pytest.fixture
def rtf(ringlet):
    import ringlet.tempfile

    return ringlet.tempfile


def test_temporary_file_binary(rtf, ringlet, run, tmp_path):
    async def main():
        async with rtf.TemporaryFile("wb+", dir=tmp_path) as f:
            assert isinstance(f, ringlet.AsyncFile)
            assert isinstance(f.name, int)  # its descriptor, as tempfile.TemporaryFile
            assert os.listdir(tmp_path) == []  # no name in the file system
            await f.write(b"hello world")
            await f.seek(6)
            tail = await f.read()
            await f.seek(0)
            whole = await f.read()
        return f.closed, tail, whole

    with tempfile.TemporaryFile("wb+", dir=tmp_path) as g:
        g.write(b"hello world")
        g.seek(6)
        want_tail = g.read()
        g.seek(0)
        want_whole = g.read()
    closed, tail, whole = run(main())
    assert closed and (tail, whole) == (want_tail, want_whole) == (b"world", b"hello world")
    assert os.listdir(tmp_path) == []


def test_temporary_file_text_awaited(rtf, ringlet, run, tmp_path):
    async def main():
        f = await rtf.TemporaryFile("w+", encoding="utf-8", newline=None, dir=tmp_path)
        try:
            assert isinstance(f, ringlet.AsyncTextFile)
            await f.write("é\nline two\r\nthree")
            await f.seek(0)
            return [line async for line in f]
        finally:
            await f.close()

    with tempfile.TemporaryFile("w+", encoding="utf-8", newline=None, dir=tmp_path) as g:
        g.write("é\nline two\r\nthree")
        g.seek(0)
        want = list(g)
    assert run(main()) == want


def test_named_temporary_file(rtf, ringlet, run, tmp_path):
    async def main():
        async with rtf.NamedTemporaryFile(dir=tmp_path, prefix="pre-", suffix=".suf") as f:
            assert isinstance(f.file, ringlet.AsyncFile)  # reads and writes go through ringlet
            name = f.name
            assert os.path.dirname(name) == str(tmp_path)
            assert os.path.basename(name).startswith("pre-") and name.endswith(".suf")
            assert f.delete is True
            await f.write(b"data")
            await f.flush()
            with open(name, "rb") as other:  # visible by its name
                seen = other.read()
        return name, seen

    name, seen = run(main())
    assert seen == b"data"
    assert not os.path.exists(name)


def test_named_temporary_file_delete_false_and_close(rtf, run, tmp_path):
    async def main():
        async with rtf.NamedTemporaryFile("w+", encoding="utf-8", dir=tmp_path, delete=False) as f:
            await f.write("kept")
        f2 = await rtf.NamedTemporaryFile(dir=tmp_path)
        exists_before = os.path.exists(f2.name)
        await f2.close()  # delete and delete_on_close: removed on close
        return f.name, exists_before, f2.name

    kept, before, removed = run(main())
    with open(kept, encoding="utf-8") as g:
        assert g.read() == "kept"
    assert before and not os.path.exists(removed)


def test_named_temporary_file_delete_on_close_false(rtf, run, tmp_path):
    async def main():
        async with rtf.NamedTemporaryFile(dir=tmp_path, delete_on_close=False) as f:
            await f.write(b"x")
            await f.close()
            after_close = os.path.exists(f.name)
        return after_close, os.path.exists(f.name)

    assert run(main()) == (True, False)  # closed: still there; end of the block: gone


def test_named_temporary_file_async_iteration(rtf, run, tmp_path):
    async def main():
        async with rtf.NamedTemporaryFile("w+", encoding="utf-8", dir=tmp_path) as f:
            await f.write("a\nb\n")
            await f.seek(0)
            return [line async for line in f]

    assert run(main()) == ["a\n", "b\n"]


@pytest.mark.parametrize("maker", ["TemporaryFile", "NamedTemporaryFile"])
def test_bad_mode_leaves_nothing(rtf, run, tmp_path, maker):
    with pytest.raises(ValueError) as got:
        run(getattr(rtf, maker)("wz", dir=tmp_path))
    with pytest.raises(ValueError) as want:
        getattr(tempfile, maker)("wz", dir=tmp_path)
    assert type(got.value) is type(want.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("maker", ["TemporaryFile", "NamedTemporaryFile"])
@pytest.mark.parametrize("kw", [dict(mode="wz"), dict(newline="\n"), dict(buffering="1"), dict(mode="rt+b")])
def test_bad_arguments_are_refused_before_the_directory_is_looked_at(rtf, run, tmp_path, maker, kw):
    """As the tempfile module opens with them before it makes the file: a bad
    argument's error, not the missing directory's (nothing is made).  (A text
    mode's encoding and buffering=0 are refused before the directory too, as
    ringlet.open refuses them before the open: docs/text-mode.md.)"""
    missing = tmp_path / "missing"
    with pytest.raises(Exception) as want:
        getattr(tempfile, maker)(dir=missing, **kw)
    with pytest.raises(Exception) as got:
        run(getattr(rtf, maker)(dir=missing, **kw))
    assert not isinstance(want.value, OSError)
    assert (type(got.value), str(got.value)) == (type(want.value), str(want.value))


def _outcome(call):
    """What a maker gives: ("made",), or the error (an OSError by type and
    errno: its message holds a random name)."""
    try:
        call()
    except OSError as exc:
        return type(exc), exc.errno
    except Exception as exc:  # noqa: BLE001 - compared with tempfile's
        return type(exc), str(exc)
    return ("made",)


@pytest.mark.parametrize("maker", ["TemporaryFile", "NamedTemporaryFile"])
@pytest.mark.parametrize("kw", [
    dict(prefix="a/b"), dict(suffix="/x"), dict(mode=3), dict(mode=None, prefix=b"p"), dict(prefix=b"p"),
    dict(suffix=3, mode="zz"), dict(mode="rb", prefix=3),
], ids=["prefix-with-slash", "suffix-with-slash", "mode-int", "mode-none-and-bytes-prefix", "bytes-prefix-str-dir",
        "int-suffix-then-mode", "int-prefix"])
def test_arguments_like_tempfile(rtf, run, tmp_path, maker, kw):
    """tempfile's order: TemporaryFile looks at the mode ("b" in it) before
    suffix, prefix and dir, NamedTemporaryFile after; then open()'s checks;
    then the file.  On Linux TemporaryFile makes it with O_TMPFILE, which
    uses no name: a prefix or suffix with a slash works there (and a bad
    one's TypeError never comes), where NamedTemporaryFile's mkstemp fails."""
    def made_by(module):
        def make():
            f = getattr(module, maker)(dir=str(tmp_path), **kw)
            if module is rtf:
                run(run_and_close(f))
            else:
                f.close()
        return make

    async def run_and_close(f):
        await (await f).close()

    assert _outcome(made_by(rtf)) == _outcome(made_by(tempfile))
    assert os.listdir(tmp_path) == []


def test_temporary_file_needs_no_thread(rtf, run, tmp_path):
    """O_TMPFILE's open goes through the engine: the executor is never asked."""
    class NoThreads:
        def submit(self, *args, **kwargs):
            raise AssertionError("the executor was used")

    async def main():
        async with rtf.TemporaryFile("w+b", dir=tmp_path, executor=NoThreads()) as f:
            await f.write(b"data")
            await f.seek(0)
            return await f.read(), os.listdir(tmp_path)

    assert run(main()) == (b"data", [])


@pytest.mark.parametrize("mode,data", [("rb", b"ab"), ("r", "ab")])
def test_spooled_rollover_in_a_read_only_mode_like_tempfile(rtf, run, tmp_path, mode, data):
    """tempfile's rollover writes the content through the new file, in the
    caller's mode: a read-only mode raises there, as here."""
    with tempfile.SpooledTemporaryFile(1, mode, dir=tmp_path) as f:
        with pytest.raises(io.UnsupportedOperation) as want:
            f.write(data)

    async def main():
        f = await rtf.SpooledTemporaryFile(1, mode, dir=tmp_path)
        try:
            await f.write(data)
        finally:
            await f.close()

    with pytest.raises(io.UnsupportedOperation) as got:
        run(main())
    assert str(got.value) == str(want.value)
    assert os.listdir(tmp_path) == []


def test_missing_dir_error_is_tempfiles(rtf, run, tmp_path):
    missing = tmp_path / "missing"
    for maker in ("TemporaryFile", "NamedTemporaryFile"):
        with pytest.raises(FileNotFoundError) as got:
            run(getattr(rtf, maker)(dir=missing))
        with pytest.raises(FileNotFoundError) as want:
            getattr(tempfile, maker)(dir=missing)
        assert got.value.errno == want.value.errno


@pytest.mark.parametrize("mode,chunks", [("w+b", [b"12345", b"6789012345", b"end"]),
                                         ("w+", ["12345", "6789012345", "end"])])
def test_spooled_like_tempfile(rtf, run, tmp_path, mode, chunks):
    kw = {} if "b" in mode else {"encoding": "utf-8"}

    async def main():
        seen = []
        async with rtf.SpooledTemporaryFile(max_size=10, mode=mode, dir=tmp_path, **kw) as f:
            for chunk in chunks:
                await f.write(chunk)
                seen.append((await f.tell(), f._rolled, os.listdir(tmp_path)))
            await f.seek(3)
            seen.append(await f.read(4))
            await f.seek(0)
            seen.append(await f.read())
            seen.append(isinstance(await f.fileno(), int))
        seen.append(f.closed)
        return seen

    want = []
    with tempfile.SpooledTemporaryFile(max_size=10, mode=mode, dir=tmp_path, **kw) as g:
        for chunk in chunks:
            g.write(chunk)
            want.append((g.tell(), g._rolled, os.listdir(tmp_path)))
        g.seek(3)
        want.append(g.read(4))
        g.seek(0)
        want.append(g.read())
        want.append(isinstance(g.fileno(), int))
    want.append(g.closed)
    assert run(main()) == want
    assert [rolled for _, rolled, _ in want[:3]] == [False, True, True]


def test_spooled_stays_in_memory_and_rolls_over_on_request(rtf, run, tmp_path):
    async def main():
        f = await rtf.SpooledTemporaryFile(dir=tmp_path)  # max_size 0: no limit
        await f.writelines([b"a\n", b"b\n"])
        in_memory = not f._rolled
        await f.rollover()
        await f.seek(0)
        lines = await f.readlines()
        await f.close()
        return in_memory, f._rolled, lines

    assert run(main()) == (True, True, [b"a\n", b"b\n"])


def test_temporary_directory(rtf, run, tmp_path):
    async def main():
        async with rtf.TemporaryDirectory(prefix="d-", dir=tmp_path) as name:
            assert isinstance(name, str) and os.path.isdir(name)
            assert os.path.basename(name).startswith("d-")
            os.makedirs(os.path.join(name, "sub", "deeper"))
            with open(os.path.join(name, "sub", "file"), "wb") as g:
                g.write(b"x")
        gone = not os.path.exists(name)
        d = await rtf.TemporaryDirectory(dir=tmp_path)
        there = os.path.isdir(d.name)
        await d.cleanup()
        return gone, there, os.path.exists(d.name)

    assert run(main()) == (True, True, False)
    assert os.listdir(tmp_path) == []


def test_temporary_directory_delete_false(rtf, run, tmp_path):
    async def main():
        async with rtf.TemporaryDirectory(dir=tmp_path, delete=False) as name:
            pass
        return name

    assert os.path.isdir(run(main()))


def test_temporary_directory_missing_dir(rtf, run, tmp_path):
    with pytest.raises(FileNotFoundError) as got:
        run(rtf.TemporaryDirectory(dir=tmp_path / "missing"))
    with pytest.raises(FileNotFoundError) as want:
        tempfile.TemporaryDirectory(dir=tmp_path / "missing")
    assert got.value.errno == want.value.errno



@pytest.mark.parametrize("max_size,size", [(0, None), (0, 3), (10, 5), (10, 11)])
def test_spooled_truncate_like_tempfile(rtf, run, tmp_path, max_size, size):
    async def main():
        async with rtf.SpooledTemporaryFile(max_size=max_size, dir=tmp_path) as f:
            await f.write(b"abcdefgh")
            await f.seek(2)
            await f.truncate(size)
            await f.seek(0)
            return f._rolled, await f.read()

    with tempfile.SpooledTemporaryFile(max_size=max_size, dir=tmp_path) as g:
        g.write(b"abcdefgh")
        g.seek(2)
        g.truncate(size)
        g.seek(0)
        want = (g._rolled, g.read())
    assert run(main()) == want
