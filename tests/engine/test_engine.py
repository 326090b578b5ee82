"""The engine: backend, get_engine, stats counters and the low-level
Future-returning API."""

import asyncio
import errno
import os
import subprocess
import sys

import pytest

from conftest import child_env, read_os

STATS_KEYS = {
    "submitted",
    "completed",
    "completed_inline",
    "deferred",
    "cancelled",
    "enter_calls",
    "in_flight",
    "peak_in_flight",
}


# --------------------------------------------------------------------------
# backend
# --------------------------------------------------------------------------


def test_backend_is_io_uring(ringlet):
    try:
        name = ringlet.backend()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"ringlet.backend() raised {type(exc).__name__}: {exc}")
    assert isinstance(name, str) and name
    if not name.startswith("io_uring"):
        pytest.skip(f"io_uring not in use: backend() = {name!r}")
    assert name.startswith("io_uring")


def test_backend_stable_inside_loop(ringlet, run, backend_name):
    async def main():
        return ringlet.backend()

    assert run(main()) == backend_name


def test_cli_info(ringlet, backend_name):
    proc = subprocess.run(
        [sys.executable, "-m", "ringlet", "info"], capture_output=True, text=True, timeout=20, cwd="/", env=child_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert backend_name.split()[0] in proc.stdout


# --------------------------------------------------------------------------
# get_engine
# --------------------------------------------------------------------------


def test_get_engine_without_running_loop(ringlet):
    with pytest.raises(RuntimeError):
        ringlet.get_engine()


def test_one_engine_per_loop(ringlet, run):
    async def main():
        e1 = ringlet.get_engine()
        await asyncio.sleep(0)
        e2 = ringlet.get_engine()

        async def other_task():
            return ringlet.get_engine()

        e3 = await asyncio.create_task(other_task())
        return e1, e2, e3

    e1, e2, e3 = run(main())
    assert e1 is e2 is e3
    f1, _, _ = run(main())
    assert f1 is not e1  # a new loop gets a new engine


# --------------------------------------------------------------------------
# stats
# --------------------------------------------------------------------------


def test_stats_keys_and_types(ringlet, run):
    async def main():
        return ringlet.get_engine().stats()

    stats = run(main())
    assert isinstance(stats, dict)
    missing = STATS_KEYS - set(stats)
    assert not missing, f"missing keys: {missing}"
    for k in STATS_KEYS:
        assert type(stats[k]) is int, (k, stats[k])
        assert stats[k] >= 0, (k, stats[k])


def test_stats_counters_move(ringlet, run, require_io_uring, make_file):
    path, data = make_file(3 * 4096)
    read_os(path)  # make sure it is in the page cache

    async def main():
        eng = ringlet.get_engine()
        s0 = eng.stats()
        async with ringlet.open(path, "rb") as f:
            for i in range(20):
                assert await f.pread(4096, (i % 3) * 4096) == data[(i % 3) * 4096 : (i % 3 + 1) * 4096]
            results = await asyncio.gather(*(f.pread(100, i) for i in range(50)))
            assert results == [data[i : i + 100] for i in range(50)]
        s1 = eng.stats()
        return s0, s1

    s0, s1 = run(main())
    # open + 70 preads + close
    assert s1["submitted"] >= s0["submitted"] + 72, (s0, s1)
    assert s1["completed"] >= s0["completed"] + 72, (s0, s1)
    assert s1["completed_inline"] > 0, s1
    assert s1["enter_calls"] > s0["enter_calls"], (s0, s1)
    assert s1["in_flight"] == 0, s1
    assert s1["peak_in_flight"] >= 1, s1
    assert s1["completed"] <= s1["submitted"]
    assert s1["completed_inline"] <= s1["completed"]


def test_stats_deferred_and_peak(ringlet, run, require_io_uring, fifo):
    async def main():
        eng = ringlet.get_engine()
        f = await ringlet.open(fifo, "r+b")
        try:
            s0 = eng.stats()
            # engine reads: a file's own reads take turns (one in the kernel at a time)
            tasks = [asyncio.ensure_future(eng.read(f.fileno(), 3)) for _ in range(5)]
            await asyncio.sleep(0.02)
            s_pending = eng.stats()
            wfd = os.open(fifo, os.O_WRONLY)
            try:
                os.write(wfd, b"abc" * 5)
                results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
            finally:
                os.close(wfd)
            s1 = eng.stats()
        finally:
            await f.close()
        return s0, s_pending, results, s1

    s0, s_pending, results, s1 = run(main())
    assert results == [b"abc"] * 5
    assert s_pending["in_flight"] >= 5, s_pending
    assert s1["peak_in_flight"] >= 5, s1
    assert s1["deferred"] >= s0["deferred"] + 5, (s0, s1)  # completed via the loop callback
    assert s1["in_flight"] == 0, s1


def test_a_woken_pipe_read_signals_the_loop_before_the_write_returns(ringlet, run, require_io_uring):
    """The write that wakes a pipe read waiting in the ring has signalled the
    engine's eventfd (which the loop watches) by the time it returns, so the
    loop wakes for the completion at once.  Linux 6.18.44 signals a
    DEFER_TASKRUN ring's eventfd for such a read 13-14 ms later: there the
    ring must be set up without DEFER_TASKRUN (ring.c's probe)."""
    import select

    async def main():
        engine = ringlet.get_engine()
        r, w = os.pipe()
        try:
            read = asyncio.ensure_future(engine.read(r, 16))
            turns = 0
            # The submission's own signals drained: nothing is due now.
            while select.select([engine.fileno()], [], [], 0)[0] and turns < 100:
                await asyncio.sleep(0)
                turns += 1
            signalled_before = bool(select.select([engine.fileno()], [], [], 0)[0])
            os.write(w, b"woken")
            signalled_after = bool(select.select([engine.fileno()], [], [], 0)[0])
            return signalled_before, signalled_after, await asyncio.wait_for(read, 5)
        finally:
            os.close(r)
            os.close(w)

    assert run(main()) == (False, True, b"woken")


def test_stats_cancelled_counter(ringlet, run, fifo):
    async def main():
        eng = ringlet.get_engine()
        f = await ringlet.open(fifo, "r+b")
        try:
            before = eng.stats()["cancelled"]
            for _ in range(3):
                t = asyncio.ensure_future(eng.read(f.fileno(), 1))  # f.read() waits for readiness first
                await asyncio.sleep(0.01)
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
            # let the cancellation CQEs arrive
            for _ in range(200):
                if eng.stats()["in_flight"] == 0:
                    break
                await asyncio.sleep(0.005)
            after = eng.stats()["cancelled"]
        finally:
            await f.close()
        return before, after

    before, after = run(main())
    assert after >= before + 3


def test_stats_returns_snapshot(ringlet, run, make_file):
    path, _ = make_file(100)

    async def main():
        eng = ringlet.get_engine()
        s0 = eng.stats()
        snapshot = dict(s0)
        await ringlet.read_file(path)
        return s0, snapshot, eng.stats()

    s0, snapshot, s1 = run(main())
    assert s0 == snapshot  # the old dict was not mutated behind our back
    assert s1["submitted"] > s0["submitted"]


# --------------------------------------------------------------------------
# low-level API: every call returns an asyncio.Future
# --------------------------------------------------------------------------


def test_low_level_api_returns_futures(ringlet, run, make_file, tmp_path):
    path, data = make_file(10_000)
    dst = str(tmp_path / "dst.bin")
    dst2 = str(tmp_path / "dst2.bin")

    async def main():
        eng = ringlet.get_engine()
        out = {}

        def check(name, fut):
            assert isinstance(fut, asyncio.Future), (name, type(fut))
            return fut

        fd = await check("open", eng.open(os.fsencode(path), os.O_RDONLY, 0))
        assert isinstance(fd, int) and fd >= 0
        out["read"] = await check("read", eng.read(fd, 100, 0))
        out["read_pos1"] = await check("read-1", eng.read(fd, 10, -1))
        out["read_pos2"] = await check("read-1b", eng.read(fd, 10, -1))
        buf = bytearray(50)
        out["readinto"] = (await check("readinto", eng.readinto(fd, buf, 1000)), bytes(buf))
        st = await check("statx", eng.statx(fd))
        out["statx"] = st

        wfd = await check("open-w", eng.open(os.fsencode(dst), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        out["write"] = await check("write", eng.write(wfd, b"hello world", 0))
        out["write_pos"] = await check("write-1", eng.write(wfd, b"!", -1))
        out["fsync"] = await check("fsync", eng.fsync(wfd, False))
        out["fdatasync"] = await check("fdatasync", eng.fsync(wfd, True))
        out["close_w"] = await check("close-w", eng.close(wfd))

        cfd = await check("open-c", eng.open(os.fsencode(dst2), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        sfd = await check("open-s", eng.open(os.fsencode(path), os.O_RDONLY, 0))
        out["copy"] = await check("copy", eng.copy(sfd, cfd))
        await check("close-c", eng.close(cfd))
        await check("close-s", eng.close(sfd))
        out["close"] = await check("close", eng.close(fd))
        out["fd"] = fd
        return out

    out = run(main())
    assert out["read"] == data[:100]
    assert out["read_pos1"] == data[:10]
    assert out["read_pos2"] == data[10:20]
    assert out["readinto"] == (50, data[1000:1050])
    st = out["statx"]
    assert isinstance(st, os.stat_result)
    ref = os.stat(path)
    assert (st.st_size, st.st_ino, st.st_mode) == (ref.st_size, ref.st_ino, ref.st_mode)
    assert out["write"] == 11
    assert out["write_pos"] == 1
    assert out["fsync"] is None and out["fdatasync"] is None
    assert out["close_w"] is None and out["close"] is None
    # offset 0 is a pwrite: the file position stays 0, so offset -1 writes there
    assert read_os(dst) == b"!ello world"
    assert out["copy"] == len(data)
    assert read_os(dst2) == data
    with pytest.raises(OSError):
        os.fstat(out["fd"])


def test_low_level_write_position(ringlet, run, tmp_path):
    """offset -1 writes at the file position and advances it."""
    path = str(tmp_path / "pos.bin")

    async def main():
        eng = ringlet.get_engine()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            await eng.write(fd, b"abc", -1)
            await eng.write(fd, b"def", -1)
            await eng.write(fd, b"X", 0)
        finally:
            os.close(fd)

    run(main())
    assert read_os(path) == b"Xbcdef"


def test_low_level_errors_are_oserrors(ringlet, run, tmp_path):
    missing = str(tmp_path / "missing")

    async def main():
        eng = ringlet.get_engine()
        errs = {}
        for name, make in [
            ("open-missing", lambda: eng.open(os.fsencode(missing), os.O_RDONLY, 0)),
            ("read-badfd", lambda: eng.read(987654, 10, 0)),
            ("write-badfd", lambda: eng.write(987654, b"x", 0)),
            ("fsync-badfd", lambda: eng.fsync(987654, False)),
            ("statx-badfd", lambda: eng.statx(987654)),
            ("read-maxfd", lambda: eng.read(2**31 - 1, 10, 0)),  # no table of numbers grows this far
            ("write-maxfd", lambda: eng.write(2**31 - 1, b"x", -1)),
        ]:
            try:
                fut = make()
                assert isinstance(fut, asyncio.Future)
                await fut
            except OSError as exc:
                errs[name] = exc
        return errs

    errs = run(main())
    assert isinstance(errs.get("open-missing"), FileNotFoundError), errs
    assert errs["open-missing"].errno == errno.ENOENT
    for name in ("read-badfd", "write-badfd", "fsync-badfd", "statx-badfd", "read-maxfd", "write-maxfd"):
        assert name in errs, f"{name} did not raise"
        assert errs[name].errno == errno.EBADF, (name, errs[name])


def test_low_level_bad_argument_types(ringlet, run):
    async def main():
        eng = ringlet.get_engine()
        raised = []
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            for make in [
                lambda: eng.read(str(fd), 10, 0),
                lambda: eng.read(fd, "10", 0),
                lambda: eng.write(fd, "text", 0),
                lambda: eng.readinto(fd, b"readonly", 0),
                lambda: eng.open(1.5, os.O_RDONLY, 0),
            ]:
                try:
                    fut = make()
                    await fut
                except TypeError:
                    raised.append(True)
                else:
                    raised.append(False)
        finally:
            os.close(fd)
        return raised

    assert run(main()) == [True] * 5


def test_low_level_futures_belong_to_running_loop(ringlet, run, make_file):
    path, data = make_file(100)

    async def main():
        eng = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        try:
            fut = eng.read(fd, 100, 0)
            loop_ok = fut.get_loop() is asyncio.get_running_loop()
            return loop_ok, await fut
        finally:
            os.close(fd)

    assert run(main()) == (True, data)


def test_readinto_keeps_buffer_contract(ringlet, run, make_file):
    """The kernel writes into the caller's memory: memoryview slices land in place."""
    path, data = make_file(8192)

    async def main():
        eng = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        try:
            buf = bytearray(b"\xff" * 10000)
            view = memoryview(buf)[1000:5096]
            n = await eng.readinto(fd, view, 4096)
            return n, bytes(buf)
        finally:
            os.close(fd)

    n, buf = run(main())
    assert n == 4096
    assert buf[:1000] == b"\xff" * 1000
    assert buf[1000:5096] == data[4096:8192]
    assert buf[5096:] == b"\xff" * (10000 - 5096)



ENDLESS_COPY = """
import asyncio, os, ringlet

async def main():
    engine = ringlet.get_engine()
    src, dst = os.open("/dev/zero", os.O_RDONLY), os.open("/dev/null", os.O_WRONLY)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.ensure_future(ticker())
    try:
        await asyncio.wait_for(engine.copy(src, dst), 0.2)
    except asyncio.TimeoutError:
        print("timed out, ticks", ticks > 0)
    ticking.cancel()

asyncio.run(main())
"""


def test_copy_of_an_endless_device_leaves_the_loop_turning(ringlet, run_python):
    """engine.copy from /dev/zero never ends; the loop keeps turning meanwhile
    (the thread engine reads a device on the loop's thread, at once), so a
    timeout cancels it and another task runs.  In a child: a loop that never
    turns again hangs it, and the child's timeout fails the test."""
    proc = run_python(ENDLESS_COPY, timeout=30)
    assert proc.stdout.strip() == "timed out, ticks True", proc.stderr[-2000:]
