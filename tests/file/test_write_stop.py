"""A cancelled write is awaited to its end, so that what it wrote counts
(_fdio.settle), but the kernel is first asked to stop it (Engine._write_stop):
a write the kernel has not begun does not happen, so a cancel never waits
behind a write that may not run.  The writes here are held in the kernel by a
page of data that stalls the copy from it (userfaultfd): the io_uring engine's
writes to one file run one after the other in the kernel's workers, the
thread engine's in its pool, so a second write waits behind the first for as
long as the test holds the page."""

import asyncio

import pytest


def test_a_cancelled_write_waiting_behind_a_stalled_one_does_not_happen(ringlet, run, tmp_path, stalled_page):
    path = tmp_path / "f"
    page = stalled_page.size

    async def main():
        async with ringlet.open(path, "wb+") as f:
            first = asyncio.ensure_future(f.pwrite(memoryview(stalled_page.memory), 0))
            await stalled_page.touched()  # the first write is in the kernel, stalled
            await f.seek(2 * page)
            second = asyncio.ensure_future(f.write(b"second"))
            await asyncio.sleep(0)  # submitted: behind the first
            in_flight = ringlet.get_engine().stats()["in_flight"]
            second.cancel()
            try:  # the timeout is a guard only: without the stop, the cancel waited for the page
                done, _ = await asyncio.wait({second}, timeout=10)
            finally:
                stalled_page.release(b"A" * page)
            position = await f.tell() if second in done else "the cancelled write waited for the stalled one"
            return in_flight, second.cancelled(), position, await first, ringlet.get_engine().stats()["in_flight"]

    assert run(main()) == (2, True, 2 * page, page, 0)
    assert path.read_bytes() == b"A" * page  # nothing of the second write


def test_a_cancelled_write_the_kernel_has_begun_lands_whole_and_counts(ringlet, run, tmp_path, stalled_page):
    path = tmp_path / "f"
    page = stalled_page.size

    async def main():
        async with ringlet.open(path, "wb+") as f:
            await f.write(b"x" * 100)
            write = asyncio.ensure_future(f.write(memoryview(stalled_page.memory)))
            await stalled_page.touched()
            write.cancel()
            for _ in range(10):
                await asyncio.sleep(0)
            still_waiting = not write.done()
            stalled_page.release(b"A" * page)
            with pytest.raises(asyncio.CancelledError):
                await write
            return still_waiting, await f.tell()

    assert run(main()) == (True, 100 + page)
    assert path.read_bytes() == b"x" * 100 + b"A" * page
