"""copy_file on the thread backend: copy_file_range(2) on a worker between
regular files (the kernel copies, or shares extents where the file system
can), read/write where it is refused.  On io_uring the copy runs in C, read
by read (tests/file/test_copy.py); both backends: a destination that
refuses the kernel's copy, and a cancelled copy."""

import asyncio
import os

from conftest import fd_count, wait_until

BIG = 3 * 1024 * 1024 + 7  # above the kernel-copy threshold, not a multiple of a chunk


def _live_copies():
    from ringlet import _ringlet

    return _ringlet._live()["copies"]


def test_append_destination_falls_back_to_read_write(ringlet, run, make_file, tmp_path):
    """copy_file_range refuses an O_APPEND destination (EBADF): before a byte
    is written the thread backend reads and writes instead; io_uring's copy
    appends chunk by chunk."""
    src, data = make_file(BIG)
    path = tmp_path / "appended"
    path.write_bytes(b"head")

    async def main():
        engine = ringlet.get_engine()
        uring = ringlet.backend().startswith("io_uring")
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
        return n, names, uring

    n, names, uring = run(main())
    assert n == len(data)
    assert path.read_bytes() == b"head" + data
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
    """A cancel while the copy's operations are queued: nothing is leaked
    once the last completion is in, and a file that takes a freed descriptor
    number meanwhile is not written by a late operation."""
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
            await wait_until(lambda: engine.stats()["in_flight"] == 0)
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


def test_a_copy_over_holds_nothing_when_its_caller_resumes(ringlet, run, make_file, tmp_path):
    """Once a copy's caller resumes, the copy is out of flight and holds no
    descriptor: on the thread backend it closed its two duplicates before
    giving its result (they were closed in a worker after it, so a caller
    that looked at once could still see them, as test_full_disk once did)."""
    small, small_data = make_file(4096)  # read and written
    big, big_data = make_file(BIG)  # copied by the kernel on the thread backend
    seen = []

    async def main():
        engine = ringlet.get_engine()
        for round_ in range(10):
            for src, data in ((small, small_data), (big, big_data)):
                dst = tmp_path / f"copy{round_}"
                before = fd_count()
                s = os.open(src, os.O_RDONLY)
                d = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                try:
                    n = await engine.copy(s, d)
                    seen.append((n == len(data), fd_count() - before, engine.stats()["in_flight"]))
                finally:
                    os.close(s)
                    os.close(d)
                assert dst.read_bytes() == data

    run(main())
    assert seen == [(True, 2, 0)] * 20
