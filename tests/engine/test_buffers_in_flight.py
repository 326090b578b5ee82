"""Buffers in flight: while the kernel may write into (or read from) a
caller's buffer, the buffer export is held, so the buffer cannot be resized,
released or closed under the kernel.  That holds until the completion
arrives -- also after the awaiting task was cancelled -- and no longer.

A readinto on a FIFO opened "r+b" with no data waits as long as we like; a
write into a FIFO whose pipe is full does too.
"""

import asyncio
import fcntl
import gc
import mmap
import os
import array
import weakref

import pytest

from conftest import wait_until, write_fifo

F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def resizable(buf):
    """True if ``buf`` (a bytearray or array) can be resized right now."""
    try:
        buf.append(0)
    except BufferError:
        return False
    buf.pop()
    return True


def in_flight(ringlet):
    return ringlet.get_engine().stats()["in_flight"]


def _engine_readinto(ringlet, f, buf):
    """A read into buf that waits in the kernel: the engine's own readinto of
    the FIFO (AsyncFile.readinto of a stream waits for data before it reads,
    so the kernel never holds its caller's buffer)."""
    return asyncio.ensure_future(ringlet.get_engine().readinto(f.fileno(), buf))


class WeakBytearray(bytearray):
    """A bytearray that can be watched with a weak reference."""


# --------------------------------------------------------------------------
# readinto
# --------------------------------------------------------------------------


def test_readinto_holds_bytearray_until_data_arrives(ringlet, run, fifo):
    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            buf = bytearray(b"." * 8)
            task = _engine_readinto(ringlet, f, buf)
            assert await wait_until(lambda: in_flight(ringlet) == 1)
            await asyncio.sleep(0.01)
            assert not task.done()
            with pytest.raises(BufferError):
                buf.append(0)
            with pytest.raises(BufferError):
                del buf[0]
            with pytest.raises(BufferError):
                buf.extend(b"more")
            assert len(buf) == 8
            write_fifo(fifo, b"abc")
            n = await asyncio.wait_for(task, 5)
            assert n == 3
            assert bytes(buf) == b"abc....."
            assert resizable(buf), "the buffer export must be released after the completion"
            buf.extend(b"xyz")
            assert bytes(buf) == b"abc.....xyz"
            assert in_flight(ringlet) == 0

    run(main())


def test_readinto_cancelled_task_holds_buffer_until_cancel_completion(ringlet, run, fifo):
    """The task gets CancelledError at once; the kernel's cancel completion
    comes later, and until then the buffer is still exported."""

    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            buf = bytearray(16)
            task = _engine_readinto(ringlet, f, buf)
            assert await wait_until(lambda: in_flight(ringlet) == 1)
            assert not resizable(buf)
            task.cancel()
            # Synchronously after cancel(): the future is cancelled, the op is not finished.
            assert not resizable(buf)
            checks = 0
            seen_done_while_held = False
            for _ in range(1000):
                if in_flight(ringlet) == 0:
                    break
                assert not resizable(buf), "buffer resizable while the kernel still owns it"
                checks += 1
                if task.done():
                    seen_done_while_held = True
                await asyncio.sleep(0)
            assert in_flight(ringlet) == 0, "cancel completion never arrived"
            assert task.cancelled()
            assert checks >= 1
            assert resizable(buf), "buffer still exported after the cancel completion"
            # The cancelled read consumed nothing from the FIFO and wrote nothing into buf.
            assert bytes(buf) == bytes(16)
            write_fifo(fifo, b"after cancel")
            assert await asyncio.wait_for(f.read(64), 5) == b"after cancel"
            return seen_done_while_held

    seen = run(main())
    # Not required by the contract (a faster cancel path is fine), but it tells
    # whether the "task done, op still held" window was exercised.
    print("task done while the buffer was still held:", seen)


def test_readinto_shielded_then_outer_cancelled_holds_until_completion(ringlet, run, fifo):
    """The awaiting task is cancelled but the kernel operation goes on
    (asyncio.shield): the buffer stays held until the data arrives, and the
    data lands in it."""

    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            buf = bytearray(10)
            inner = _engine_readinto(ringlet, f, buf)

            async def waiter():
                return await asyncio.shield(inner)

            outer = asyncio.create_task(waiter())
            assert await wait_until(lambda: in_flight(ringlet) == 1)
            outer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await outer
            for _ in range(20):  # the awaiting task is gone; the kernel still owns buf
                await asyncio.sleep(0.001)
                assert not resizable(buf)
                assert in_flight(ringlet) == 1
            write_fifo(fifo, b"0123456789")
            assert await asyncio.wait_for(inner, 5) == 10
            assert bytes(buf) == b"0123456789"
            assert resizable(buf)

    run(main())


def test_readinto_low_level_future_cancel(ringlet, run, fifo):
    """engine.readinto: cancelling its future directly (no task)."""

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            buf = bytearray(4)
            fut = engine.readinto(fd, buf)
            await asyncio.sleep(0.01)
            assert not fut.done()
            assert not resizable(buf)
            fut.cancel()
            assert not resizable(buf)
            assert await wait_until(lambda: engine.stats()["in_flight"] == 0)
            assert resizable(buf)
        finally:
            os.close(fd)

    run(main())


