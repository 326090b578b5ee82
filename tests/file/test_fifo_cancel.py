"""FIFOs make an operation wait for as long as we like: they prove the loop
keeps running while I/O is pending, and that cancellation is prompt, leaves
the engine working and leaks nothing."""

import asyncio
import errno
import os
import threading

import pytest

from conftest import fd_count, open_fifo_writer, wait_until


def _stats(ringlet):
    return ringlet.get_engine().stats()


async def _ticker(counter, stop):
    while not stop.is_set():
        await asyncio.sleep(0.001)
        counter[0] += 1


# --------------------------------------------------------------------------
# the loop keeps running
# --------------------------------------------------------------------------


def test_blocking_fifo_open_and_read_do_not_stall_loop(ringlet, run, fifo):
    """open(fifo, "rb") blocks in the kernel until a writer appears; the loop must not."""

    async def main():
        counter = [0]
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticker(counter, stop))

        async def reader():
            async with ringlet.open(fifo, "rb") as f:
                return await f.read(5)

        rtask = asyncio.create_task(reader())
        reached = await wait_until(lambda: counter[0] >= 30, timeout=20)
        assert reached, f"loop stalled: counter={counter[0]}"
        pending_while_ticking = not rtask.done()
        ticks_before_write = counter[0]

        wfd = await open_fifo_writer(fifo)  # retries until the reader's open is in the kernel
        try:
            os.write(wfd, b"hello")
            data = await asyncio.wait_for(rtask, timeout=5)
        finally:
            os.close(wfd)
        stop.set()
        await ticker
        return pending_while_ticking, ticks_before_write, data

    pending, ticks, data = run(main())
    assert pending is True
    assert ticks >= 30
    assert data == b"hello"


def test_pending_fifo_read_does_not_stall_loop_thread_writer(ringlet, run, fifo):
    """A read with no data pending; a thread started by the test writes later."""

    async def main():
        counter = [0]
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticker(counter, stop))
        f = await ringlet.open(fifo, "r+b")  # O_RDWR: does not block on Linux
        try:
            rtask = asyncio.create_task(f.read(11))
            assert await wait_until(lambda: counter[0] >= 20, timeout=20)
            pending = not rtask.done()
            ticks_at_write = counter[0]

            def writer():
                # O_NONBLOCK: our O_RDWR reader is open, so this cannot fail
                # with ENXIO, and the thread can never hang in open()
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                try:
                    os.write(fd, b"from thread")
                finally:
                    os.close(fd)

            t = threading.Thread(target=writer, daemon=True)
            t.start()
            data = await asyncio.wait_for(rtask, timeout=5)
            await asyncio.get_running_loop().run_in_executor(None, t.join, 5)
        finally:
            await f.close()
        stop.set()
        await ticker
        return pending, ticks_at_write, data

    pending, ticks, data = run(main())
    assert pending is True
    assert ticks >= 20
    assert data == b"from thread"


def test_fifo_reads_interleave_with_file_io(ringlet, run, fifo, make_file):
    path, fdata = make_file(100_000)

    async def main():
        f = await ringlet.open(fifo, "r+b")
        try:
            rtask = asyncio.create_task(f.read(4))
            # plenty of regular I/O completes while the FIFO read waits
            for _ in range(20):
                assert await ringlet.read_file(path) == fdata
            pending = not rtask.done()
            wfd = os.open(fifo, os.O_WRONLY)
            try:
                os.write(wfd, b"done")
                got = await asyncio.wait_for(rtask, 5)
            finally:
                os.close(wfd)
        finally:
            await f.close()
        return pending, got

    assert run(main()) == (True, b"done")


