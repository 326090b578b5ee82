"""copy_file inside the kernel: on io_uring, regular files are spliced
through pipes (IORING_OP_SPLICE: no read or write through user memory); on
the thread backend, copy_file_range(2) runs on a worker.  Streams, small
files and destinations that refuse it are read and written as before.
Counted with _ringlet._copy_stats() (io_uring) and the tracer (threads)."""

import asyncio
import os

import pytest

from conftest import fd_count

IORING_OP_SPLICE = 30  # include/uapi/linux/io_uring.h; Linux 5.7
BIG = 3 * 1024 * 1024 + 7  # above the splice threshold, not a multiple of a chunk


def _copy_stats():
    from ringlet import _ringlet

    return _ringlet._copy_stats()


def _live_copies():
    from ringlet import _ringlet

    return _ringlet._live()["copies"]


def _delta(before, after):
    return {k: after[k] - before[k] for k in before}


def _splice_expected(ringlet):
    """Whether this ring has IORING_OP_SPLICE (an emulated old kernel may hide it)."""
    return ringlet.get_engine().supports(IORING_OP_SPLICE)


def test_regular_file_copy_is_spliced(ringlet, run, make_file, tmp_path, require_io_uring):
    src, data = make_file(BIG)
    dst = tmp_path / "copy"

    async def main():
        spliced = _splice_expected(ringlet)
        before = _copy_stats()
        n = await ringlet.copy_file(src, dst)
        return spliced, n, _delta(before, _copy_stats())

    spliced, n, counts = run(main())
    assert n == len(data) and dst.read_bytes() == data
    if not spliced:
        pytest.skip("this ring has no IORING_OP_SPLICE (an emulated kernel older than 5.7): read/write is right")
    assert counts["reads"] == 0 and counts["writes"] == 0 and counts["fallbacks"] == 0
    # Each 1 MiB chunk: one splice into its pipe, one out of it; the slots
    # that meet the end of the file splice nothing once more.
    chunks = -(-len(data) // (1 << 20))
    assert 2 * chunks <= counts["splices"] <= 2 * chunks + 4


def test_small_file_and_stream_are_read_and_written(ringlet, run, make_file, tmp_path, require_io_uring):
    small, small_data = make_file(100_000)
    big, big_data = make_file(BIG)

    async def main():
        before = _copy_stats()
        await ringlet.copy_file(small, tmp_path / "small")
        after_small = _copy_stats()
        engine = ringlet.get_engine()
        r, w = os.pipe()  # a stream source: in order, through a buffer
        out = os.open(tmp_path / "from-pipe", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            writer = asyncio.ensure_future(engine.write(w, big_data))
            done = asyncio.ensure_future(engine.copy(r, out))
            await writer
            os.close(w)
            w = -1
            n = await done
        finally:
            for fd in (r, w, out):
                if fd >= 0:
                    os.close(fd)
        return _delta(before, after_small), _delta(after_small, _copy_stats()), n

    small_counts, pipe_counts, n = run(main())
    assert (tmp_path / "small").read_bytes() == small_data
    assert small_counts["splices"] == 0 and small_counts["reads"] >= 1 and small_counts["writes"] == 1
    assert n == len(big_data) and (tmp_path / "from-pipe").read_bytes() == big_data
    assert pipe_counts["splices"] == 0 and pipe_counts["reads"] >= 2 and pipe_counts["writes"] >= 1


def test_append_destination_falls_back_to_read_write(ringlet, run, make_file, tmp_path):
    """splice refuses an O_APPEND destination (EINVAL), copy_file_range too
    (EBADF): before a byte is written the copy reads and writes instead."""
    src, data = make_file(BIG)
    path = tmp_path / "appended"
    path.write_bytes(b"head")

    async def main():
        engine = ringlet.get_engine()
        uring = ringlet.backend().startswith("io_uring")
        before = _copy_stats() if uring else None
        names = []
        engine.tracer = lambda record: names.append(record["op"])
        s = os.open(src, os.O_RDONLY)
        d = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            n = await engine.copy(s, d, depth=1)  # one chunk at a time: appended in order
        finally:
            engine.tracer = None
            os.close(s)
            os.close(d)
        return n, (_delta(before, _copy_stats()) if uring else None), names, uring

    n, counts, names, uring = run(main())
    assert n == len(data)
    assert path.read_bytes() == b"head" + data
    if uring and counts["splices"]:  # the ring has splice: tried, refused, read/write
        assert counts["fallbacks"] == 1 and counts["writes"] >= 4
    if not uring:
        assert names.count("copy_file_range") == 1 and names.count("write") >= 1


def test_thread_backend_copies_in_the_kernel(ringlet, run, make_file, tmp_path, require_threads):
    src, data = make_file(BIG)
    dst = tmp_path / "copy"

    async def main():
        engine = ringlet.get_engine()
        names = []
        engine.tracer = lambda record: names.append(record["op"])
        try:
            n = await ringlet.copy_file(src, dst)
        finally:
            engine.tracer = None
        return n, names

    n, names = run(main())
    assert n == len(data) and dst.read_bytes() == data
    # One range takes the whole file, the next says end of file.
    assert names.count("copy_file_range") == 2
    assert "read" not in names and "write" not in names


def test_cancelled_copy_leaks_nothing_and_writes_no_stranger(ringlet, run, make_file, tmp_path):
    """A cancel while splices are queued: the copy's own descriptors and pipes
    close once the last completion is in, and a file that takes a freed
    descriptor number meanwhile is not written by a late splice."""
    src, data = make_file(48 * 1024 * 1024)
    baseline = fd_count()

    async def main():
        engine = ringlet.get_engine()
        outcomes = []
        for turns in (0, 1, 3):
            task = asyncio.ensure_future(ringlet.copy_file(src, tmp_path / f"c{turns}"))
            for _ in range(turns + 1):
                await asyncio.sleep(0)
            task.cancel()
            try:
                outcomes.append(await task)
            except asyncio.CancelledError:
                outcomes.append("cancelled")
            # Fresh files take the numbers copy_file just closed.
            strangers = [os.open(tmp_path / f"s{turns}-{i}", os.O_RDWR | os.O_CREAT, 0o644) for i in range(4)]
            for _ in range(2000):
                if engine.stats()["in_flight"] == 0:
                    break
                await asyncio.sleep(0.005)
            sizes = [os.fstat(fd).st_size for fd in strangers]
            for fd in strangers:
                os.close(fd)
            outcomes.append(sizes)
        live = _live_copies() if ringlet.backend().startswith("io_uring") else 0
        return outcomes, engine.stats()["in_flight"], live

    outcomes, in_flight, live = run(main())
    assert in_flight == 0 and live == 0
    for sizes in outcomes[1::2]:
        assert sizes == [0, 0, 0, 0]
    assert fd_count() == baseline
