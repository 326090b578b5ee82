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


async def _turns_of_another_task(opening, call):
    """Open a file (the awaitable opening), then await call(f, i) for i = 0,
    1, ... until a ticker task has had TURNS turns, or READ_CAP calls were
    made: (the ticker's turns, the calls).  Its turns while the file opened
    do not count."""
    ticks = 0
    stop = False

    async def ticker():
        nonlocal ticks
        while not stop:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    calls = 0
    async with await opening as f:
        start = ticks
        while ticks - start < TURNS and calls < READ_CAP:
            assert await call(f, calls) == 4096
            calls += 1
    stop = True
    await task
    return ticks - start, calls


@pytest.mark.parametrize("how", ["pread", "preadinto"])
def test_a_cached_read_loop_lets_other_tasks_run(ringlet, run, make_file, how):
    path, _ = make_file(1024 * 1024)
    buffer = None if how == "pread" else bytearray(4096)
    ticks, reads = run(_turns_of_another_task(
        ringlet.open(path, "rb"), lambda f, i: _read_4k(f, (i * 4096) % (1024 * 1024), buffer)))
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


@pytest.mark.parametrize("how", ["read /dev/zero", "write /dev/null", "readinto /dev/zero"])
def test_a_device_loop_lets_other_tasks_run(ringlet, run, how):
    """A device that is always ready (/dev/zero, /dev/null) completes every
    call at once: on the thread engine on the loop's thread, where awaiting a
    done future does not yield.  The turn's budget covers them too."""
    verb, path = how.split()
    buffer = bytearray(4096)

    async def call(f, i):
        if verb == "read":
            return len(await f.read(4096))
        return await (f.write(buffer) if verb == "write" else f.readinto(buffer))

    ticks, calls = run(_turns_of_another_task(
        ringlet.open(path, "wb" if verb == "write" else "rb", buffering=0), call))
    assert ticks >= TURNS, f"the other task ran {ticks} times in {calls} calls"
