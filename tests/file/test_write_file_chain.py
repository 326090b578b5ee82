"""write_file as one operation on io_uring (csrc/py/writefile.c): open,
write and close as one linked chain on a second ring, made at the engine's
first chained write_file (or, where that cannot be had, each step's completion
issuing the next on the main ring); Python is resumed once.  A directory is
written by chains once a file a write_file opened in steps there closed at
once (Engine._closes_at_once: a regular file of a file system without
flush): the chain's close calls no flush.  The thread
backend has no such operation (Engine._write_file is None): write_file opens,
writes and closes in turn.  Either way: the same results and the same errors
as built-in open()/write()/close()."""

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
        await ringlet.write_file(tmp_path / "first", b"")  # in steps: shows the directory's file system
        before = engine.stats()
        chained = engine._write_file(os.fsencode(path), data, str(path))
        if chained is None:
            return None, None
        engine.tracer = records.append
        n = await chained  # this one was made before the tracer: untraced
        n2 = await ringlet.write_file(path, data[::-1])
        engine.tracer = None
        after = engine.stats()
        return (n, n2), {k: after[k] - before[k] for k in ("submitted", "completed", "in_flight", "files_chained")}

    counts, delta = run(main())
    if backend == "threads":
        assert counts is None  # opened, written and closed in turn
        return
    assert counts == (len(data), len(data))
    assert path.read_bytes() == data[::-1]
    # The first (not exclusive): an open (O_TRUNC), a write, a writeback start and a close
    # linked in the kernel.  The second, to a path write_file has not written yet: tried as
    # a new file (O_EXCL open, write, close: the open fails, the rest is cancelled), then
    # the first's chain of four.  Nothing left in flight.
    assert delta == {"submitted": 11, "completed": 11, "in_flight": 0, "files_chained": 3}
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
        await ringlet.write_file("/dev/null", b"")  # the engine's descriptors (its rings) before the count
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
        for name in ("first", "second"):  # in steps, then chained: the engine's descriptors (its rings) before the count
            await ringlet.write_file(tmp_path / name, b"")
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


def test_more_at_once_than_chain_slots(ringlet, run, tmp_path, backend):
    # 32 chains at most are in the kernel at once; the others take the steps.
    items = [(tmp_path / f"g{i}", os.urandom(3000 + 17 * i)) for i in range(80)]
    fds = fd_count()

    async def main():
        engine = ringlet.get_engine()
        await ringlet.write_file(tmp_path / "first", b"")  # in steps: shows the directory's file system
        before = engine.stats()["files_chained"]
        got = await asyncio.gather(*(ringlet.write_file(p, d) for p, d in items))
        return got, engine.stats()["files_chained"] - before, engine.stats()["in_flight"]

    got, chained, in_flight = run(main())
    assert got == [len(d) for _, d in items]
    assert all(p.read_bytes() == d for p, d in items)
    assert chained == (0 if backend == "threads" else 32)
    assert in_flight == 0
    assert fd_count() == fds


def test_chained_open_errors_free_their_slots(ringlet, run, tmp_path, backend):
    # On io_uring a chain's open and write post no completion when they
    # succeed, and a failed open's cancelled write and close post none:
    # each chain's one completion settles all three (counts below).  A failed
    # open gives its slot back: more failures than slots, then files again.
    (tmp_path / "sub").mkdir()
    ref = builtin_write_error(tmp_path / "sub")
    assert isinstance(ref, IsADirectoryError), "built-in open() of a directory did not fail: bad test input"

    async def main():
        engine = ringlet.get_engine()
        await ringlet.write_file(tmp_path / "first", b"")  # in steps: shows the directory's file system
        before = engine.stats()
        errors = []
        for _ in range(40):  # one after another: each a chain of its own
            with pytest.raises(OSError) as info:
                await ringlet.write_file(tmp_path / "sub", b"data")
            errors.append(info.value)
        written = [await ringlet.write_file(tmp_path / f"ok{i}", b"x" * i) for i in range(40)]
        after = engine.stats()
        return errors, written, {k: after[k] - before[k] for k in ("submitted", "completed", "in_flight", "files_chained")}

    errors, written, delta = run(main())
    assert {(type(e), e.errno, e.strerror, e.filename) for e in errors} == {
        (type(ref), ref.errno, ref.strerror, ref.filename)}
    assert written == list(range(40))
    assert all((tmp_path / f"ok{i}").read_bytes() == b"x" * i for i in range(40))
    if backend == "threads":
        assert delta["files_chained"] == 0 and delta["in_flight"] == 0
        return
    # Each directory error: an O_EXCL chain of 3 (EEXIST), then the O_TRUNC one of 4 (its
    # open's EISDIR); each new file one O_EXCL chain of 3.  All settled; none fell back to
    # the steps.
    assert delta == {"submitted": 40 * 7 + 40 * 3, "completed": 400, "in_flight": 0, "files_chained": 120}


