"""Inline completions never suspend a task; ringlet still makes a task that
only reads cached data yield now and then, so timers, timeouts and other
tasks keep running.

Counted, not timed: a read loop runs until another task has had its turns
(ringlet yields after a millisecond of inline completions, so a slower,
loaded machine only makes those turns come sooner); were there no yields,
the loop would starve the other task and hit its read cap.  How often
ringlet yields is a matter of speed, for `make bench`."""

import asyncio

import pytest

TURNS = 20
READ_CAP = 1_000_000  # far more than a millisecond of reads, on any machine


async def _read_4k(f, offset, buffer):
    """f.pread, or (buffer given) f.preadinto: the count read."""
    return len(await f.pread(4096, offset)) if buffer is None else await f.preadinto(buffer, offset)


@pytest.mark.parametrize("how", ["pread", "preadinto"])
def test_a_cached_read_loop_lets_other_tasks_run(ringlet, run, make_file, how):
    path, _ = make_file(1024 * 1024)
    buffer = None if how == "pread" else bytearray(4096)

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
        reads = 0
        async with ringlet.open(path, "rb") as f:
            while ticks - start < TURNS and reads < READ_CAP:
                assert await _read_4k(f, (reads * 4096) % (1024 * 1024), buffer) == 4096
                reads += 1
        stop = True
        await task
        return ticks - start, reads

    ticks, reads = run(main())
    assert ticks >= TURNS, f"the other task ran {ticks} times in {reads} reads"


@pytest.mark.parametrize("how", ["pread", "preadinto"])
def test_timeout_fires_on_a_task_that_only_reads_cached_data(ringlet, run, make_file, how):
    path, _ = make_file(64 * 1024)
    buffer = None if how == "pread" else bytearray(4096)

    async def forever(f):
        while True:
            await _read_4k(f, 0, buffer)

    async def main():
        async with ringlet.open(path, "rb") as f:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(forever(f), 0.05)  # without yields: a hang, caught by the test's timeout
            return await f.pread(4, 0)

    assert len(run(main())) == 4
