"""A full disk: writing more than fits raises OSError(ENOSPC), and nothing is
reported written that is not on disk, at the place it was reported written.

Two ways to fill a disk: /dev/full (every write fails with ENOSPC; needs
nothing) and a freshly mounted 1 MiB tmpfs (needs root; see the small_tmpfs
fixture), where writes succeed until the space runs out part-way through one.
"""

import asyncio
import errno
import os

import pytest

from conftest import fd_count

MiB = 1024 * 1024
CHUNK = 100_000  # not a multiple of the page size: the last write is cut mid-way


def _assert_enospc(excinfo):
    exc = excinfo.value
    assert isinstance(exc, OSError)
    assert exc.errno == errno.ENOSPC, f"expected ENOSPC, got {exc!r}"


def _content(path):
    with open(path, "rb") as f:
        return f.read()


def _engine_idle(ringlet):
    return ringlet.get_engine().stats()["in_flight"] == 0


# --------------------------------------------------------------------------
# /dev/full: every write fails
# --------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("size", [1, 4096, 3 * MiB])
def test_dev_full_write_file(ringlet, run, size):
    async def main():
        with pytest.raises(OSError) as ei:
            await ringlet.write_file("/dev/full", b"x" * size)
        _assert_enospc(ei)
        assert _engine_idle(ringlet)

    run(main())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("how", ["write", "pwrite", "write_bytearray", "write_memoryview"])
def test_dev_full_file_methods(ringlet, run, how):
    async def main():
        async with ringlet.open("/dev/full", "wb") as f:
            with pytest.raises(OSError) as ei:
                if how == "write":
                    await f.write(b"abc")
                elif how == "pwrite":
                    await f.pwrite(b"abc", 10)
                elif how == "write_bytearray":
                    await f.write(bytearray(5000))
                else:
                    await f.write(memoryview(b"0123456789")[2:])
            _assert_enospc(ei)
        assert _engine_idle(ringlet)

    run(main())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_dev_full_copy_file(ringlet, run, make_file):
    src, _ = make_file(3 * MiB + 7)

    async def main():
        with pytest.raises(OSError) as ei:
            await ringlet.copy_file(src, "/dev/full")
        _assert_enospc(ei)
        assert _engine_idle(ringlet)

    run(main())


# --------------------------------------------------------------------------
# a 1 MiB tmpfs
# --------------------------------------------------------------------------


def _check_reported_is_on_disk(path, data, reported):
    """Every byte reported written is on disk, where it was written."""
    content = _content(path)
    assert reported <= len(content), (
        f"{reported} bytes reported written, but the file holds only {len(content)}"
    )
    assert content[:reported] == data[:reported], "bytes reported written are not on disk at their place"
    return content


def _fails_with_enospc(ringlet, run, make_coro, path):
    """Run make_coro(): it must raise ENOSPC, leave nothing in flight and no
    descriptor open; return what reached the disk at path (at most 1 MiB)."""
    async def main():
        with pytest.raises(OSError) as ei:
            await make_coro()
        _assert_enospc(ei)
        assert _engine_idle(ringlet)

    fds = fd_count()
    run(main())
    assert fd_count() == fds
    content = _content(path)
    assert len(content) <= MiB
    return content


def test_tmpfs_write_file_too_big(ringlet, run, small_tmpfs):
    path = os.path.join(small_tmpfs, "big")
    data = os.urandom(3 * MiB)
    content = _fails_with_enospc(ringlet, run, lambda: ringlet.write_file(path, data), path)
    assert content == data[: len(content)], "what did reach the disk is not the start of the data"


