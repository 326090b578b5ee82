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



def test_the_op_is_its_own_future_for_its_task(ringlet, require_io_uring, run, fifo):
    """Before its await, asyncio takes the op for a coroutine (ensure_future
    and gather wrap it in a task); yielded to the task, it is the future the
    task waits on: done callbacks, result(), cancel() as asyncio.Future has them."""
    async def main():
        eng = ringlet.get_engine()
        loop = asyncio.get_running_loop()
        fd = os.open(fifo, os.O_RDWR)
        try:
            pending = eng._read(fd, 3, 0)
            assert not asyncio.isfuture(pending) and asyncio.iscoroutine(pending)
            assert pending.get_loop() is loop and not pending.done() and not pending.cancelled()
            with pytest.raises(asyncio.InvalidStateError):
                pending.result()
            with pytest.raises(asyncio.InvalidStateError):
                pending.exception()
            seen = []
            pending.add_done_callback(seen.append)
            pending.add_done_callback(lambda op: seen.append("second"))
            pending.add_done_callback(seen.append)
            assert pending.remove_done_callback(seen.append) == 2
            task = asyncio.ensure_future(pending)
            assert await wait_until(lambda: pending._asyncio_future_blocking is False)  # the task's, now
            os.write(fd, b"abc")
            got = await task
            return got, seen, pending.done(), pending.exception(), pending.cancel()
        finally:
            os.close(fd)

    assert run(main()) == (b"abc", ["second"], True, None, False)


def test_wait_for_times_out_a_pending_read_and_cancels_it(ringlet, require_io_uring, run, fifo):
    async def main():
        eng = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            before = _stats(ringlet)["cancelled"]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(eng._read(fd, 1, 0), 0.05)
            settled = await wait_until(lambda: _stats(ringlet)["in_flight"] == 0)
            os.write(fd, b"x")
            return settled, _stats(ringlet)["cancelled"] - before, await eng.read(fd, 1)
        finally:
            os.close(fd)

    assert run(main()) == (True, 1, b"x")


def test_a_cancelled_op_raises_cancelled_with_its_message(ringlet, require_io_uring, run, fifo):
    async def main():
        eng = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        try:
            task = asyncio.ensure_future(eng._read(fd, 1, 0))
            assert await wait_until(lambda: _stats(ringlet)["in_flight"] == 1)
            await asyncio.sleep(0)
            task.cancel("enough")
            with pytest.raises(asyncio.CancelledError) as caught:
                await task
            direct = eng._read(fd, 1, 0)
            assert direct.cancel("bye") and direct.cancelled() and not direct.cancel()
            with pytest.raises(asyncio.CancelledError, match="bye"):
                direct.result()
            with pytest.raises(asyncio.CancelledError, match="bye"):
                await direct
            return caught.value.args, await wait_until(lambda: _stats(ringlet)["in_flight"] == 0)
        finally:
            os.close(fd)

    assert run(main()) == (("enough",), True)


def test_woken_tasks_resume_in_their_own_contexts(ringlet, require_io_uring, run, tmp_path):
    """Many reads completed by one drain: each task resumes in its own context, with its own bytes."""
    import contextvars

    who = contextvars.ContextVar("who")
    paths = []
    for i in range(8):
        paths.append(str(tmp_path / f"fifo{i}"))
        os.mkfifo(paths[-1])

    async def reader(fd, i):
        who.set(i)
        data = await ringlet.get_engine()._read(fd, 2, 0)
        return who.get(), data

    async def main():
        fds = [os.open(p, os.O_RDWR) for p in paths]
        try:
            tasks = [asyncio.ensure_future(reader(fd, i)) for i, fd in enumerate(fds)]
            assert await wait_until(lambda: _stats(ringlet)["in_flight"] == 8)
            for i, fd in reversed(list(enumerate(fds))):
                os.write(fd, b"%02d" % i)
            return await asyncio.gather(*tasks)
        finally:
            for fd in fds:
                os.close(fd)

    assert run(main()) == [(i, b"%02d" % i) for i in range(8)]


def test_an_interrupt_from_a_woken_task_leaves_the_loop_and_the_others_resume_later(ringlet, require_io_uring,
                                                                                   tmp_path):
    """As with asyncio's Handles: a KeyboardInterrupt raised by one resumed
    task leaves run_until_complete; the tasks woken with it still resume when
    the loop runs again, none lost."""
    from conftest import LOOP_FACTORY

    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"fifo{i}"))
        os.mkfifo(paths[-1])
    fds = [os.open(p, os.O_RDWR) for p in paths]
    loop = LOOP_FACTORY() if LOOP_FACTORY else asyncio.new_event_loop()
    resumed = []

    async def reader(fd, i):
        data = await ringlet.get_engine()._read(fd, 1, 0)
        resumed.append(i)
        if i == 0:
            raise KeyboardInterrupt
        return data

    async def start():
        tasks = [asyncio.ensure_future(reader(fd, i)) for i, fd in enumerate(fds)]
        assert await wait_until(lambda: _stats(ringlet)["in_flight"] == 4)
        return tasks

    tasks = []
    try:
        tasks = loop.run_until_complete(start())
        for fd in fds:  # all four complete in one drain
            os.write(fd, b"x")
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.gather(*tasks[1:]))
        rest = loop.run_until_complete(asyncio.gather(*tasks[1:]))
        assert rest == [b"x"] * 3 and sorted(resumed) == [0, 1, 2, 3]
    finally:
        for t in tasks:
            t.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        for fd in fds:
            os.close(fd)


def test_an_error_in_a_done_callback_goes_to_the_loops_handler(ringlet, require_io_uring, run, fifo):
    async def main():
        eng = ringlet.get_engine()
        loop = asyncio.get_running_loop()
        reported = []
        loop.set_exception_handler(lambda loop, context: reported.append(context))
        fd = os.open(fifo, os.O_RDWR)
        try:
            pending = eng._read(fd, 1, 0)

            def boom(op):
                raise ValueError("boom")

            after = []
            pending.add_done_callback(boom)
            pending.add_done_callback(after.append)
            task = asyncio.ensure_future(pending)
            os.write(fd, b"y")
            got = await task
            assert await wait_until(lambda: after)
            return got, [type(c["exception"]) for c in reported], after == [pending]
        finally:
            os.close(fd)

    assert run(main()) == (b"y", [ValueError], True)
