"""O_DIRECT through the engine: aligned bounce buffers, any offset and size."""

import asyncio
import inspect
import os

import pytest

from conftest import wait_until

ALIGN = 4096


@pytest.fixture
def direct_file(tmp_path):
    """(path, data) on a filesystem that accepts O_DIRECT, or a skip saying why."""
    path = tmp_path / "direct.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)
    path.write_bytes(data)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        os.close(fd)
    except OSError as exc:  # tmpfs before Linux 6.6, some overlay filesystems
        pytest.skip(f"{tmp_path} refuses O_DIRECT: {exc}")
    return str(path), data


# (offset, size); offsets from the end of the file are written "end-N" / "end+N".
CASES = [(0, 4096), (1, 10), (4095, 2), (12345, 70000), (0, 0), ("end-5", 100), ("end+10", 5)]


@pytest.mark.parametrize("offset, size", CASES)
def test_direct_reads_any_offset_and_size(ringlet, require_io_uring, run, direct_file, offset, size):
    path, data = direct_file
    if isinstance(offset, str):
        offset = len(data) + int(offset[3:])

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            got = await engine.read(fd, size, offset, ALIGN)
            buf = bytearray(size)
            n = await engine.readinto(fd, buf, offset, ALIGN)
            lazy = await engine._read(fd, size, offset, ALIGN)
            return got, bytes(buf[:n]), lazy
        finally:
            os.close(fd)

    want = data[offset:offset + size]
    assert run(main()) == (want, want, want)


def test_direct_writes_aligned_and_refuses_unaligned(ringlet, require_io_uring, run, direct_file, tmp_path):
    _, data = direct_file
    path = tmp_path / "out.bin"

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT)
        try:
            block = memoryview(data)[1:2 * ALIGN + 1]  # unaligned memory: copied into aligned memory
            assert await engine.write(fd, block, ALIGN, ALIGN) == 2 * ALIGN
            with pytest.raises(ValueError, match="multiples"):
                engine.write(fd, b"x" * 10, 0, ALIGN)
            with pytest.raises(ValueError, match="multiples"):
                engine.write(fd, b"x" * ALIGN, 1, ALIGN)
            os.lseek(fd, ALIGN + 3, os.SEEK_SET)  # offset -1: the descriptor's offset, taken explicitly
            assert await engine.read(fd, 10, -1, ALIGN) == (bytes(ALIGN) + data[1:2 * ALIGN + 1])[ALIGN + 3:ALIGN + 13]
            assert os.lseek(fd, 0, os.SEEK_CUR) == ALIGN + 13  # and moved past the bytes read
            with pytest.raises(ValueError, match="power of two"):
                engine.read(fd, 10, 0, 1000)
        finally:
            os.close(fd)

    run(main())
    assert path.read_bytes() == bytes(ALIGN) + data[1:2 * ALIGN + 1]


def test_direct_submissions_are_batched_per_loop_tick(ringlet, require_io_uring, run, direct_file):
    """O_DIRECT never completes inline, so its SQEs wait for the end of the tick: many per io_uring_enter."""
    path, data = direct_file
    offsets = [i * ALIGN for i in range(64)]

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            before = engine.stats()
            got = await asyncio.gather(*(engine.read(fd, ALIGN, off, ALIGN) for off in offsets))
            after = engine.stats()
        finally:
            os.close(fd)
        return got, after["enter_calls"] - before["enter_calls"], after["submitted"] - before["submitted"]

    got, enters, submitted = run(main())
    assert got == [data[off:off + ALIGN] for off in offsets]
    assert submitted == 64
    assert enters < 32  # one submission for the tick, plus the wake-ups that reap