def test_tmpfs_write_file_that_fits(ringlet, run, small_tmpfs):
    path = os.path.join(small_tmpfs, "fits")
    data = os.urandom(MiB // 2)

    async def main():
        return await ringlet.write_file(path, data)

    assert run(main()) == len(data)
    assert _content(path) == data


@pytest.mark.parametrize("mode", ["wb", "ab", "w+b"])
def test_tmpfs_sequential_writes_until_full(ringlet, run, small_tmpfs, mode):
    """f.write() in 100,000-byte chunks: each call reports all of its chunk or
    raises ENOSPC; the sum of what was reported is on disk, in order."""
    path = os.path.join(small_tmpfs, "seq")
    data = os.urandom(3 * MiB)

    async def main():
        reported = 0
        async with ringlet.open(path, mode) as f:
            with pytest.raises(OSError) as ei:
                while reported < len(data):
                    chunk = data[reported:reported + CHUNK]
                    n = await f.write(chunk)
                    assert n == len(chunk), f"write() returned {n} for {len(chunk)} bytes"
                    reported += n
                    # Checked at every step: a success must be true right away.
                    _check_reported_is_on_disk(path, data, reported)
            _assert_enospc(ei)
        return reported

    reported = run(main())
    content = _check_reported_is_on_disk(path, data, reported)
    assert reported <= MiB < len(data)
    assert len(content) <= MiB


@pytest.mark.parametrize("chunk", [CHUNK, 3 * MiB], ids=["chunks", "one-write"])
def test_tmpfs_engine_write_at_file_position(ringlet, run, small_tmpfs, chunk):
    """The engine's write(fd, data) at the file position (offset -1), as a
    caller of the low-level API (or a file object sharing a descriptor)
    uses it: a short write must not be continued at a wrong place."""
    path = os.path.join(small_tmpfs, "engine")
    data = os.urandom(3 * MiB)

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        reported = 0
        try:
            with pytest.raises(OSError) as ei:
                while reported < len(data):
                    piece = data[reported:reported + chunk]
                    n = await engine.write(fd, piece)
                    assert n == len(piece)
                    reported += n
                    _check_reported_is_on_disk(path, data, reported)
            _assert_enospc(ei)
            # The position is where the data on disk ends: a write after
            # freeing space continues the file, it does not overwrite it.
            assert os.lseek(fd, 0, os.SEEK_CUR) == os.fstat(fd).st_size
        finally:
            os.close(fd)
        return reported

    reported = run(main())
    _check_reported_is_on_disk(path, data, reported)


def test_tmpfs_pwrites_until_full(ringlet, run, small_tmpfs):
    path = os.path.join(small_tmpfs, "pw")
    data = os.urandom(3 * MiB)

    async def main():
        reported = 0
        async with ringlet.open(path, "wb") as f:
            with pytest.raises(OSError) as ei:
                while reported < len(data):
                    chunk = data[reported:reported + CHUNK]
                    n = await f.pwrite(chunk, reported)
                    assert n == len(chunk)
                    reported += n
            _assert_enospc(ei)
        return reported

    reported = run(main())
    _check_reported_is_on_disk(path, data, reported)
    assert reported <= MiB


def test_tmpfs_one_big_write(ringlet, run, small_tmpfs):
    path = os.path.join(small_tmpfs, "one")
    data = os.urandom(3 * MiB)

    async def write_all():
        async with ringlet.open(path, "wb") as f:
            await f.write(data)

    content = _fails_with_enospc(ringlet, run, write_all, path)
    assert content == data[: len(content)]


def test_tmpfs_concurrent_pwrites_until_full(ringlet, run, small_tmpfs):
    """Many pwrites at once: those reported done are on disk, the others
    raise ENOSPC, and nothing stays in flight."""
    path = os.path.join(small_tmpfs, "conc")
    data = os.urandom(2 * MiB)
    n_chunks = len(data) // 65536

    async def main():
        async with ringlet.open(path, "wb") as f:
            results = await asyncio.gather(
                *(f.pwrite(data[i * 65536:(i + 1) * 65536], i * 65536) for i in range(n_chunks)),
                return_exceptions=True,
            )
        assert _engine_idle(ringlet)
        return results

    results = run(main())
    content = _content(path)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures, "2 MiB fitted into a 1 MiB tmpfs?"
    for r in failures:
        assert isinstance(r, OSError) and r.errno == errno.ENOSPC, repr(r)
    for i, r in enumerate(results):
        if not isinstance(r, BaseException):
            assert r == 65536
            piece = content[i * 65536:(i + 1) * 65536]
            assert piece == data[i * 65536:(i + 1) * 65536], f"chunk {i} reported written but not on disk"


def test_tmpfs_copy_file_too_big(ringlet, run, small_tmpfs, make_file):
    src, data = make_file(3 * MiB + 7)
    dst = os.path.join(small_tmpfs, "copy")
    content = _fails_with_enospc(ringlet, run, lambda: ringlet.copy_file(src, dst), dst)
    # The copy runs several chunks at once: whatever landed is at its offset.
    for start in range(0, len(content), 4096):
        piece = content[start:start + 4096]
        if piece.count(0) != len(piece):  # holes of a failed chunk read back as zeros
            assert piece == data[start:start + len(piece)], f"wrong bytes at offset {start}"


def test_tmpfs_space_freed_then_writes_work(ringlet, run, small_tmpfs):
    """After ENOSPC the engine is fine: free the space and write again."""
    big = os.path.join(small_tmpfs, "big")
    small = os.path.join(small_tmpfs, "small")
    data = os.urandom(256 * 1024)

    async def main():
        with pytest.raises(OSError) as ei:
            await ringlet.write_file(big, os.urandom(2 * MiB))
        _assert_enospc(ei)
        with pytest.raises(OSError) as ei:
            await ringlet.write_file(small, data)
        _assert_enospc(ei)
        os.unlink(big)
        assert await ringlet.write_file(small, data) == len(data)
        assert await ringlet.read_file(small) == data
        assert _engine_idle(ringlet)

    run(main())
    assert _content(small) == data
