"""write_file as one operation on io_uring (csrc/py/writefile.c): the open's
completion issues the write, the write's the close, and Python is resumed
once.  The thread backend has no such operation (Engine._write_file is None):
write_file opens, writes and closes in turn.  Either way: the same results and
the same errors as built-in open()/write()/close()."""

import asyncio
import os

import pytest

from conftest import fd_count


def builtin_write_error(path):
    try:
        with open(path, "wb") as f:
            f.write(b"x")
    except OSError as exc:
        return exc
    return None


def test_one_chain_on_io_uring_none_on_threads(ringlet, run, tmp_path, backend):
    path = tmp_path / "out.bin"
    data = os.urandom(100_000)
    records = []

    async def main():
        engine = ringlet.get_engine()
        before = engine.stats()
        chained = engine._write_file(os.fsencode(path), data, str(path))
        if chained is None:
            return None, None
        engine.tracer = records.append
        n = await chained  # this one was made before the tracer: untraced
        n2 = await ringlet.write_file(path, data[::-1])
        engine.tracer = None
        after = engine.stats()
        return (n, n2), {k: after[k] - before[k] for k in ("submitted", "completed", "in_flight")}

    counts, delta = run(main())
    if backend == "threads":
        assert counts is None  # opened, written and closed in turn
        return
    assert counts == (len(data), len(data))
    assert path.read_bytes() == data[::-1]
    # Two write_files: each an open, a write and a close in the kernel, and nothing left in flight.
    assert delta == {"submitted": 6, "completed": 6, "in_flight": 0}
    assert [r["op"] for r in records] == ["write_file"]
    assert records[0]["result"] == len(data)


@pytest.mark.parametrize("size", [0, 1, 65536, 3 * 1024 * 1024 + 5])
def test_sizes_and_truncation(ringlet, run, tmp_path, size):
    path = tmp_path / "t.bin"
    path.write_bytes(os.urandom(4 * 1024 * 1024))  # longer than any: truncated first
    data = os.urandom(size)
    assert run(ringlet.write_file(path, data)) == size
    assert path.read_bytes() == data


def test_many_one_after_another_and_at_once(ringlet, run, tmp_path):
    items = [(tmp_path / f"f{i}", os.urandom(1000 + i)) for i in range(200)]
    fds = fd_count()

    async def main():
        for p, d in items[:100]:
            assert await ringlet.write_file(p, d) == len(d)
        got = await asyncio.gather(*(ringlet.write_file(p, d) for p, d in items))
        return got, ringlet.get_engine().stats()["in_flight"]

    got, in_flight = run(main())
    assert got == [len(d) for _, d in items]
    assert in_flight == 0
    assert all(p.read_bytes() == d for p, d in items)
    assert fd_count() == fds


@pytest.mark.parametrize("case", ["missing_dir", "directory", "proc_file", "dir_is_file"])
def test_open_errors_are_builtins(ringlet, run, tmp_path, case):
    (tmp_path / "file").write_bytes(b"")
    path = {"missing_dir": str(tmp_path / "nope" / "x"), "directory": str(tmp_path),
            "proc_file": "/proc/version", "dir_is_file": str(tmp_path / "file" / "x")}[case]
    ref = builtin_write_error(path)
    assert ref is not None, "built-in open() did not fail: bad test input"
    fds = fd_count()

    async def main():
        with pytest.raises(OSError) as info:
            await ringlet.write_file(path, b"data")
        return info.value, ringlet.get_engine().stats()["in_flight"]

    got, in_flight = run(main())
    assert (type(got), got.errno, got.strerror, got.filename) == (type(ref), ref.errno, ref.strerror, ref.filename)
    assert in_flight == 0
    assert fd_count() == fds


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_write_error_names_no_file_and_closes(ringlet, run):
    async def main():
        errors = []
        ringlet.get_engine()  # its own descriptors are made before the count
        fds = fd_count()
        for _ in range(70):  # a failed write closes its file too
            with pytest.raises(OSError) as info:
                await ringlet.write_file("/dev/full", b"x" * 10)
            errors.append((info.value.errno, info.value.filename))
        left_open = fd_count() - fds
        n = await ringlet.write_file("/dev/null", b"y" * 10)
        return set(errors), n, ringlet.get_engine().stats()["in_flight"], left_open

    errors, n, in_flight, left_open = run(main())
    assert left_open == 0
    import errno
    assert errors == {(errno.ENOSPC, None)}  # as os.write(fd) says it
    assert n == 10
    assert in_flight == 0


def test_cancelled_write_file_lands_whole_or_not_at_all(ringlet, run, tmp_path):
    path = tmp_path / "c.bin"
    data = os.urandom(8 * 1024 * 1024)
    fds = fd_count()

    async def main():
        task = asyncio.ensure_future(ringlet.write_file(path, data))
        await asyncio.sleep(0)  # submitted
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        engine = ringlet.get_engine()
        for _ in range(400):
            if engine.stats()["in_flight"] == 0:
                break
            await asyncio.sleep(0.005)
        return engine.stats()["in_flight"]

    assert run(main()) == 0
    assert fd_count() == fds
    # As the separate steps leave it: untouched (the open cancelled), created or
    # truncated and empty (cancelled after the open), or all of data (the write landed).
    content = path.read_bytes() if path.exists() else None
    assert content in (None, b"", data)


def test_cancel_during_an_open_that_waits_cancels_it(ringlet, run, tmp_path):
    # Opening a FIFO for writing waits for a reader: a cancel then ends
    # write_file (the open is cancelled), as with the separate steps, and
    # nothing is left open or in flight.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def main():
        engine = ringlet.get_engine()
        fds = fd_count()
        task = asyncio.ensure_future(ringlet.write_file(fifo, b"never read"))
        await asyncio.sleep(0.05)  # the open is waiting in the kernel
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        for _ in range(400):
            if engine.stats()["in_flight"] == 0:
                break
            await asyncio.sleep(0.005)
        return engine.stats()["in_flight"], fd_count() - fds

    assert run(main()) == (0, 0)