def test_direct_read_made_by_a_task_the_drain_woke_goes_to_the_kernel_at_once(ringlet, require_io_uring, run,
                                                                             direct_file):
    """A task woken by the loop's reader callback (_drain_and_wake) submits
    the O_DIRECT read it makes then with one io_uring_enter inside the call:
    the device starts on it while the other tasks are woken.  Made anywhere
    else (a task the loop ran), the read waits for the end of the tick."""
    import sys

    from ringlet._engine import _Watch

    path, data = direct_file
    offsets = [i * ALIGN for i in range(48)]

    async def reader(f, engine, first, seen):
        got = [await f.pread(ALIGN, offsets[first])]
        for off in offsets[first + 1:first + 12]:
            # the coroutine's caller frame: the _Watch (woken from its drain) or the loop's Handle
            by_drain = sys._getframe(0).f_back.f_code is _Watch.__call__.__code__
            before = engine.stats()["enter_calls"]
            read = f.pread(ALIGN, off)
            seen.append((by_drain, engine.stats()["enter_calls"] - before))
            got.append(await read)
        return got

    async def main():
        engine = ringlet.get_engine()
        seen = []
        async with ringlet.open(path, "rb", direct=True) as f:
            got = await asyncio.gather(*(reader(f, engine, first, seen) for first in range(0, 48, 12)))
        return [b for part in got for b in part], seen

    got, seen = run(main())
    assert got == [data[off:off + ALIGN] for off in offsets]
    assert len(seen) == 44
    if not any(by_drain for by_drain, _ in seen):
        pytest.skip("O_DIRECT completes within the submission here: no task is woken by a drain")
    assert all(enters == (1 if by_drain else 0) for by_drain, enters in seen), seen


def test_reads_completed_together_wake_their_tasks_from_one_reader_callback(ringlet, require_io_uring, run,
                                                                            direct_file):
    """40 O_DIRECT reads that completed while the loop was busy: the kernel
    runs at most 20 deferred completions an io_uring_enter (6.x), and the
    reader callback (_drain_and_wake) reaps again after waking their tasks,
    so all 40 tasks resume inside one call of it, not one loop turn per 20."""
    import sys
    import time

    from ringlet._engine import _Watch

    path, data = direct_file
    offsets = [i * ALIGN for i in range(40)]
    resumed_by = []

    async def reader(f, off):
        got = await f.pread(ALIGN, off)
        resumed_by.append(sys._getframe(0).f_back)  # the _Watch's frame when its drain woke this task
        return got

    async def main():
        async with ringlet.open(path, "rb", direct=True) as f:
            tasks = [asyncio.ensure_future(reader(f, off)) for off in offsets]
            await asyncio.sleep(0)  # the tasks submit their reads
            await asyncio.sleep(0)
            time.sleep(1.0)  # the loop busy: the device answers meanwhile, nobody reaps
            return await asyncio.gather(*tasks)

    got = run(main())
    assert got == [data[off:off + ALIGN] for off in offsets]
    if not any(frame.f_code is _Watch.__call__.__code__ for frame in resumed_by):
        pytest.skip("O_DIRECT completes within the submission here: no task is woken by a drain")
    assert len({id(frame) for frame in resumed_by}) == 1
    assert resumed_by[0].f_code is _Watch.__call__.__code__


def test_direct_read_cancelled_keeps_memory_until_completion(ringlet, require_io_uring, run, direct_file):
    path, data = direct_file

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            futures = [engine.read(fd, 65536, i * 65536, ALIGN) for i in range(40)]
            futures[0].cancel()
            for f in futures[1::2]:
                f.cancel()
            done = [await f for f in futures[2::2]]
            for _ in range(400):
                if engine.stats()["in_flight"] == 0:
                    break
                await asyncio.sleep(0.005)
            return done, engine.stats()["in_flight"]
        finally:
            os.close(fd)

    done, in_flight = run(main())
    assert done == [data[i * 65536:(i + 1) * 65536] for i in range(2, 40, 2)]
    assert in_flight == 0


def test_open_direct_reads_like_a_buffered_file(ringlet, require_io_uring, run, direct_file):
    path, data = direct_file

    async def main():
        async with ringlet.open(path, "rb", direct=True) as f:
            head = await f.read(10)
            middle = await f.read(5000)
            at = await f.pread(100, 4095)
            many = await f.pread_many([(7, 1), (4096, 8192)])
            await f.seek(-50, os.SEEK_END)
            tail = await f.read()
            await f.seek(0)
            whole = await f.read()
            position = await f.tell()
        return head, middle, at, many, tail, whole, position

    head, middle, at, many, tail, whole, position = run(main())
    assert head == data[:10] and middle == data[10:5010] and at == data[4095:4195]
    assert many == [data[1:8], data[8192:12288]]
    assert tail == data[-50:] and whole == data and position == len(data)


