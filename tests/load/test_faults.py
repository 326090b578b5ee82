"""Fault injection: allocations that fail, io_uring_enter refusing work,
completions that carry errors or short counts, and a cancel that finds nothing.
Each ends in the right Python exception, or in a retry that completes the
operation correctly.

The hooks exist only in a build made with RINGLET_FAULTS=1; `make test`
builds one and runs this file against it.
"""

import asyncio
import errno
import os

import pytest

ringlet_c = pytest.importorskip("ringlet._ringlet")
if not hasattr(ringlet_c, "_fault_arm"):
    pytest.skip("this ringlet was built without RINGLET_FAULTS=1; `make test` runs this file "
                "in its fault-injection pass", allow_module_level=True)


@pytest.fixture(autouse=True)
def disarm(require_io_uring):
    yield
    for kind in ("alloc", "enter", "cqe", "short", "cancel"):
        ringlet_c._fault_arm(kind, 0, 0)


def arm(kind, skip, count, err=0):
    ringlet_c._fault_arm(kind, skip, count, err)


def hits(kind):
    return ringlet_c._fault_hits(kind)


def test_failed_allocation_is_memoryerror_then_it_works(ringlet, run, make_file):
    path, data = make_file(10_000)

    async def main():
        async with ringlet.open(path, "rb") as f:
            arm("alloc", 0, 1)  # the op's own allocation
            with pytest.raises(MemoryError):
                await f.pread(10, 0)
            arm("alloc", 1, 1)  # the SQE (an overflow entry) after the op
            with pytest.raises(MemoryError):
                await f.pread(10, 0)
            assert hits("alloc") == 1
            return await f.pread(100, 5), ringlet.get_engine().stats()["in_flight"]

    assert run(main()) == (data[5:105], 0)


@pytest.mark.parametrize("err", [errno.EAGAIN, errno.EBUSY, errno.EINTR])
def test_enter_refused_is_retried(ringlet, run, make_file, err):
    path, data = make_file(100_000)

    async def main():
        async with ringlet.open(path, "rb") as f:
            arm("enter", 0, 3, err)
            got = await f.pread(4096, 8192)
            many = await f.pread_many([(100, i * 1000) for i in range(50)])
            return got, many, hits("enter")

    got, many, n = run(main())
    assert got == data[8192:8192 + 4096]
    assert many == [data[i * 1000:i * 1000 + 100] for i in range(50)]
    assert n == 3


@pytest.mark.parametrize("err, exc", [(errno.EIO, OSError), (errno.ENOSPC, OSError), (errno.EBADF, OSError)])
def test_completion_errors_become_oserror(ringlet, run, make_file, tmp_path, err, exc):
    path, data = make_file(10_000)

    async def main():
        async with ringlet.open(path, "rb") as f:
            arm("cqe", 0, 1, err)
            with pytest.raises(exc) as info:
                await f.pread(10, 0)
            assert info.value.errno == err
            assert await f.pread(10, 0) == data[:10]
        async with ringlet.open(tmp_path / "out", "wb") as w:
            arm("cqe", 0, 1, err)
            with pytest.raises(exc) as info:
                await w.write(b"x" * 5000)
            assert info.value.errno == err
        arm("cqe", 2, 1, err)  # the copy's first read passes, a later one fails
        with pytest.raises(exc) as info:
            await ringlet.copy_file(path, tmp_path / "copy")
        assert info.value.errno == err
        return ringlet.get_engine().stats()["in_flight"]

    assert run(main()) == 0


