"""read_file without the ring (csrc/py/readfile.c): a cached regular file on a
local file system is opened, read and closed on the loop thread, none of it
waiting; a file dropped from the page cache, a FIFO, a /proc file go the
ring's way as before.  Checked with the engine's counters, not clocks; the
errors are the built-in open's, word for word."""

import asyncio
import ctypes
import gc
import os
import struct
import time

import pytest

from test_nowait import _drop_from_page_cache

# The file systems whose close(2) cannot wait (no flush-on-close): rl_closes_at_once's list (csrc/fileinfo.h).
LOCAL_MAGICS = {0xEF53: "ext2/3/4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs", 0x858458F6: "ramfs"}


def _fs_magic(path):
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(512)  # struct statfs: f_type is its first field (a long)
    assert libc.statfs(os.fsencode(path), buf) == 0, os.strerror(ctypes.get_errno())
    return struct.unpack_from("l", buf.raw)[0] & 0xFFFFFFFF


@pytest.fixture
def local_fs(tmp_path):
    magic = _fs_magic(tmp_path)
    if magic not in LOCAL_MAGICS:
        pytest.skip(f"{tmp_path} is on a file system (statfs magic {magic:#x}) whose files read_file "
                    "closes through the ring: nothing to see here")
    return tmp_path


def _delta(s0, s1):
    return {k: s1[k] - s0[k] for k in ("submitted", "completed", "completed_inline", "files_nowait", "enter_calls")}


# Below 64 KiB (RL_OFFLOAD_MIN): a larger read goes to the ring once the loop turn's budget of
# inline work is spent (a clock, which a test must not depend on).
@pytest.mark.parametrize("size", [0, 1, 4096, 60_000])
def test_cached_file_is_read_without_the_ring(ringlet, run, require_io_uring, local_fs, make_file, size):
    path, data = make_file(size)
    with open(path, "rb") as f:
        f.read()  # in the page cache

    async def main():
        engine = ringlet.get_engine()
        await ringlet.read_file(path)  # the engine exists, the dentry is cached
        s0 = engine.stats()
        got = [await ringlet.read_file(path) for _ in range(5)]
        return got, _delta(s0, engine.stats()), engine.stats()["in_flight"]

    got, delta, in_flight = run(main())
    assert got == [data] * 5
    assert delta == {"submitted": 5, "completed": 5, "completed_inline": 5, "files_nowait": 5, "enter_calls": 0}
    assert in_flight == 0


@pytest.mark.parametrize("size", [1 << 20, 8 << 20])  # read whole, and read in parts
def test_dropped_file_goes_to_the_ring(ringlet, run, require_io_uring, local_fs, make_file, size):
    path, data = make_file(size)
    resident = _drop_from_page_cache(path)
    if sum(resident) > len(resident) // 2:
        pytest.skip(f"this file system keeps the pages after POSIX_FADV_DONTNEED ({sum(resident)} of "
                    f"{len(resident)} still cached)")

    async def main():
        engine = ringlet.get_engine()
        await ringlet.read_file(__file__)
        s0 = engine.stats()
        got = await ringlet.read_file(path)
        return got, _delta(s0, engine.stats())

    got, delta = run(main())
    assert got == data
    assert delta["files_nowait"] == 0  # 1 MiB cannot all come back from the device during the attempt
    assert delta["enter_calls"] > 0


def test_fifo_goes_to_the_ring_and_the_loop_turns(ringlet, run, fifo):
    """A FIFO opens at once (as through the ring) and is read through the
    engine: the loop keeps turning while the read waits for the writer."""

    async def main():
        engine = ringlet.get_engine()
        s0 = engine.stats()
        reading = asyncio.ensure_future(ringlet.read_file(fifo))
        await asyncio.sleep(0)
        wfd = None
        for _ in range(2000):  # the reader's open lets a non-blocking writer in
            try:
                wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                await asyncio.sleep(0.001)
        assert wfd is not None
        turns = 0
        for _ in range(20):
            await asyncio.sleep(0)
            turns += 1
        assert not reading.done()
        os.write(wfd, b"hello")
        os.close(wfd)
        got = await asyncio.wait_for(reading, 10)
        return got, turns, engine.stats()["files_nowait"] - s0["files_nowait"]

    assert run(main()) == (b"hello", 20, 0)