def test_open_direct_writes_aligned_direct_and_the_rest_buffered(ringlet, require_io_uring, run, direct_file, tmp_path):
    _, data = direct_file
    path = tmp_path / "direct-out.bin"

    async def main():
        async with ringlet.open(path, "w+b", direct=True) as f:
            await f.write(data[:ALIGN * 3])            # aligned: O_DIRECT
            await f.write(data[ALIGN * 3:ALIGN * 3 + 10])  # unaligned length: the buffered descriptor
            await f.pwrite(data[:100], 5)              # unaligned offset
            await f.fsync()
            await f.seek(0)
            return await f.read()

    expected = bytearray(data[:ALIGN * 3 + 10])
    expected[5:105] = data[:100]
    assert run(main()) == bytes(expected)
    assert path.read_bytes() == bytes(expected)


@pytest.mark.parametrize("mode", ["r", "ab", "a+b"])
def test_open_direct_refuses_text_and_append(ringlet, run, direct_file, mode):
    path, _ = direct_file

    async def main():
        with pytest.raises(ValueError, match="direct"):
            await ringlet.open(path, mode, direct=True)

    run(main())


def test_open_direct_refuses_a_fifo(ringlet, require_io_uring, run, fifo):
    async def main():
        with pytest.raises((ValueError, OSError)):
            await ringlet.open(fifo, "r+b", direct=True)

    run(main())


def test_direct_preadinto_any_buffer_offset_and_size(ringlet, require_io_uring, run, direct_file):
    """preadinto on a direct=True file: an aligned mmap at an aligned offset
    (read by the device straight into it: no bounce buffer), a bytearray at
    an odd one, a read past the end: the file's bytes, the counts os.preadv
    gives on a buffered descriptor."""
    import mmap

    from ringlet import _ringlet

    path, data = direct_file

    async def main():
        aligned, odd, tail = mmap.mmap(-1, 2 * ALIGN), bytearray(5000), bytearray(100)
        async with ringlet.open(path, "rb", direct=True) as f:
            straight = f.preadinto(aligned, 3 * ALIGN)  # the read is made by the call
            bounces = _ringlet._live()["bounce_buffers"]
            counts = [await straight, *await asyncio.gather(f.preadinto(odd, 4097),
                                                            f.preadinto(tail, len(data) - 30))]
        return bounces, counts, bytes(aligned), bytes(odd), bytes(tail[:30])

    bounces, counts, aligned, odd, tail = run(main())
    assert bounces == 0
    assert counts == [2 * ALIGN, 5000, 30]
    assert aligned == data[3 * ALIGN:5 * ALIGN] and odd == data[4097:9097] and tail == data[-30:]


def test_direct_readinto_aligned_memory_goes_straight_to_it(ringlet, require_io_uring, run, direct_file):
    """An aligned buffer (mmap) at an aligned offset needs no bounce buffer;
    an unaligned one (a bytearray slice) still reads right."""
    import mmap

    from ringlet import _ringlet

    path, data = direct_file

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            aligned = mmap.mmap(-1, 2 * ALIGN)
            fut = engine.readinto(fd, aligned, ALIGN, ALIGN)
            bounces = _ringlet._live()["bounce_buffers"]
            n = await fut
            unaligned = bytearray(2 * ALIGN + 1)
            m = await engine.readinto(fd, memoryview(unaligned)[1:], ALIGN, ALIGN)
            return bounces, n, bytes(aligned), m, bytes(unaligned[1:])
        finally:
            os.close(fd)

    bounces, n, aligned, m, unaligned = run(main())
    assert bounces == 0
    assert n == m == 2 * ALIGN
    assert aligned == unaligned == data[ALIGN:3 * ALIGN]


def test_direct_pread_is_a_coroutine_made_by_the_engine(ringlet, run, direct_file):
    """pread on a direct=True file goes to the engine's _pread with its
    alignment (no Python frame of the file's): still a coroutine for asyncio,
    any offset and size, any __index__, errors raised by the await."""
    import operator

    path, data = direct_file

    class Index:
        def __init__(self, n):
            self.n = n

        def __index__(self):
            return self.n

    async def main():
        async with ringlet.open(path, "rb", direct=True) as f:
            assert asyncio.iscoroutinefunction(f.pread)
            probe = f.pread(10, 4095)
            assert asyncio.iscoroutine(probe)
            if type(ringlet.get_engine()).__module__ == "ringlet._ringlet":
                assert not inspect.iscoroutine(probe)  # the C engine's awaitable, not a Python coroutine
            task = asyncio.create_task(f.pread(ALIGN, 3 * ALIGN))
            pending = f.pread(10, -1)  # no error yet
            with pytest.raises(ValueError):
                await pending
            with pytest.raises(TypeError):
                await f.pread("10", 0)
            return (await probe, await task, await f.pread(Index(7), Index(operator.index(5))),
                    await f.pread(100, len(data) - 5), await f.pread(0, 0))

    assert run(main()) == (data[4095:4105], data[3 * ALIGN:4 * ALIGN], data[5:12], data[-5:], b"")