@pytest.mark.parametrize("kind", ["memoryview", "mmap", "array"])
def test_other_exporters_cannot_be_released_in_flight(ringlet, run, fifo, kind):
    """memoryview.release(), mmap.close() and array resizing all refuse while
    the kernel owns the memory, and work again after the completion."""

    async def main():
        if kind == "memoryview":
            base = bytearray(8)
            buf = memoryview(base)
            release = buf.release
        elif kind == "mmap":
            buf = mmap.mmap(-1, mmap.PAGESIZE)
            release = buf.close
        else:
            buf = array.array("B", bytes(8))
            release = lambda: buf.append(1)  # noqa: E731
        async with ringlet.open(fifo, "r+b") as f:
            task = _engine_readinto(ringlet, f, buf)
            assert await wait_until(lambda: in_flight(ringlet) == 1)
            with pytest.raises(BufferError):
                release()
            write_fifo(fifo, b"hi")
            assert await asyncio.wait_for(task, 5) == 2
            assert bytes(buf[:2]) == b"hi"
            release()  # no BufferError any more
            if kind == "array":
                assert len(buf) == 9

    run(main())


@pytest.mark.parametrize("ending", ["data", "cancel"])
def test_dropped_buffer_is_kept_alive_until_completion(ringlet, run, fifo, ending):
    """The caller drops every reference to the buffer while the read is in
    flight: the operation keeps it alive (no use after free), and lets go of
    it once the completion (of the data, or of the cancel) arrives -- then
    nothing else holds it and it is freed."""

    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            buf = WeakBytearray(32)
            ref = weakref.ref(buf)
            task = _engine_readinto(ringlet, f, buf)
            assert await wait_until(lambda: in_flight(ringlet) == 1)
            del buf
            if ending == "cancel":
                task.cancel()
            gc.collect()
            assert ref() is not None, "buffer freed while the kernel may still write into it"
            if ending == "data":
                write_fifo(fifo, b"x" * 32)
                assert await asyncio.wait_for(task, 5) == 32
            assert await wait_until(lambda: in_flight(ringlet) == 0)
            del task
            gc.collect()
            assert ref() is None, f"buffer still referenced after the {ending} completion (leak)"

    run(main())


# --------------------------------------------------------------------------
# write
# --------------------------------------------------------------------------


def _fill_pipe(fd):
    """Fill the pipe behind fd (opened O_RDWR) until a write would block."""
    os.set_blocking(fd, False)
    total = 0
    try:
        while True:
            total += os.write(fd, b"\0" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)
    return total


def test_write_holds_bytearray_until_written(ringlet, run, fifo):
    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            filled = _fill_pipe(f.fileno())
            assert filled >= fcntl.fcntl(f.fileno(), F_GETPIPE_SZ) // 2
            data = bytearray(b"payload!" * 8)
            task = asyncio.create_task(f.write(data))
            assert await wait_until(lambda: in_flight(ringlet) == 1)
            await asyncio.sleep(0.01)
            assert not task.done()
            assert not resizable(data)
            # Drain the pipe from another descriptor: the write can then complete.
            rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            try:
                got = bytearray()
                while len(got) < filled + len(data):
                    try:
                        chunk = os.read(rfd, 1 << 16)
                    except BlockingIOError:
                        await asyncio.sleep(0.001)
                        continue
                    got += chunk
                assert await asyncio.wait_for(task, 5) == len(data)
            finally:
                os.close(rfd)
            assert bytes(got[filled:]) == bytes(data)
            assert resizable(data)

    run(main())


def test_write_cancelled_holds_bytearray_until_cancel_completion(ringlet, run, fifo):
    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            _fill_pipe(f.fileno())
            data = bytearray(b"z" * 100)
            task = asyncio.create_task(f.write(data))
            assert await wait_until(lambda: in_flight(ringlet) == 1)
            task.cancel()
            while in_flight(ringlet):
                assert not resizable(data)
                await asyncio.sleep(0)
            assert task.cancelled()
            assert resizable(data)

    run(main())


def test_buffer_released_when_loop_closes_with_read_in_flight(ringlet, fifo):
    """The loop is closed while a readinto waits: the engine shuts down,
    cancels it, and the buffer export is given back."""
    loop = asyncio.new_event_loop()
    fd = os.open(fifo, os.O_RDWR)
    try:
        buf = bytearray(8)

        async def start():
            engine = ringlet.get_engine()
            fut = engine.readinto(fd, buf)
            await asyncio.sleep(0.01)
            return engine, fut

        engine, fut = loop.run_until_complete(start())
        assert not fut.done()
        assert not resizable(buf)
        loop.close()
        gc.collect()
        assert engine.closed
        assert resizable(buf), "buffer still exported after the loop (and engine) closed"
    finally:
        if not loop.is_closed():
            loop.close()
        os.close(fd)
