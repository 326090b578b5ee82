"""Inline completions never suspend a task; ringlet still makes a task that
only reads cached data yield now and then, so timers, timeouts and other
tasks keep running."""

import asyncio
import time

import pytest


def test_a_cached_read_loop_lets_other_tasks_run(ringlet, run, make_file):
    path, _ = make_file(1024 * 1024)

    async def main():
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                await asyncio.sleep(0)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        start = ticks
        async with ringlet.open(path, "rb") as f:
            deadline = time.monotonic() + 0.1
            reads = 0
            while time.monotonic() < deadline:
                await f.pread(4096, (reads * 4096) % (1024 * 1024))
                reads += 1
        stop = True
        await task
        return ticks - start, reads

    ticks, reads = run(main())
    assert reads > 100
    assert ticks >= 20  # about one yield per millisecond of inline completions


def test_timeout_fires_on_a_task_that_only_reads_cached_data(ringlet, run, make_file):
    path, _ = make_file(64 * 1024)

    async def forever(f):
        while True:
            await f.pread(4096, 0)

    async def main():
        async with ringlet.open(path, "rb") as f:
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(forever(f), 0.05)
            return time.monotonic() - started

    assert run(main()) < 2.0
