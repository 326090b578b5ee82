"""Nothing of ringlet's own leaks: after every kind of operation -- done,
failed, cancelled, O_DIRECT, batched, copied -- the Op objects, bounce
buffers and copy machines ringlet holds return to zero, and so do fds."""

import asyncio
import os

import pytest

from conftest import fd_count, settled


@pytest.fixture
def live(ringlet, require_io_uring):
    from ringlet import _ringlet

    return _ringlet._live


def test_every_kind_of_operation_leaves_nothing(ringlet, run, live, make_file, tmp_path, fifo):
    path, data = make_file(300_000)
    baseline_fds = fd_count()
    baseline = live()

    async def main():
        engine = ringlet.get_engine()
        for _ in range(3):
            assert await ringlet.read_file(path) == data
            await ringlet.write_file(tmp_path / "w", data)
            await ringlet.copy_file(path, tmp_path / "c")
            async with ringlet.open(path, "rb") as f:
                await f.pread_many([(100, i) for i in range(100)])
                await f.read(10)
                await f.readinto(bytearray(100))
            with pytest.raises(FileNotFoundError):
                await ringlet.read_file(tmp_path / "missing")
            with pytest.raises(OSError):
                await engine.read(-1, 10, 0)
        # cancelled: reads of a FIFO nobody writes, and a copy from it
        f = await ringlet.open(fifo, "r+b")
        tasks = [asyncio.ensure_future(f.read(10)) for _ in range(10)]
        null = os.open(os.devnull, os.O_WRONLY)
        tasks.append(asyncio.ensure_future(engine.copy(f.fileno(), null)))
        await asyncio.sleep(0.02)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await settled(engine)
        await f.close()
        os.close(null)
        # O_DIRECT through bounce buffers, some cancelled
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError:
            fd = None  # this filesystem refuses O_DIRECT; the rest was checked
        if fd is not None:
            futures = [engine.read(fd, 4096, i * 4096, 4096) for i in range(20)]
            for fut in futures[::3]:
                fut.cancel()
            await asyncio.gather(*futures, return_exceptions=True)
            await settled(engine)
            os.close(fd)
        return engine.stats()["in_flight"]

    assert run(main()) == 0
    assert live() == baseline
    assert fd_count() == baseline_fds