def test_direct_pread_cancelled_keeps_its_bounce_buffer_until_completion(ringlet, require_io_uring, run,
                                                                         direct_file):
    """A cancelled O_DIRECT pread: the aligned memory it reads into stays
    ringlet's until the completion, and the cancel goes to the kernel once
    for each read still in flight then (none where O_DIRECT completes within
    the submission, as on tmpfs)."""
    from ringlet import _ringlet

    path, data = direct_file

    async def main():
        engine = ringlet.get_engine()
        base = _ringlet._live()["bounce_buffers"]
        async with ringlet.open(path, "rb", direct=True) as f:
            s0 = engine.stats()
            tasks = [asyncio.ensure_future(f.pread(65536, i * 65536)) for i in range(16)]
            await asyncio.sleep(0)  # submitted at the end of this tick
            held = _ringlet._live()["bounce_buffers"] - base
            for t in tasks[::2]:
                t.cancel()
            done = [await t for t in tasks[1::2]]
            await wait_until(lambda: engine.stats()["in_flight"] == 0)
            s1 = engine.stats()
        return held, done, s1["in_flight"], s1["cancelled"] - s0["cancelled"], _ringlet._live()["bounce_buffers"] - base

    held, done, in_flight, cancelled, left = run(main())
    assert 8 <= held <= 16  # each read in flight holds one (a fast device may have answered a few already)
    assert done == [data[i * 65536:(i + 1) * 65536] for i in range(1, 16, 2)]
    assert in_flight == 0 and left == 0
    assert cancelled <= 8


def test_an_o_direct_descriptor_gets_no_nonblocking_attempt(ringlet, require_io_uring, run, direct_file):
    """On an O_DIRECT descriptor, RWF_NOWAIT does not refuse to wait: it reads
    from the device on the loop's thread.  Reads there (no align given, the
    memory aligned by the caller) go to the ring, the loop never waits."""
    import mmap

    path, data = direct_file

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        os.fsync(fd)  # dirty pages would make the attempt refuse (EAGAIN) by themselves
        try:
            before = engine.stats()
            buffers = [mmap.mmap(-1, ALIGN) for _ in range(8)]
            counts = await asyncio.gather(*(engine.readinto(fd, buf, i * ALIGN) for i, buf in enumerate(buffers)))
            after = engine.stats()
        finally:
            os.close(fd)
        return counts, [bytes(b) for b in buffers], after["completed_nowait"] - before["completed_nowait"]

    counts, got, nowait = run(main())
    assert counts == [ALIGN] * 8
    assert got == [data[i * ALIGN:(i + 1) * ALIGN] for i in range(8)]
    assert nowait == 0


def test_a_number_reused_for_an_o_direct_file_is_looked_at_again(ringlet, require_io_uring, run, direct_file):
    """A buffered descriptor read through the engine (a non-blocking attempt:
    its number is known as not O_DIRECT), closed with os.close, not by
    ringlet; the engine then opens an O_DIRECT file under the same number.
    Its reads go to the ring: the number is looked at anew when an open
    returns it, not taken for the old file's."""
    import mmap

    path, data = direct_file

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)  # dirty pages would make an O_DIRECT attempt refuse (EAGAIN) by themselves
        before = engine.stats()
        first = await engine.read(fd, ALIGN, 0)
        middle = engine.stats()
        os.close(fd)
        direct_fd = await engine.open(os.fsencode(path), os.O_RDONLY | os.O_DIRECT)
        try:
            buffers = [mmap.mmap(-1, ALIGN) for _ in range(4)]
            counts = await asyncio.gather(*(engine.readinto(direct_fd, buf, i * ALIGN)
                                            for i, buf in enumerate(buffers)))
            after = engine.stats()
        finally:
            os.close(direct_fd)
        return (fd, direct_fd, first, counts, [bytes(b) for b in buffers],
                middle["completed_nowait"] - before["completed_nowait"],
                after["completed_nowait"] - middle["completed_nowait"])

    fd, direct_fd, first, counts, got, nowait_buffered, nowait_direct = run(main())
    assert direct_fd == fd  # the lowest free number: the one just closed
    assert first == data[:ALIGN] and nowait_buffered == 1
    assert counts == [ALIGN] * 4
    assert got == [data[i * ALIGN:(i + 1) * ALIGN] for i in range(4)]
    assert nowait_direct == 0


