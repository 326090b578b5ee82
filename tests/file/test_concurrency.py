"""asyncio integration: gather, TaskGroup, wait_for/timeout, shield,
return_exceptions, many ops in flight, and no helper threads."""

import asyncio
import os
import threading
import time

import pytest

from conftest import open_fifo_writer, read_os, wait_until


def _in_flight(ringlet):
    return ringlet.get_engine().stats()["in_flight"]


# --------------------------------------------------------------------------
# many operations at once
# --------------------------------------------------------------------------


def test_200_concurrent_preads_in_order(ringlet, run, make_file):
    chunk = 4096
    path, data = make_file(200 * chunk + 123)

    async def main():
        async with ringlet.open(path, "rb") as f:
            # distinct offsets, deliberately not page aligned for half of them
            offsets = [i * chunk + (i % 2) * 7 for i in range(200)]
            results = await asyncio.gather(*(f.pread(chunk, off) for off in offsets))
        return offsets, results

    offsets, results = run(main())
    assert len(results) == 200
    for off, got in zip(offsets, results):
        assert got == data[off : off + chunk], off


def test_200_concurrent_preads_reverse_and_mixed_sizes(ringlet, run, make_file):
    path, data = make_file(3 * 1024 * 1024 + 7)

    async def main():
        async with ringlet.open(path, "rb") as f:
            reqs = [(1 + (i * 7919) % 20000, len(data) - (i + 1) * 15000) for i in range(200)]
            results = await asyncio.gather(*(f.pread(n, off) for n, off in reqs))
        return reqs, results

    reqs, results = run(main())
    for (n, off), got in zip(reqs, results):
        assert got == data[off : off + n]


def test_gather_read_file_many_files(ringlet, run, make_file):
    files = [make_file(n) for n in (0, 1, 4095, 4096, 4097, 65536, 100_000) * 8]

    async def main():
        return await asyncio.gather(*(ringlet.read_file(p) for p, _ in files))

    results = run(main())
    assert results == [d for _, d in files]


def test_gather_write_file_many_files(ringlet, run, tmp_path):
    items = [(str(tmp_path / f"w{i}.bin"), os.urandom(i * 1000 + 1)) for i in range(60)]

    async def main():
        return await asyncio.gather(*(ringlet.write_file(p, d) for p, d in items))

    ns = run(main())
    assert ns == [len(d) for _, d in items]
    for p, d in items:
        assert read_os(p) == d


def test_concurrent_pwrites_same_file(ringlet, run, tmp_path):
    path = str(tmp_path / "pw.bin")
    blocks = [os.urandom(4096) for _ in range(100)]

    async def main():
        async with ringlet.open(path, "wb") as f:
            # issue in a scrambled order, each at its own offset
            order = [(i * 37) % 100 for i in range(100)]
            ns = await asyncio.gather(*(f.pwrite(blocks[i], i * 4096) for i in order))
            await f.fsync()
        return ns

    ns = run(main())
    assert ns == [4096] * 100
    assert read_os(path) == b"".join(blocks)


def test_gather_copies(ringlet, run, make_file, tmp_path):
    srcs = [make_file(n) for n in (0, 1, 4097, 1 << 20, 3 * 1024 * 1024 + 7)]

    async def main():
        return await asyncio.gather(
            *(ringlet.copy_file(p, str(tmp_path / f"c{i}.bin")) for i, (p, _) in enumerate(srcs))
        )

    ns = run(main())
    assert ns == [len(d) for _, d in srcs]
    for i, (_, d) in enumerate(srcs):
        assert read_os(str(tmp_path / f"c{i}.bin")) == d


def test_taskgroup_many_reads(ringlet, run, make_file):
    files = [make_file(1000 + i * 513) for i in range(50)]

    async def main():
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(ringlet.read_file(p)) for p, _ in files]
            async with ringlet.open(files[0][0], "rb") as f:
                ptasks = [tg.create_task(f.pread(100, i * 10)) for i in range(50)]
                # the TaskGroup waits for these before the file is closed
                await asyncio.gather(*ptasks)
        return [t.result() for t in tasks], [t.result() for t in ptasks]

    reads, preads = run(main())
    assert reads == [d for _, d in files]
    d0 = files[0][1]
    assert preads == [d0[i * 10 : i * 10 + 100] for i in range(50)]


def test_taskgroup_failure_cancels_pending_fifo_read(ringlet, run, fifo, tmp_path):
    async def main():
        f = await ringlet.open(fifo, "r+b")
        pending = None
        try:
            with pytest.raises(ExceptionGroup) as ei:
                async with asyncio.TaskGroup() as tg:
                    pending = tg.create_task(f.read(100))  # blocks forever

                    async def fail_later():
                        await asyncio.sleep(0.02)
                        await ringlet.read_file(str(tmp_path / "missing"))

                    tg.create_task(fail_later())
            assert pending.cancelled()
            excs = ei.value.exceptions
            assert len(excs) == 1 and isinstance(excs[0], FileNotFoundError)
            settled = await wait_until(lambda: _in_flight(ringlet) == 0, timeout=20)
        finally:
            await f.close()
        return settled

    assert run(main()) is True


def test_gather_return_exceptions(ringlet, run, make_file, tmp_path):
    good, data = make_file(4097)
    missing = str(tmp_path / "missing")

    async def main():
        async def bad_pread():
            async with ringlet.open(good, "rb") as f:
                return await f.pread(10, -5)

        return await asyncio.gather(
            ringlet.read_file(good),
            ringlet.read_file(missing),
            ringlet.read_file(str(tmp_path)),
            bad_pread(),
            ringlet.read_file(good),
            return_exceptions=True,
        )

    r = run(main())
    assert r[0] == data
    assert isinstance(r[1], FileNotFoundError) and r[1].filename == missing
    assert isinstance(r[2], IsADirectoryError)
    assert isinstance(r[3], ValueError)
    assert r[4] == data


