"""Every way the io_uring engine moves memory, once, with the data checked:
run by `make valgrind` under memcheck on a build with RINGLET_VALGRIND (not
collected by pytest: valgrind makes a run ~50 times slower, so this is one
pass over the engine's paths, not the suite).  Exits non-zero on a wrong
result; valgrind's exit code reports memory errors and leaks.  (valgrind
3.19 does not know openat2, which it says once: read_file's cached open then
takes its fallback, the ring's open.)"""
import asyncio
import os
import tempfile

import ringlet


async def cancelled_pipe_read() -> None:
    """A read the kernel holds, cancelled: its buffer stays alive until the completion."""
    r, w = os.pipe()
    try:
        async with ringlet.open(r, "rb", closefd=False) as f:
            task = asyncio.ensure_future(f.read(10))
            await asyncio.sleep(0.05)
            task.cancel()
            try:
                await task
                raise AssertionError("the pipe read was not cancelled")
            except asyncio.CancelledError:
                pass
            os.write(w, b"after")
            assert await f.read(5) == b"after"
    finally:
        os.close(r)
        os.close(w)


async def stopped_write(path: str, data: bytes) -> None:
    """A write behind another to the same file, cancelled: the kernel is asked
    to stop it (Engine._write_stop); it is withdrawn, or it has landed whole
    (it may even have ended before the cancel, on a busy machine)."""
    async with ringlet.open(path, "wb") as f:
        first = asyncio.ensure_future(f.pwrite(data, 0))
        second = asyncio.ensure_future(f.pwrite(b"second", len(data)))
        await asyncio.sleep(0)
        second.cancel()
        try:
            assert await second == len(b"second")
        except asyncio.CancelledError:
            pass
        assert await first == len(data)
    assert open(path, "rb").read() in (data, data + b"second")


async def main() -> None:
    assert ringlet.backend().startswith("io_uring"), ringlet.backend()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        p = os.path.join(d, "data.bin")
        data = os.urandom(8 << 20)
        await ringlet.write_file(p, data)  # the kernel chain: open, write, close
        assert await ringlet.read_file(p) == data  # in parts, one by a kernel worker
        small = os.path.join(d, "small.bin")
        await ringlet.write_file(small, data[:4096])
        assert await ringlet.read_file(small) == data[:4096]

        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the next reads go to the ring
        os.close(fd)
        async with ringlet.open(p, "rb") as f:
            assert await f.pread(4096, 1 << 20) == data[1 << 20:(1 << 20) + 4096]
            assert await f.pread_many([(100, 0), (5000, 3 << 20)]) == [data[:100], data[3 << 20:(3 << 20) + 5000]]
            buf = bytearray(1000)
            assert await f.preadinto(buf, 12345) == 1000 and bytes(buf) == data[12345:13345]
            assert await f.read(10) == data[:10] and await f.read(10) == data[10:20]
        with open(p, "rb") as cached:
            cached.read()
        engine = ringlet.get_engine()
        sqpoll = engine._sqpoll_always(True)  # the SQPOLL thread copies part of each large batch
        shared = engine.stats()["completed_nowait_sqpoll"]
        async with ringlet.open(p, "rb") as f:
            requests = [(4096 + i, i * 40_000) for i in range(48)] + [(5000, len(data) - 100)]
            assert await f.pread_many(requests) == [data[o:o + n] for n, o in requests]
        shared = engine.stats()["completed_nowait_sqpoll"] - shared
        assert shared >= 8 if sqpoll else shared == 0, shared
        print("valgrind smoke: the SQPOLL thread copied", shared, "reads" if sqpoll else "(not to be had here)")
        async with ringlet.open(p, "rb", direct=True) as f:
            assert await f.pread(8192, 4096) == data[4096:12288]

        q = os.path.join(d, "copy.bin")
        await ringlet.copy_file(p, q)
        assert open(q, "rb").read() == data
        async with ringlet.open(q, "r+b") as f:
            assert await f.pwrite(b"xyz", 10) == 3
            await f.seek(0, os.SEEK_END)
            assert await f.write(b"tail") == 4
        assert open(q, "rb").read() == data[:10] + b"xyz" + data[13:] + b"tail"

        st = await ringlet.os.stat(q)  # statx: the kernel fills the struct
        assert st.st_size == len(data) + 4 == os.stat(q).st_size
        await ringlet.os.mkdir(os.path.join(d, "sub"))
        await ringlet.os.rename(q, os.path.join(d, "sub", "moved.bin"))
        assert await ringlet.os.listdir(os.path.join(d, "sub")) == ["moved.bin"]
        await ringlet.os.unlink(os.path.join(d, "sub", "moved.bin"))

        lines = os.path.join(d, "lines.txt")
        await ringlet.write_file(lines, b"".join(b"line %d\n" % i for i in range(3000)))
        async with ringlet.open(lines, "rb") as f:  # lines read ahead, given without a turn
            assert await f.readline() == b"line 0\n" and await f.readline() == b"line 1\n"
            assert [line async for line in f][-1] == b"line 2999\n"
        async with ringlet.open(lines, encoding="ascii") as t:
            assert (await t.readline(), len(await t.readlines())) == ("line 0\n", 2999)

        await cancelled_pipe_read()
        await stopped_write(os.path.join(d, "stopped.bin"), data)
    print("valgrind smoke: every path gave the right data")


asyncio.run(main())
