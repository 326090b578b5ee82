"""A pending positional read of ringlet's own coroutines (Engine._read and
_readinto with an offset, Engine._pread) is awaited as the operation itself,
without a done callback on its future: a cancelled task throws into it, and
that is what sends the kernel its cancel.  A FIFO keeps such a read pending
(io_uring ignores the offset of a stream), so these tests use one."""

import asyncio
import os

import pytest

from conftest import wait_until


def _stats(ringlet):
    return ringlet.get_engine().stats()


def test_cancelled_task_cancels_the_pending_read_and_loses_nothing(ringlet, require_io_uring, run, fifo):
    async def main():
        eng = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            before = _stats(ringlet)["cancelled"]
            tasks = [asyncio.ensure_future(eng._read(fd, 1, 0)) for _ in range(3)]
            assert await wait_until(lambda: _stats(ringlet)["in_flight"] == 3)
            for t in tasks:
                t.cancel()
            for t in tasks:
                with pytest.raises(asyncio.CancelledError):
                    await t
            settled = await wait_until(lambda: _stats(ringlet)["in_flight"] == 0)
            cancelled = _stats(ringlet)["cancelled"] - before
            os.write(fd, b"intact")
            return settled, cancelled, await eng.read(fd, 6)
        finally:
            os.close(fd)

    assert run(main()) == (True, 3, b"intact")


def test_closing_the_wait_cancels_the_pending_read(ringlet, require_io_uring, run, fifo):
    async def main():
        eng = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            before = _stats(ringlet)["cancelled"]
            pending = eng._read(fd, 1, 0)
            assert await wait_until(lambda: _stats(ringlet)["in_flight"] == 1)
            pending.close()
            settled = await wait_until(lambda: _stats(ringlet)["in_flight"] == 0)
            return settled, _stats(ringlet)["cancelled"] - before
        finally:
            os.close(fd)

    assert run(main()) == (True, 1)


def test_a_read_completed_before_its_await_gives_its_bytes_once(ringlet, require_io_uring, run, fifo):
    async def main():
        eng = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            pending = eng._read(fd, 3, 0)
            assert await wait_until(lambda: _stats(ringlet)["in_flight"] == 1)
            os.write(fd, b"abc")
            assert await wait_until(lambda: _stats(ringlet)["in_flight"] == 0)
            data = await pending
            with pytest.raises(RuntimeError, match="already awaited"):
                await pending
            return data
        finally:
            os.close(fd)

    assert run(main()) == b"abc"

