"""copy_file from a regular source on io_uring writes straight from the
source's mapping (csrc/copy.c), in 256 KiB pieces with the source mapped
ahead 8 MiB at a time.  Results at and around those sizes, a source that
shrinks under its mapping, and the in-order copy of depth 1.  The thread
backend runs the same tests (its copy_file_range path)."""

import asyncio
import os

import pytest

PIECE = 256 * 1024
POPULATE = 8 * 1024 * 1024


@pytest.mark.parametrize("size", [1, 4095, PIECE - 1, PIECE, PIECE + 1, POPULATE + 3, 3 * POPULATE + PIECE + 12345])
def test_copy_file_sizes(ringlet, run, make_file, tmp_path, size):
    src, data = make_file(size)
    dst = tmp_path / "copy"
    dst.write_bytes(b"x" * (size + 5000))  # longer than the copy: truncated first
    n = run(ringlet.copy_file(src, dst))
    assert n == size
    assert dst.read_bytes() == data


@pytest.mark.parametrize("chunk,depth", [(1000, 3), (4096, 1), (PIECE * 3, 16), (1 << 20, 8)])
def test_engine_copy_chunk_and_depth(ringlet, run, make_file, tmp_path, chunk, depth):
    """Pieces of min(chunk, 256 KiB), depth * chunk bytes in flight: every
    combination copies every byte once."""
    src, data = make_file(2 * POPULATE + 777)
    dst = tmp_path / "copy"

    async def main():
        engine = ringlet.get_engine()
        s = os.open(src, os.O_RDONLY)
        d = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            return await engine.copy(s, d, chunk_size=chunk, depth=depth)
        finally:
            os.close(s)
            os.close(d)

    assert run(main()) == len(data)
    assert dst.read_bytes() == data


def test_source_shrinking_under_the_mapping(ringlet, run, make_file, tmp_path):
    """The source is cut short right after the copy starts: the writes from
    past its new end fault (EFAULT), and those ranges are read instead, to
    the new end.  No error; what the new source holds is copied; anything
    beyond in dst is the old bytes at their place or zeros (a hole, or the
    mapping's view of the last page past the new end, as a read racing the
    truncate may see); the count is what was written."""
    size, kept = 48 * 1024 * 1024, 1024 * 1024 + 5
    src, data = make_file(size)
    dst = tmp_path / "copy"

    async def main():
        engine = ringlet.get_engine()
        s = os.open(src, os.O_RDONLY)
        d = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            fut = engine.copy(s, d, depth=8)
            os.truncate(src, kept)  # before the loop's next turn
            return await fut
        finally:
            os.close(s)
            os.close(d)

    n = run(main())
    out = dst.read_bytes()
    assert out[:kept] == data[:kept]
    assert kept <= n <= size and n <= len(out) <= size
    first_page_end = (kept // 4096 + 1) * 4096
    for at in [kept, *range(first_page_end, len(out), 4096)]:  # page by page from the new end
        end = (at // 4096 + 1) * 4096
        part = out[at:end]
        assert part == data[at:end][:len(part)] or part == bytes(len(part)), at


def test_depth_one_appends_in_order(ringlet, run, make_file, tmp_path):
    """depth=1 is one write at a time, in order, from the mapping as well:
    an O_APPEND destination gets the source's bytes in order."""
    src, data = make_file(3 * POPULATE // 2 + 11)
    path = tmp_path / "appended"
    path.write_bytes(b"head")

    async def main():
        engine = ringlet.get_engine()
        s = os.open(src, os.O_RDONLY)
        d = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            return await engine.copy(s, d, depth=1)
        finally:
            os.close(s)
            os.close(d)

    assert run(main()) == len(data)
    assert path.read_bytes() == b"head" + data


def test_cancel_mid_copy_then_copy_again(ringlet, run, make_file, tmp_path):
    """A copy cancelled while its writes (and the mapping ahead) are in
    flight: the engine settles with nothing in flight, and the same
    destination copied again is complete."""
    src, data = make_file(40 * 1024 * 1024 + 3)
    dst = tmp_path / "copy"

    async def main():
        engine = ringlet.get_engine()
        task = asyncio.ensure_future(ringlet.copy_file(src, dst))
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        try:
            first = await task
        except asyncio.CancelledError:
            first = None
        while engine.stats()["in_flight"]:
            await asyncio.sleep(0.005)
        size_after_cancel = os.path.getsize(dst) if dst.exists() else 0  # cancelled before its open
        again = await ringlet.copy_file(src, dst)
        return first, size_after_cancel, again

    first, size_after_cancel, again = run(main())
    assert first in (None, len(data))
    assert size_after_cancel <= len(data)
    assert again == len(data) and dst.read_bytes() == data


def test_without_madvise_the_writes_fault_their_pages(ringlet, run, make_file, tmp_path, require_io_uring):
    """A kernel without IORING_OP_MADVISE (or MADV_POPULATE_READ, before
    5.14) fails the mapping-ahead with EINVAL: the copy goes on, its writes
    fault the source's pages themselves, and every byte arrives."""
    IORING_OP_MADVISE = 25  # not one of ringlet's Opcode members: only copy.c asks for it
    src, data = make_file(3 * POPULATE + 4321)
    dst = tmp_path / "copy"

    async def main():
        engine = ringlet.get_engine()
        engine._restrict_opcodes([op for op in range(64) if op != IORING_OP_MADVISE])
        return await ringlet.copy_file(src, dst)

    assert run(main()) == len(data)
    assert dst.read_bytes() == data


def test_large_copy_reaps_most_writes_quietly(ringlet, run, make_file, tmp_path, require_io_uring):
    """A mapped copy of more than 16 MiB to a regular file: of each batch
    (4 MiB, four 1 MiB writes at most) all writes but the last go on the ring
    that wakes nobody, and are reaped behind that last one.  Every byte
    arrives and nothing stays in flight."""
    src, data = make_file(24 * 1024 * 1024 + 5)
    dst = tmp_path / "copy"

    async def main():
        engine = ringlet.get_engine()
        before = engine.stats()
        n = await ringlet.copy_file(src, dst)
        after = engine.stats()
        return n, after["writes_quiet"] - before["writes_quiet"], after["in_flight"]

    n, quiet, in_flight = run(main())
    assert n == len(data) and dst.read_bytes() == data
    assert quiet >= 3 * 24 // 4 - 1  # 1 MiB writes: 3 of each 4 (the last batch may be short)
    assert in_flight == 0
