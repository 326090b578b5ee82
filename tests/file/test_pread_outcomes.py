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


def test_bytes_refilled_only_once_nobody_holds_them(ringlet, run, make_file):
    """The io_uring engine refills the bytes of a small read it made before
    once the caller dropped them: bytes anybody still holds (a name, a
    memoryview, a list) never change, a refilled one hashes as its new
    content, and a read cut short by the end of the file gets its own."""
    path, data = make_file(10_000)

    async def main():
        async with ringlet.open(path, "rb") as f:
            first = await f.pread(100, 0)
            hash(first)  # cached in the object
            view = memoryview(await f.pread(100, 100))
            kept = [await f.pread(100, 200 + i) for i in range(3)]
            del first
            dropped = [hash(await f.pread(100, 1000 + i)) for i in range(3)]
            short = await f.pread(100, 9_950)
            again = await f.pread(100, 300)
            walked, got = [], None
            for i in range(6):  # `got = await f.pread(...)`: the previous bytes are held during each read
                previous = got
                got = await f.pread(100, 2000 + i)
                walked.append((previous == (data[1999 + i:2099 + i] if i else None), got == data[2000 + i:2100 + i]))
                del previous
            return bytes(view), kept, dropped, short, again, hash(again), walked

    view, kept, dropped, short, again, again_hash, walked = run(main())
    assert walked == [(True, True)] * 6
    assert view == data[100:200]
    assert kept == [data[200 + i:300 + i] for i in range(3)]
    assert dropped == [hash(data[1000 + i:1100 + i]) for i in range(3)]
    assert short == data[9_950:]
    assert again == data[300:400] and again_hash == hash(data[300:400])