def _buffered_then_direct(path, read_buffered):
    """Reads a buffered descriptor with read_buffered(fd), closes it with
    os.close and opens the file O_DIRECT with os.open: the same number."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages would make an O_DIRECT attempt refuse (EAGAIN) by themselves
        first = read_buffered(fd)
    finally:
        os.close(fd)
    direct_fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    assert direct_fd == fd  # the lowest free number: the one just closed
    return first, direct_fd


def test_the_low_level_reads_look_at_a_callers_descriptor_anew(ringlet, require_io_uring, run, direct_file):
    """engine.read/readinto/read_many take descriptors the caller manages:
    after os.close and os.open under the same number, now O_DIRECT, the read
    goes to the ring (no non-blocking attempt, which on O_DIRECT would read
    from the device on the loop's thread)."""
    import mmap

    path, data = direct_file

    async def main():
        engine = ringlet.get_engine()
        results = []
        for method in ("read", "readinto", "read_many"):
            before = engine.stats()["completed_nowait"]
            pending = []

            def read_buffered(fd):
                pending.append(asyncio.ensure_future(engine.read(fd, ALIGN, 0)))

            _, direct_fd = _buffered_then_direct(path, read_buffered)
            try:
                first = await pending[0]
                middle = engine.stats()["completed_nowait"]
                buf = mmap.mmap(-1, ALIGN)
                if method == "read_many":  # an aligned size and offset; bytes are not aligned memory
                    got = await asyncio.gather(engine.read_many(direct_fd, [(ALIGN, ALIGN)]),
                                               return_exceptions=True)
                    got = "error" if isinstance(got[0], OSError) else got[0]
                elif method == "readinto":
                    got = (await engine.readinto(direct_fd, buf, ALIGN), bytes(buf))
                else:
                    got = await asyncio.gather(engine.read(direct_fd, ALIGN, ALIGN), return_exceptions=True)
                    got = "error" if isinstance(got[0], OSError) else got[0]
            finally:
                os.close(direct_fd)
            results.append((method, first, middle - before, engine.stats()["completed_nowait"] - middle, got))
        return results

    for method, first, nowait_buffered, nowait_direct, got in run(main()):
        assert first == data[:ALIGN] and nowait_buffered == 1, method
        assert nowait_direct == 0, method
        if method == "readinto":
            assert got == (ALIGN, data[ALIGN:2 * ALIGN])
        else:  # bytes: the kernel may refuse their memory (EINVAL) or read into it; never inline
            assert got in ("error", [data[ALIGN:2 * ALIGN]], data[ALIGN:2 * ALIGN]), method


def test_a_descriptor_handed_to_open_is_looked_at_anew(ringlet, require_io_uring, run, direct_file):
    """ringlet.open(fd) and an opener hand over numbers the engine did not
    open: one read before through the engine (known as not O_DIRECT), closed
    with os.close and reused for an O_DIRECT file, is looked at anew."""
    import mmap

    path, data = direct_file

    async def main():
        engine = ringlet.get_engine()
        results = []
        for how in ("fd", "opener"):
            pending = []
            _, direct_fd = _buffered_then_direct(
                path, lambda fd: pending.append(asyncio.ensure_future(engine.read(fd, ALIGN, 0))))
            await pending[0]
            before = engine.stats()["completed_nowait"]
            buf = mmap.mmap(-1, ALIGN)
            if how == "fd":
                f = await ringlet.open(direct_fd, "rb")
            else:
                os.close(direct_fd)
                f = await ringlet.open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_DIRECT))
                assert f.fileno() == direct_fd
            async with f:
                n = await f.readinto(buf)
            results.append((how, n, bytes(buf), engine.stats()["completed_nowait"] - before))
        return results

    for how, n, got, nowait in run(main()):
        assert (n, got) == (ALIGN, data[:ALIGN]), how
        assert nowait == 0, how