def test_proc_file_goes_to_the_ring(ringlet, run):
    async def main():
        engine = ringlet.get_engine()
        s0 = engine.stats()
        got = await ringlet.read_file("/proc/self/status")
        return got, engine.stats()["files_nowait"] - s0["files_nowait"]

    got, nowait = run(main())
    assert got.startswith(b"Name:") and nowait == 0


def test_device_goes_to_the_ring(ringlet, run, backend):
    """/dev/null: a character device (its close may run its driver's flush),
    on devtmpfs, whose statfs magic is tmpfs's: read through the engine, with
    the built-in's result."""
    with open("/dev/null", "rb") as f:
        builtin = f.read()

    async def main():
        engine = ringlet.get_engine()
        await ringlet.read_file("/dev/null")  # the engine exists
        s0 = engine.stats()
        got = [await ringlet.read_file("/dev/null") for _ in range(3)]
        s1 = engine.stats()
        return got, {k: s1[k] - s0[k] for k in ("submitted", "completed", "files_nowait")}

    # Each: on io_uring opened inline (not an operation), then a read and a
    # close through the ring; on threads an open, a read and a close.
    ops = 9 if backend == "threads" else 6
    assert run(main()) == ([builtin] * 3, {"submitted": ops, "completed": ops, "files_nowait": 0})


def test_closes_at_once(ringlet, run, require_io_uring, tmp_path, fifo):
    """Engine._closes_at_once (csrc/fileinfo.h), which read_file's close on
    the loop thread and write_file's chain both go by: a regular file of a
    file system without flush, nothing else (/dev/null: a device on
    devtmpfs, whose statfs magic is tmpfs's)."""
    (tmp_path / "file").write_bytes(b"x")
    cases = {str(tmp_path / "file"): _fs_magic(tmp_path) in LOCAL_MAGICS, str(tmp_path): False,
             fifo: False, "/proc/self/status": False, "/dev/null": False}

    async def main():
        engine = ringlet.get_engine()
        got = {}
        for path in cases:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                got[path] = engine._closes_at_once(fd)
            finally:
                os.close(fd)
        return got, engine._closes_at_once(fd)  # closed by now: not known to close at once

    assert run(main()) == (cases, False)


def _builtin_error(path):
    try:
        with open(path, "rb") as f:
            f.read()
    except (OSError, ValueError, TypeError) as exc:
        return type(exc), getattr(exc, "errno", None), str(exc)
    raise AssertionError(f"open({path!r}) did not fail")


def _ringlet_error(ringlet, run, path):
    try:
        run(ringlet.read_file(path))
    except (OSError, ValueError, TypeError) as exc:
        return type(exc), getattr(exc, "errno", None), str(exc)
    raise AssertionError(f"read_file({path!r}) did not fail")


@pytest.mark.parametrize("case", ["missing", "missing-bytes", "in-missing-dir", "dir", "not-a-dir", "nul", "nul-bytes",
                                  "loop", "no-permission"])