def test_gather_without_return_exceptions_propagates_first_error(ringlet, run, make_file, tmp_path):
    good, _ = make_file(10)

    async def main():
        await asyncio.gather(ringlet.read_file(good), ringlet.read_file(str(tmp_path / "missing")))

    with pytest.raises(FileNotFoundError):
        run(main())


# --------------------------------------------------------------------------
# timeouts and shield on a read that never completes by itself
# --------------------------------------------------------------------------


def test_wait_for_timeout_on_fifo_read(ringlet, run, fifo, make_file):
    path, data = make_file(4097)

    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(f.read(100), timeout=0.1)
            elapsed = time.monotonic() - t0
            settled = await wait_until(lambda: _in_flight(ringlet) == 0, timeout=20)
        after = await ringlet.read_file(path)
        return elapsed, settled, after

    elapsed, settled, after = run(main())
    assert elapsed >= 0.09  # not before its timeout; a hang would hit the test's timeout
    assert settled is True
    assert after == data


def test_asyncio_timeout_on_fifo_read(ringlet, run, fifo):
    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await f.read(100)
            elapsed = time.monotonic() - t0
            # the FIFO still works and the timed-out read did not eat data
            wfd = os.open(fifo, os.O_WRONLY)
            try:
                os.write(wfd, b"after-timeout")
                got = await asyncio.wait_for(f.read(100), timeout=5)
            finally:
                os.close(wfd)
        return elapsed, got

    elapsed, got = run(main())
    assert elapsed >= 0.09  # not before its timeout
    assert got == b"after-timeout"


def test_wait_for_completes_in_time(ringlet, run, make_file):
    path, data = make_file(3 * 1024 * 1024 + 7)

    async def main():
        return await asyncio.wait_for(ringlet.read_file(path), timeout=10)

    assert run(main()) == data


def test_shield_keeps_read_alive(ringlet, run, fifo):
    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            inner = asyncio.ensure_future(f.read(5))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(inner), timeout=0.05)
            still_pending = not inner.done()
            wfd = os.open(fifo, os.O_WRONLY)
            try:
                os.write(wfd, b"hello")
                got = await asyncio.wait_for(inner, timeout=5)
            finally:
                os.close(wfd)
        return still_pending, got

    still_pending, got = run(main())
    assert still_pending is True
    assert got == b"hello"


def test_shield_outer_cancel(ringlet, run, make_file):
    path, data = make_file(100_000)

    async def main():
        inner = asyncio.ensure_future(ringlet.read_file(path))
        outer = asyncio.shield(inner)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        return await inner

    assert run(main()) == data


# --------------------------------------------------------------------------
# no threads
# --------------------------------------------------------------------------


def test_no_threads_started_for_io(ringlet, run, require_io_uring, make_file, tmp_path, fifo):
    files = [make_file(n) for n in (0, 1, 4097, 200_000)]
    # Threads of earlier tests may end meanwhile (an idle worker of the thread
    # backend): what must hold is that none starts.
    before = set(threading.enumerate())

    async def main():
        in_loop_before = set(threading.enumerate())
        for _ in range(5):
            await asyncio.gather(*(ringlet.read_file(p) for p, _ in files))
            await asyncio.gather(
                *(ringlet.write_file(str(tmp_path / f"o{i}"), d) for i, (_, d) in enumerate(files))
            )
            await asyncio.gather(
                *(ringlet.copy_file(p, str(tmp_path / f"c{i}")) for i, (p, _) in enumerate(files))
            )
        async with ringlet.open(files[-1][0], "r+b") as f:
            await asyncio.gather(*(f.pread(4096, i * 4096) for i in range(40)))
            await f.pwrite(b"x", 0)
            await f.fsync()
        # a blocking FIFO open and read also go through the kernel, not a thread
        opener = asyncio.ensure_future(ringlet.open(fifo, "rb"))
        wfd = await open_fifo_writer(fifo)
        try:
            rf = await asyncio.wait_for(opener, 5)
            reader = asyncio.ensure_future(rf.read(3))
            await asyncio.sleep(0.02)
            during = set(threading.enumerate())
            os.write(wfd, b"abc")
            assert await asyncio.wait_for(reader, 5) == b"abc"
            await rf.close()
        finally:
            os.close(wfd)
        in_loop_after = set(threading.enumerate())
        return in_loop_before, during, in_loop_after

    in_loop_before, during, in_loop_after = run(main())
    for seen in (in_loop_before, during, in_loop_after, set(threading.enumerate())):
        assert seen <= before, seen - before


# --------------------------------------------------------------------------
# several loops, one after another and side by side in threads
# --------------------------------------------------------------------------


def test_sequential_event_loops(ringlet, run, make_file):
    path, data = make_file(4097)
    for _ in range(5):
        assert run(ringlet.read_file(path)) == data


def test_engine_per_loop_in_threads(ringlet, make_file):
    """Two event loops in two threads each get their own engine and both work."""
    files = [make_file(10_000 + i) for i in range(2)]
    results = [None, None]
    errors = []

    def worker(i):
        async def main():
            eng = ringlet.get_engine()
            out = []
            for _ in range(20):
                out.append(await ringlet.read_file(files[i][0]))
            return eng, out

        try:
            results[i] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    (e0, o0), (e1, o1) = results
    assert e0 is not e1
    assert o0 == [files[0][1]] * 20
    assert o1 == [files[1][1]] * 20