def test_completion_eagain_is_retried(ringlet, run, make_file, tmp_path):
    path, data = make_file(3 * 1024 * 1024 + 7)

    async def main():
        arm("cqe", 0, 5, errno.EAGAIN)
        got = await ringlet.read_file(path)
        arm("cqe", 0, 5, errno.EAGAIN)
        await ringlet.write_file(tmp_path / "w", data)
        arm("cqe", 0, 5, errno.EAGAIN)
        await ringlet.copy_file(path, tmp_path / "c")
        async with ringlet.open(path, "rb") as f:
            arm("cqe", 0, 7, errno.EAGAIN)
            many = await f.pread_many([(10, i * 4096) for i in range(20)])
        return got, many, hits("cqe")

    got, many, n = run(main())
    assert got == data
    assert (tmp_path / "w").read_bytes() == data
    assert (tmp_path / "c").read_bytes() == data
    assert many == [data[i * 4096:i * 4096 + 10] for i in range(20)]
    assert n == 7


def test_short_completions_are_continued_or_reported_short(ringlet, run, make_file, tmp_path):
    path, data = make_file(1024 * 1024 + 3)

    async def main():
        arm("short", 0, 6)
        n = await ringlet.write_file(tmp_path / "w", data)  # short writes are continued
        arm("short", 0, 6)
        got = await ringlet.read_file(path)  # reads until b"": a short read is no end of file
        arm("short", 0, 10)
        copied = await ringlet.copy_file(path, tmp_path / "c")
        async with ringlet.open(path, "rb") as f:
            arm("short", 0, 1)
            short = await f.pread(4096, 0)  # a positional read may come back short, as os.pread
        return n, got, copied, short, hits("short")

    n, got, copied, short, n_short = run(main())
    assert n == len(data) and (tmp_path / "w").read_bytes() == data
    assert got == data
    assert copied == len(data) and (tmp_path / "c").read_bytes() == data
    assert short == data[:2048]
    assert n_short == 1


def test_a_cancelled_write_that_comes_back_short_is_not_continued(ringlet, run, tmp_path, stalled_page):
    """Its caller asked it stopped (Engine._write_stop): a short completion
    ends it, and the part it reports counts (the position moves past it).
    The write is held in the kernel by a stalled page of data until the
    stop is asked.  (The kernel wrote the whole page: the fault halves the
    count it reports, so the file's bytes say nothing here.)"""
    page = stalled_page.size

    async def main():
        async with ringlet.open(tmp_path / "f", "wb") as f:
            await f.write(b"x" * 100)
            write = asyncio.ensure_future(f.write(memoryview(stalled_page.memory)))
            await stalled_page.touched()
            write.cancel()
            arm("short", 0, 1)
            stalled_page.release(b"A" * page)
            with pytest.raises(asyncio.CancelledError):
                await write
            return hits("short"), await f.tell()

    assert run(main()) == (1, 100 + page // 2)


def test_shutdown_cancels_again_what_a_cancel_missed(ringlet, run, fifo):
    """The kernel can miss a request in a cancel of everything (a pipe read
    its worker is arming a poll for: engine_cancel_and_wait); shutdown's wait
    then sees nothing complete and cancels again, instead of waiting out its
    timeout with the reads still in the kernel."""

    async def main():
        engine = ringlet.get_engine()
        rfd = os.open(fifo, os.O_RDWR)  # a FIFO nobody writes: its reads wait
        try:
            reads = [engine.read(rfd, 4096) for _ in range(3)]
            await asyncio.sleep(0)
            in_flight = engine.stats()["in_flight"]
            cancels = engine.stats()["cancelled"]
            arm("cancel", 0, 1)
            left = engine.shutdown(timeout=5.0)
            cancels = engine.stats()["cancelled"] - cancels
            return in_flight, left, cancels, hits("cancel"), [r.done() for r in reads]
        finally:
            os.close(rfd)

    in_flight, left, cancels, missed, done = run(main())
    assert in_flight == 3
    assert missed == 1  # the first cancel found nothing
    assert left == 0  # a later one found all three
    assert cancels >= 2
    assert done == [False] * 3  # shutdown resolves no future


def test_fault_build_passes_the_basics(ringlet, run, make_file):
    """The fault hooks disarmed change nothing."""
    path, data = make_file(50_000)

    async def main():
        async with ringlet.open(path, "rb") as f:
            return await f.read(), await f.pread(10, 20)

    assert run(main()) == (data, data[20:30])