SHORT_WRITE = """
import asyncio, os, resource, signal
import ringlet

# Past RLIMIT_FSIZE a write comes back short, and the next one fails with EFBIG.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10000, resource.RLIM_INFINITY))
data = os.urandom(65536)

def error(exc):
    return (type(exc).__name__, exc.errno, exc.strerror, exc.filename)

try:
    with open("builtin.bin", "wb") as f:
        f.write(data)
except OSError as exc:
    builtin = error(exc)

async def main():
    engine = ringlet.get_engine()
    await ringlet.write_file("first.bin", b"")  # in steps: shows the directory's file system
    try:
        await ringlet.write_file("ours.bin", data)
    except OSError as exc:
        ours = error(exc)
    n = await ringlet.write_file("small.bin", data[:5000])
    return ours, n, engine.stats()["in_flight"]

ours, n, in_flight = asyncio.run(main())
print(ours == builtin, builtin)
print(open("ours.bin", "rb").read() == data[:10000], n, in_flight)
"""


def test_short_write_is_continued_as_the_builtin_does(run_python):
    # The chain's write comes back short: the chain is broken, the rest is
    # written on the same file, and its error is the built-in's.
    proc = run_python(SHORT_WRITE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    same, written = proc.stdout.splitlines()
    assert same.startswith("True ('OSError', 27, "), same  # EFBIG, no file name: as os.write's
    assert written == "True 5000 0"


SHUTDOWN = """
import asyncio, os
import ringlet

os.mkfifo("fifo")

def writers():
    # A reader opened now sees the end of the file only if no writer has the FIFO open
    # (nor waits in its open, which this open would let through).
    r = os.open("fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return "none" if os.read(r, 64) == b"" else "wrote"
    except BlockingIOError:
        return "open"
    finally:
        os.close(r)


async def main():
    engine = ringlet.get_engine()
    await ringlet.write_file("first", b"")  # in steps: shows the directory's file system
    asyncio.ensure_future(ringlet.write_file("fifo", b"never read"))
    await asyncio.sleep(0.05)  # the chain's open waits for a reader in a kernel worker
    chained = engine.stats()["files_chained"]
    left = engine.shutdown(5.0)  # cancels it and waits for its completions
    return chained, left, writers()

# Not asyncio.run: a future pending at shutdown is never resolved (as shutdown()
# says), so its task is left as it is rather than awaited.
print(*asyncio.new_event_loop().run_until_complete(main()))
"""


def test_shutdown_with_a_chain_waiting_in_the_kernel(run_python, backend):
    if backend == "threads":
        pytest.skip("the thread backend has no chain in the kernel")
    proc = run_python(SHUTDOWN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The FIFO exists: the O_EXCL chain failed, the O_TRUNC one waits.  Its open was
    # cancelled: nothing left in flight, the FIFO not left open.
    assert proc.stdout.split() == ["2", "0", "none"]


def io_uring_instances():
    """The process's io_uring descriptors (each ring is one)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[io_uring]"
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return count


def test_the_chains_ring_is_made_at_the_first_chained_write_file(ringlet, run, tmp_path, require_io_uring):
    """An engine that writes no whole file by a chain holds one ring; its
    first chained write_file adds the chain's ring, and later ones reuse it."""
    path = tmp_path / "out.bin"

    async def main():
        engine = ringlet.get_engine()
        await ringlet.read_file(__file__)  # the engine is made and used
        await ringlet.write_file(tmp_path / "first", b"")  # in steps: shows the directory's file system
        before = io_uring_instances()
        await ringlet.write_file(path, b"one")
        after_first = io_uring_instances()
        await ringlet.write_file(path, b"two")
        return before, after_first, io_uring_instances(), engine.stats()["files_chained"], path.read_bytes()

    before, after_first, after_second, chained, data = run(main())
    assert (after_first - before, after_second - after_first) == ((1, 0) if chained else (0, 0))
    assert chained in (0, 2)  # 0: this kernel has no linked files (the steps' way)
    assert data == b"two"


def _chained_counts(ringlet, paths, data):
    """How many of the write_files of data to paths, one after another, were chained: one count each."""
    async def main():
        engine = ringlet.get_engine()
        counts = []
        for path in paths:
            before = engine.stats()["files_chained"]
            assert await ringlet.write_file(path, data) == len(data)
            counts.append(engine.stats()["files_chained"] - before)
        return counts
    return main()


def test_a_directory_is_chained_once_its_file_system_is_known(ringlet, run, tmp_path, backend, monkeypatch):
    """The first write_file in a directory goes in steps (its close calls the
    file's flush, if any) and asks whether that close completed at once; the
    next ones are chained only if it did."""
    from ringlet import _oneshot
    from test_read_file_nowait import LOCAL_MAGICS, _fs_magic
    monkeypatch.setattr(_oneshot, "_chain_dirs", {})  # what earlier tests found is forgotten
    if _fs_magic(tmp_path) not in LOCAL_MAGICS:
        pytest.skip("the temporary directory is on a file system whose files are never chained")
    (tmp_path / "local").mkdir()
    chains = 0 if backend == "threads" else 1
    assert run(_chained_counts(ringlet, [tmp_path / "local" / f"f{i}" for i in range(3)], b"xy")) == \
        [0, chains, chains]
    assert [(tmp_path / "local" / f"f{i}").read_bytes() for i in range(3)] == [b"xy"] * 3


def test_a_file_system_with_a_flush_is_never_chained(ringlet, run, monkeypatch):
    """/proc: its files are regular, but not of a file system without flush."""
    from ringlet import _oneshot
    monkeypatch.setattr(_oneshot, "_chain_dirs", {})
    with open("/proc/self/comm", "rb") as f:
        name = f.read()  # the process's name, written back as it is (less the newline reads add)
    assert run(_chained_counts(ringlet, ["/proc/self/comm"] * 3, name.rstrip(b"\n"))) == [0, 0, 0]
    with open("/proc/self/comm", "rb") as f:
        assert f.read() == name


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_is_never_chained(ringlet, run, monkeypatch, device):
    """A device's close may run its driver's flush, which the chain's close
    skips: /dev is decided by a device, never chained, though devtmpfs
    reports tmpfs's statfs magic (a file system without flush)."""
    from ringlet import _oneshot
    monkeypatch.setattr(_oneshot, "_chain_dirs", {})
    data = b"z" * 100
    with open(device, "wb") as f:
        assert f.write(data) == len(data)  # the built-in's result
    assert run(_chained_counts(ringlet, [device] * 3, data)) == [0, 0, 0]


def test_new_files_start_no_writeback_rewrites_do(ringlet, run, tmp_path, backend):
    """ext4 starts the writeback of a file truncated from non-empty at its last
    release, which io_uring may leave to the loop's thread: a chain that may
    truncate (a path write_file has written, or one that turned out to exist)
    starts it in the kernel worker (a linked SYNC_FILE_RANGE_WRITE).  A new
    file's (O_EXCL) chain has no such step.  Counts of the engine's requests
    and chains tell which chain ran."""
    old = tmp_path / "old.bin"
    old.write_bytes(b"y" * 5000)

    async def main():
        engine = ringlet.get_engine()
        await ringlet.write_file(tmp_path / "first", b"")  # in steps: shows the directory's file system
        await ringlet.write_file(tmp_path / "warm", b"")  # the engine's rings (descriptors) before the count
        fds = fd_count()
        deltas = []
        for path, data in [(tmp_path / "new.bin", b"a" * 3000), (tmp_path / "new.bin", b"b" * 2000), (old, b"c" * 1000)]:
            before = engine.stats()
            n = await ringlet.write_file(path, data)
            after = engine.stats()
            deltas.append((n, {k: after[k] - before[k] for k in ("submitted", "completed", "in_flight", "files_chained")}))
        return deltas, fd_count() - fds

    deltas, fds_left = run(main())
    assert [n for n, _ in deltas] == [3000, 2000, 1000]
    assert (tmp_path / "new.bin").read_bytes() == b"b" * 2000 and old.read_bytes() == b"c" * 1000
    assert fds_left == 0
    if backend == "threads":
        assert all(d["files_chained"] == 0 for _, d in deltas)
        return
    assert [d["in_flight"] for _, d in deltas] == [0, 0, 0]
    assert [(d["submitted"], d["completed"], d["files_chained"]) for _, d in deltas] == [
        (3, 3, 1),  # new: open O_EXCL, write, close
        (4, 4, 1),  # written before: open O_TRUNC, write, writeback start, close
        (7, 7, 2),  # existed, unknown: the O_EXCL chain fails, then the O_TRUNC one
    ]


@pytest.mark.parametrize("case", ["dangling_symlink", "symlink_to_file", "directory"])
def test_an_existing_path_is_written_as_open_does(ringlet, run, tmp_path, case):
    """A path write_file has not written is first opened O_CREAT|O_EXCL, which
    fails on anything there, symbolic links included: then the O_TRUNC open
    gives open()'s result or error."""
    path = tmp_path / "p"
    target = tmp_path / "target"
    if case == "dangling_symlink":
        os.symlink(target, path)
    elif case == "symlink_to_file":
        target.write_bytes(b"old content, longer")
        os.symlink(target, path)
    else:
        path.mkdir()
    ref = builtin_write_error(path) if case == "directory" else None

    async def main():
        await ringlet.write_file(tmp_path / "first", b"")  # in steps: shows the directory's file system
        await ringlet.write_file(tmp_path / "warm", b"")  # the engine's rings (descriptors) before the count
        fds = fd_count()
        try:
            got = await ringlet.write_file(path, b"new")
        except OSError as exc:
            got = exc
        return got, ringlet.get_engine().stats()["in_flight"], fd_count() - fds

    got, in_flight, fds_left = run(main())
    assert (in_flight, fds_left) == (0, 0)
    if case == "directory":
        assert isinstance(ref, IsADirectoryError), "built-in open() of a directory did not fail: bad test input"
        assert (type(got), got.errno, got.strerror, got.filename) == (type(ref), ref.errno, ref.strerror, ref.filename)
    else:
        assert got == 3
        assert target.read_bytes() == b"new" and os.path.islink(path)