# --------------------------------------------------------------------------
# cancellation
# --------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_cancel_pending_fifo_reads_20_in_a_row(ringlet, run, fifo, make_file):
    path, data = make_file(4097)

    async def main():
        await ringlet.read_file(path)
        cancelled_before = _stats(ringlet)["cancelled"]
        f = await ringlet.open(fifo, "r+b")
        try:
            for _ in range(20):
                task = asyncio.create_task(f.read(100))
                await asyncio.sleep(0.01)
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=20)  # no data ever comes: only the cancel ends it
                assert task.cancelled()
                # the engine still works after every cancel
                assert await ringlet.read_file(path) == data

            settled = await wait_until(lambda: _stats(ringlet)["in_flight"] == 0, timeout=20)
            # cancelled reads did not consume data: the next write reaches the next read
            wfd = os.open(fifo, os.O_WRONLY)
            try:
                os.write(wfd, b"payload")
                got = await asyncio.wait_for(f.read(100), timeout=5)
            finally:
                os.close(wfd)
        finally:
            await f.close()
        stats = _stats(ringlet)
        return settled, got, cancelled_before, stats

    settled, got, cancelled_before, stats = run(main())
    assert settled is True, stats
    assert got == b"payload"
    assert stats["in_flight"] == 0


def test_cancel_many_pending_fifo_reads_at_once(ringlet, run, fifo):
    async def main():
        f = await ringlet.open(fifo, "r+b")
        try:
            tasks = [asyncio.create_task(f.read(10)) for _ in range(20)]
            await asyncio.sleep(0.02)
            assert not any(t.done() for t in tasks)
            for t in tasks:
                t.cancel()
            res = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)  # no data ever comes
            settled = await wait_until(lambda: _stats(ringlet)["in_flight"] == 0, timeout=20)
        finally:
            await f.close()
        return res, settled

    res, settled = run(main())
    assert all(isinstance(r, asyncio.CancelledError) for r in res), res
    assert settled is True


def test_cancel_low_level_engine_read(ringlet, run, fifo, make_file):
    path, data = make_file(100)

    async def main():
        eng = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            for _ in range(5):
                fut = eng.read(fd, 100, -1)
                assert isinstance(fut, asyncio.Future)
                task = asyncio.ensure_future(fut)
                await asyncio.sleep(0.01)
                assert not fut.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(task, 20)  # no data ever comes: only the cancel ends it
                assert fut.cancelled()
            settled = await wait_until(lambda: eng.stats()["in_flight"] == 0, timeout=20)
            os.write(fd, b"xyz")  # O_RDWR fd: write to ourselves
            got = await asyncio.wait_for(eng.read(fd, 100, -1), 5)
        finally:
            os.close(fd)
        return settled, got, await ringlet.read_file(path)

    settled, got, after = run(main())
    assert settled is True
    assert got == b"xyz"
    assert after == data


def test_cancel_then_loop_closes_cleanly(ringlet, fifo, make_file):
    """asyncio.run cancels a still-pending FIFO read at shutdown; a later loop works."""
    path, data = make_file(10)

    async def main():
        f = await ringlet.open(fifo, "r+b")
        asyncio.ensure_future(f.read(10))  # left pending when main returns
        await asyncio.sleep(0.01)
        return "done"

    assert asyncio.run(main()) == "done"  # a hang here would hit the test's timeout
    assert asyncio.run(ringlet.read_file(path)) == data


# --------------------------------------------------------------------------
# cancelled opens do not leak file descriptors
# --------------------------------------------------------------------------


# Note: io_uring tries an openat without blocking first.  A FIFO opened
# O_RDONLY then succeeds at once (no wait for a writer), but an open with
# O_CREAT/O_TRUNC is always handed to an io-wq worker, where opening a FIFO
# for writing blocks until a reader appears.  "wb" therefore gives an open that
# is genuinely pending in the kernel.


