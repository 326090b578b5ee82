"""pread's outcomes: the io_uring engine hands a cached read's value in one
Outcome object it reuses once nobody else holds it; each outcome still gives
its own read's bytes, however they are held, awaited, or dropped."""

import asyncio
import os
import sys

import pytest


def test_outcomes_held_together_each_give_their_own_bytes(ringlet, run, make_file):
    path, data = make_file(64 * 1024)

    async def main():
        async with ringlet.open(path, "rb") as f:
            first, second = f.pread(100, 0), f.pread(100, 100)
            got = [await second, await first]
            dropped = f.pread(7, 1000)
            dropped.close()  # never awaited (closed, as a coroutine one drops)
            del dropped
            after = await f.pread(50, 200)
            held = f.pread(10, 300)
            again = await held
            with pytest.raises(RuntimeError):
                await held  # as a coroutine awaited twice
            tasks = [asyncio.ensure_future(f.pread(10, i * 10)) for i in range(20)]
            in_tasks = await asyncio.gather(*tasks)
            return got, after, again, in_tasks

    got, after, again, in_tasks = run(main())
    assert got == [data[100:200], data[0:100]]
    assert after == data[200:250]
    assert again == data[300:310]
    assert in_tasks == [data[i * 10:i * 10 + 10] for i in range(20)]


@pytest.mark.parametrize("unit", [100, 256 * 1024, 1 << 20], ids=["100B", "256KiB", "1MiB"])
def test_bytes_refilled_only_once_nobody_holds_them(ringlet, run, make_file, unit):
    """The io_uring engine refills the bytes of a read it made before (small,
    or up to 1 MiB) once the caller dropped them: bytes anybody still holds (a
    name, a memoryview, a list) never change, a refilled one hashes as its new
    content, and a read cut short by the end of the file gets its own."""
    path, data = make_file(25 * unit)

    def at(offset):
        return data[offset:offset + unit]

    async def main():
        async with ringlet.open(path, "rb") as f:
            first = await f.pread(unit, 0)
            hash(first)  # cached in the object
            view = memoryview(await f.pread(unit, unit))
            kept = [await f.pread(unit, 2 * unit + i) for i in range(3)]
            del first
            dropped = [hash(await f.pread(unit, 6 * unit + i)) for i in range(3)]
            short = await f.pread(unit, 25 * unit - unit // 2)
            again = await f.pread(unit, 3 * unit)
            walked, got = [], None
            for i in range(6):  # `got = await f.pread(...)`: the previous bytes are held during each read
                previous = got
                got = await f.pread(unit, 10 * unit + i)
                walked.append((previous == (at(10 * unit + i - 1) if i else None), got == at(10 * unit + i)))
                del previous
            return bytes(view), kept, dropped, short, again, hash(again), walked

    view, kept, dropped, short, again, again_hash, walked = run(main())
    assert walked == [(True, True)] * 6
    assert view == at(unit)
    assert kept == [at(2 * unit + i) for i in range(3)]
    assert dropped == [hash(at(6 * unit + i)) for i in range(3)]
    assert short == data[25 * unit - unit // 2:]
    assert again == at(3 * unit) and again_hash == hash(at(3 * unit))


def test_shutdown_lets_go_of_the_read_buffers_kept_for_reuse(ringlet, run, make_file, require_io_uring):
    """The engine keeps the bytes of its last reads (up to 16 MiB) to fill
    again once nobody holds them; shutdown() drops them, leaving each result
    to its holders alone."""
    path, data = make_file(1 << 20)

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        try:
            got = [await engine.read(fd, size, 0) for size in (100, 1 << 20)]
            held = [sys.getrefcount(b) for b in got]
            engine.shutdown()
            return got, held, [sys.getrefcount(b) for b in got]
        finally:
            os.close(fd)

    got, held, after = run(main())
    assert got == [data[:100], data]
    assert after == [n - 1 for n in held]