def test_errors_are_the_builtin_open_s(ringlet, run, tmp_path, case):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_bytes(b"x")
    os.symlink("loop", tmp_path / "loop")
    secret = tmp_path / "secret"
    secret.write_bytes(b"x")
    secret.chmod(0)
    path = {"missing": str(tmp_path / "nope"), "missing-bytes": os.fsencode(tmp_path / "nope"),
            "in-missing-dir": str(tmp_path / "nodir" / "x"), "dir": str(tmp_path / "d"),
            "not-a-dir": str(tmp_path / "f" / "x"), "nul": str(tmp_path / "a\0b"),
            "nul-bytes": os.fsencode(tmp_path) + b"/a\0b", "loop": str(tmp_path / "loop"),
            "no-permission": str(secret)}[case]
    if case == "no-permission" and os.access(secret, os.R_OK):
        pytest.skip("this user reads a mode-000 file (root, CAP_DAC_OVERRIDE): no EACCES to compare")
    for _ in range(2):  # the second time with every dentry cached
        assert _ringlet_error(ringlet, run, path) == _builtin_error(path)


def test_engine_read_file_checks_its_arguments(ringlet, run, require_io_uring):
    async def main():
        engine = ringlet.get_engine()
        errors = []
        for args in [("x", None), (3, None), (bytearray(b"x"), None), (b"a\0b", None), (b"x",), ()]:
            try:
                engine._read_file(*args)
            except (TypeError, ValueError) as exc:
                errors.append((type(exc), str(exc)))
        return errors

    assert run(main()) == [
        (TypeError, "path must be bytes, not str"),
        (TypeError, "path must be bytes, not int"),
        (TypeError, "path must be bytes, not bytearray"),
        (ValueError, "embedded null byte"),
        (TypeError, "_read_file(path, filename)"),
        (TypeError, "_read_file(path, filename)"),
    ]


def test_read_file_without_the_ring_is_traced(ringlet, run, require_io_uring, local_fs, make_file):
    path, data = make_file(5000)
    with open(path, "rb") as f:
        f.read()

    async def main():
        await ringlet.read_file(path)
        with ringlet.trace() as t:
            got = await ringlet.read_file(path)
        return got, t

    got, t = run(main())
    assert got == data
    # The steps the ring's way would have shown, each done inline without the ring.
    assert [(r["op"], r["inline"], r["nowait"]) for r in t.records] == [("open", True, True), ("read", True, True),
                                                                         ("close", True, True)]
    assert t.records[1]["result"] == 5000 and t.records[0]["result"] == t.records[0]["fd"] == t.records[1]["fd"]


def test_no_descriptor_is_left_open(ringlet, run, make_file, tmp_path):
    path, data = make_file(3000)

    async def main():
        await ringlet.read_file(path)
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(50):
            assert await ringlet.read_file(path) == data
            with pytest.raises(IsADirectoryError):
                await ringlet.read_file(str(tmp_path))
            with pytest.raises(FileNotFoundError):
                await ringlet.read_file(str(tmp_path / "nope"))
        return len(os.listdir("/proc/self/fd")) - before

    assert run(main()) == 0


# --------------------------------------------------------------------------
# a large file: read in parts, the kernel's workers and the loop thread at once
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [4 << 20, (16 << 20) + 12345])
def test_large_cached_file_is_read_in_parts(ringlet, run, require_io_uring, make_file, size):
    path, data = make_file(size)
    with open(path, "rb") as f:
        f.read()

    async def main():
        engine = ringlet.get_engine()
        await ringlet.read_file(__file__)
        s0 = engine.stats()
        got = await ringlet.read_file(path)
        for _ in range(2000):  # a part taken back from the workers completes (cancelled) on its own
            if engine.stats()["in_flight"] == 0:
                break
            await asyncio.sleep(0.001)
        s1 = engine.stats()
        return got, {k: s1[k] - s0[k] for k in ("submitted", "completed", "completed_nowait", "files_nowait")}, \
            s1["in_flight"]

    got, delta, in_flight = run(main())
    assert got == data
    # Through the ring: the part queued for a worker, and the close.  Without:
    # the loop thread's part from the page cache, the other part too if no
    # worker had started it by then (taken back), the read at the end (b"").
    # Whether a worker read its part depends on the scheduler, and the kernel
    # may give a large RWF_NOWAIT read in part (the rest goes to the ring).
    ring, nowait = delta["submitted"] - delta["completed_nowait"], delta["completed_nowait"]
    assert delta["submitted"] == delta["completed"] and delta["files_nowait"] == 0
    assert ring >= 2 and 1 <= nowait <= 3 and ring + nowait <= 7
    assert in_flight == 0


