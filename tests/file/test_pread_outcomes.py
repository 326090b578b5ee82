"""pread's outcomes: the io_uring engine hands a cached read's value in one
Outcome object it reuses once nobody else holds it; each outcome still gives
its own read's bytes, however they are held, awaited, or dropped."""

import asyncio

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
