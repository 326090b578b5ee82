"""pread_many / engine.read_many: one submission for many positional reads."""

import asyncio
import os

import pytest


def test_pread_many_content_and_order(ringlet, run, make_file):
    data = os.urandom(300_000)
    path, _ = make_file(data)
    requests = [(4096, off) for off in range(0, 290_000, 7_001)] + [(10, len(data) - 3), (5, len(data) + 10)]

    async def main():
        async with ringlet.open(path, "rb") as f:
            before = ringlet.get_engine().stats()
            got = await f.pread_many(requests)
            after = ringlet.get_engine().stats()
        return got, after["enter_calls"] - before["enter_calls"]

    got, enters = run(main())
    assert got == [data[off:off + size] for size, off in requests]
    # 44 reads fit the SQ: submitted together, not one system call each.
    assert enters <= 2


def test_pread_many_more_than_the_sq_holds(ringlet, run, make_file):
    data = os.urandom(64 * 1024)
    path, _ = make_file(data)
    requests = [(97, (i * 131) % len(data)) for i in range(3000)]

    async def main():
        async with ringlet.open(path, "rb") as f:
            return await f.pread_many(requests), ringlet.get_engine().stats()["in_flight"]

    got, in_flight = run(main())
    assert got == [data[off:off + size] for size, off in requests]
    assert in_flight == 0


def test_pread_many_empty(ringlet, run, make_file):
    path, _ = make_file(b"abc")

    async def main():
        async with ringlet.open(path, "rb") as f:
            return await f.pread_many([]), await ringlet.get_engine().read_many(f.fileno(), [])

    assert run(main()) == ([], [])


def test_read_many_returns_a_future(ringlet, run, make_file):
    path, _ = make_file(b"0123456789")

    async def main():
        async with ringlet.open(path, "rb") as f:
            fut = ringlet.get_engine().read_many(f.fileno(), [(3, 1), (2, 8)])
            assert isinstance(fut, asyncio.Future)
            return await fut

    assert run(main()) == [b"123", b"89"]


@pytest.mark.parametrize("requests, error", [
    ([(1, -1)], ValueError),
    ([(-1, 0)], ValueError),
    ([(1, 0), 3], TypeError),
    ([(1, 0, 2)], TypeError),
    ([("1", 0)], TypeError),
    (5, TypeError),
    ([(1, 2**64)], OverflowError),
])
def test_pread_many_bad_requests_queue_nothing(ringlet, run, make_file, requests, error):
    path, _ = make_file(b"0123456789")

    async def main():
        async with ringlet.open(path, "rb") as f:
            with pytest.raises(error):
                await f.pread_many(requests)
            return ringlet.get_engine().stats()["in_flight"], await f.pread(2, 0)

    assert run(main()) == (0, b"01")


def test_pread_many_error_is_raised_after_all_complete(ringlet, run, make_file):
    path, _ = make_file(b"0123456789")

    async def main():
        engine = ringlet.get_engine()
        with pytest.raises(OSError) as info:
            await engine.read_many(-1, [(1, 0), (1, 1)])
        return info.value.errno, engine.stats()["in_flight"]

    assert run(main()) == (9, 0)  # EBADF, and nothing left in flight


def test_pread_many_closed_and_write_only(ringlet, run, make_file, tmp_path):
    import io

    path, _ = make_file(b"0123456789")

    async def main():
        f = await ringlet.open(path, "rb")
        await f.close()
        with pytest.raises(ValueError):
            await f.pread_many([(1, 0)])
        async with ringlet.open(tmp_path / "w.bin", "wb") as w:
            with pytest.raises(io.UnsupportedOperation):
                await w.pread_many([(1, 0)])

    run(main())


def test_pread_many_on_a_fifo_is_espipe(ringlet, run, fifo):
    """A FIFO has no offsets: os.pread says ESPIPE, and so does pread_many."""

    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            with pytest.raises(OSError) as info:
                await f.pread_many([(10, 0)])
            return info.value.errno

    assert run(main()) == 29  # ESPIPE


def test_read_many_cancel_pending_reads_keeps_engine_working(ringlet, run, fifo):
    """engine.read_many on a FIFO waits (the kernel ignores offsets on a
    stream); cancelling it cancels every read in the kernel."""

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            task = asyncio.ensure_future(engine.read_many(fd, [(10, 0), (10, 0)]))
            await asyncio.sleep(0.01)
            assert not task.done()
            assert engine.stats()["in_flight"] == 2
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(200):
                if engine.stats()["in_flight"] == 0:
                    break
                await asyncio.sleep(0.005)
            return engine.stats()["in_flight"]
        finally:
            os.close(fd)

    assert run(main()) == 0