def test_cancelled_large_read_leaks_nothing(ringlet, run, require_io_uring, make_file):
    from ringlet import _ringlet

    path, data = make_file(32 << 20)
    with open(path, "rb") as f:
        f.read()

    async def main():
        engine = ringlet.get_engine()
        await ringlet.read_file(__file__)
        gc.collect()  # an earlier test's garbage freed mid-test would look like an op less
        fds, live = len(os.listdir("/proc/self/fd")), _ringlet._live()["ops"]
        cancelled = 0
        for i in range(20):
            task = asyncio.ensure_future(ringlet.read_file(path))
            for _ in range(i % 4):
                await asyncio.sleep(0)
            task.cancel()
            try:
                assert await task == data  # done before the cancel came
            except asyncio.CancelledError:
                cancelled += 1
        for _ in range(2000):
            if engine.stats()["in_flight"] == 0:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        return cancelled, len(os.listdir("/proc/self/fd")) - fds, _ringlet._live()["ops"] - live, \
            await ringlet.read_file(path) == data

    cancelled, fds, ops, still_reads = run(main())
    assert cancelled > 0
    assert (fds, ops, still_reads) == (0, 0, True)


def test_large_file_after_the_loop_turn_s_budget_is_spent(ringlet, run, make_file):
    """A task that has run past the loop turn's budget of inline work yields
    before a large file is read (then the loop thread reads its part): the
    content is whole either way, and nothing stays open."""
    path, data = make_file(6 << 20)
    small, small_data = make_file(100)

    async def main():
        await ringlet.read_file(path)
        fds = len(os.listdir("/proc/self/fd"))
        got = []
        for _ in range(5):
            assert await ringlet.read_file(small) == small_data  # an inline completion starts the budget
            until = time.monotonic() + 0.003  # setup, not a measurement: the budget (1 ms) is spent
            while time.monotonic() < until:
                pass
            got.append(await ringlet.read_file(path))
        return got, len(os.listdir("/proc/self/fd")) - fds

    got, fds = run(main())
    assert got == [data] * 5 and fds == 0


def test_a_1mib_file_goes_to_the_ring_once_a_call_found_the_budget_spent(ringlet, run, require_io_uring, local_fs,
                                                                          make_file):
    """A file of 64 KiB up to 4 MiB is handed to the ring (the kernel's
    workers) once a call has found the loop turn's budget spent, not when the
    clock alone says so: the first call past the budget reads it here and
    yields after (which marks the budget spent); the next call in that turn
    hands its descriptor over."""
    path, data = make_file(1 << 20)
    small, small_data = make_file(100)
    raw = os.fsencode(path)

    async def main():
        engine = ringlet.get_engine()
        await ringlet.read_file(path)
        await asyncio.sleep(0)
        assert await ringlet.read_file(small) == small_data  # an inline completion starts the budget
        time.sleep(0.003)  # setup, not a measurement: the budget (1 ms) is spent
        s0 = engine.stats()
        first = engine._read_file(raw, path)
        s1 = engine.stats()
        second = engine._read_file(raw, path)
        s2 = engine.stats()
        if isinstance(second, int):
            os.close(second)
        got = None if isinstance(first, (int, bytes, tuple)) or first is None else await first
        return got, type(second), s1["files_nowait"] - s0["files_nowait"], s2["files_nowait"] - s1["files_nowait"]

    got, second, first_here, second_here = run(main())
    assert (first_here, second_here) == (1, 0)
    assert got == data  # an awaitable of the content: a turn of the loop first
    assert second is int  # an open descriptor, read and closed through the ring