def _open_fifo_reader_nonblock(path):
    """A FIFO read end opened without blocking (lets pending writer opens complete)."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def test_blocking_fifo_open_for_write_does_not_stall_loop(ringlet, run, fifo):
    async def main():
        counter = [0]
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticker(counter, stop))

        async def writer():
            async with ringlet.open(fifo, "wb") as f:  # blocks until a reader exists
                return await f.write(b"to the reader")

        wtask = asyncio.create_task(writer())
        assert await wait_until(lambda: counter[0] >= 30, timeout=20), counter
        pending = not wtask.done()
        ticks = counter[0]
        rfd = _open_fifo_reader_nonblock(fifo)
        try:
            n = await asyncio.wait_for(wtask, timeout=5)
            os.set_blocking(rfd, True)
            data = os.read(rfd, 100)
        finally:
            os.close(rfd)
        stop.set()
        await ticker
        return pending, ticks, n, data

    pending, ticks, n, data = run(main())
    assert pending is True
    assert ticks >= 30
    assert n == len(b"to the reader")
    assert data == b"to the reader"


@pytest.mark.timeout(30)
def test_cancelled_fifo_opens_do_not_leak_fds(ringlet, run, fifo, make_file):
    path, data = make_file(10)

    async def main():
        await ringlet.read_file(path)  # engine (ring fd, eventfd...) exists
        baseline = fd_count()
        tasks = [asyncio.create_task(ringlet.open(fifo, "wb")) for _ in range(20)]
        await asyncio.sleep(0.05)  # the opens are now blocked in the kernel
        assert not any(t.done() for t in tasks), [t for t in tasks if t.done()]
        for t in tasks:
            t.cancel()
        res = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)  # no reader ever comes

        # Now let any open the kernel did not cancel complete: a reader
        # appears; the engine must close whatever fd such an open returns.
        rfd = _open_fifo_reader_nonblock(fifo)
        await asyncio.sleep(0.1)
        os.close(rfd)

        back = await wait_until(lambda: fd_count() == baseline, timeout=20)
        settled = await wait_until(lambda: _stats(ringlet)["in_flight"] == 0, timeout=20)
        final = fd_count()
        still_works = await ringlet.read_file(path)
        return res, baseline, final, back, settled, still_works

    res, baseline, final, back, settled, still_works = run(main())
    assert all(isinstance(r, asyncio.CancelledError) for r in res), res
    assert final == baseline, f"fd leak: {final - baseline} extra fds"
    assert back
    assert settled is True
    assert still_works == data


@pytest.mark.timeout(30)
def test_cancelled_fifo_open_and_read_tasks_do_not_leak_fds(ringlet, run, fifo, make_file):
    """Tasks doing open(fifo, "rb") + read(), cancelled wherever they are."""
    path, data = make_file(10)

    async def reader():
        async with ringlet.open(fifo, "rb") as f:
            return await f.read(100)

    async def main():
        await ringlet.read_file(path)
        baseline = fd_count()
        tasks = [asyncio.create_task(reader()) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in tasks)
        for t in tasks:
            t.cancel()
        res = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)  # no writer ever comes
        back = await wait_until(lambda: fd_count() == baseline, timeout=20)
        settled = await wait_until(lambda: _stats(ringlet)["in_flight"] == 0, timeout=20)
        return res, baseline, fd_count(), back, settled

    res, baseline, final, back, settled = run(main())
    assert all(isinstance(r, asyncio.CancelledError) for r in res), res
    assert back, f"fd leak: {final - baseline} extra fds"
    assert settled is True


def test_open_completing_after_cancel_is_closed(ringlet, run, fifo):
    """Race the cancel with the completion: the reader appears right as we cancel."""

    async def main():
        assert await ringlet.read_file("/dev/null") == b""  # engine exists before the baseline
        baseline = fd_count()
        outcomes = {"cancelled": 0, "opened": 0}
        for i in range(20):
            task = asyncio.create_task(ringlet.open(fifo, "wb"))
            await asyncio.sleep(0.005 * (i % 4))  # vary where the open is
            rfd = _open_fifo_reader_nonblock(fifo)  # lets the kernel open complete
            task.cancel()
            try:
                f = await asyncio.wait_for(task, 20)
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
            else:
                outcomes["opened"] += 1
                await f.close()  # completion won the race: we own it
            os.close(rfd)
        back = await wait_until(lambda: fd_count() == baseline, timeout=20)
        return back, baseline, fd_count(), outcomes

    back, baseline, final, outcomes = run(main())
    assert sum(outcomes.values()) == 20
    assert back, f"fd leak: baseline {baseline}, now {final}, {outcomes}"


def test_zero_length_read_of_an_empty_fifo_is_empty_at_once(ringlet, run, fifo):
    """os.read(fd, 0) returns b"" at once; io_uring would wait for data."""

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            return (await asyncio.wait_for(engine.read(fd, 0), 20), await asyncio.wait_for(engine._read(fd, 0), 20),
                    await asyncio.wait_for(engine.readinto(fd, bytearray(0)), 20), engine.stats()["in_flight"])
        finally:
            os.close(fd)

    assert run(main()) == (b"", b"", 0, 0)
