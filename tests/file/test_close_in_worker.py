"""A file opened for writing is closed in a kernel worker (close_fd's and
Engine._close's release_in_worker): its last release may wait for the device
on ext4 (the writeback start of a file truncated to empty and written since,
auto_da_alloc; the discard of block preallocations), and on the loop's thread
that was 105 ms for a 256 MiB copy onto an existing file.  A file opened for
reading still closes inline.  Seen in the trace, not by a clock: a close in
a worker is not completed inside the submitting call."""

import asyncio
import os

import pytest

from test_read_file_nowait import local_fs  # noqa: F401 (a fixture)


def _closes(t):
    return [r["inline"] for r in t.records if r["op"] == "close"]


async def _copy_onto(ringlet, d, existing):
    src, dst = d / "src", d / "dst"
    src.write_bytes(b"s" * 100_000)
    if existing:
        dst.write_bytes(b"old" * 50_000)
    with ringlet.trace() as t:
        await ringlet.copy_file(src, dst)
    return t, {dst: b"s" * 100_000}


async def _write_file_in_steps(ringlet, d, existing):
    path = d / "w"  # the directory's first write_file: in steps (open, write, close)
    if existing:
        path.write_bytes(b"old" * 50_000)
    with ringlet.trace() as t:
        await ringlet.write_file(path, b"new")
    return t, {path: b"new"}


async def _open_and_write(ringlet, d, mode, truncate_to=None):
    path = d / "f"
    old = b"old" * 50_000
    path.write_bytes(old)
    with ringlet.trace() as t:
        async with ringlet.open(path, mode) as f:
            if truncate_to is not None:
                await f.truncate(truncate_to)
            await f.write(b"new")
    kept = (b"" if mode == "wb" else old)[:truncate_to]
    return t, {path: kept + b"new" if mode == "ab" else b"new" + kept[3:]}


async def _open_and_read(ringlet, d):
    path = d / "f"
    path.write_bytes(b"old")
    with ringlet.trace() as t:
        async with ringlet.open(path, "rb") as f:
            assert await f.read() == b"old"
    return t, {path: b"old"}


async def _direct_unaligned(ringlet, d):
    path = d / "f"
    with ringlet.trace() as t:
        async with ringlet.open(path, "wb", direct=True) as f:
            await f.write(b"abc")  # unaligned: through the second, buffered descriptor
    return t, {path: b"abc"}


CASES = {
    # name: (coroutine, its closes' inline flags on io_uring, in order)
    "copy onto an existing file": (lambda r, d: _copy_onto(r, d, True), [False, True]),  # dst, then src
    "copy to a new file": (lambda r, d: _copy_onto(r, d, False), [False, True]),
    "write_file in steps, existing": (lambda r, d: _write_file_in_steps(r, d, True), [False]),
    "write_file in steps, new": (lambda r, d: _write_file_in_steps(r, d, False), [False]),
    "open wb": (lambda r, d: _open_and_write(r, d, "wb"), [False]),
    "open r+b, truncate(0)": (lambda r, d: _open_and_write(r, d, "r+b", truncate_to=0), [False]),
    "open r+b, truncate(10)": (lambda r, d: _open_and_write(r, d, "r+b", truncate_to=10), [False]),
    "open r+b": (lambda r, d: _open_and_write(r, d, "r+b"), [False]),
    "open ab": (lambda r, d: _open_and_write(r, d, "ab"), [False]),
    "open rb": (lambda r, d: _open_and_read(r, d), [True]),
    "open wb direct, unaligned": (lambda r, d: _direct_unaligned(r, d), [False, False]),  # buffered, then direct
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_file_opened_for_writing_is_closed_in_a_worker(ringlet, run, local_fs, backend_name, case):  # noqa: F811
    make, inline = CASES[case]
    t, contents = run(make(ringlet, local_fs))
    for path, data in contents.items():
        assert path.read_bytes() == data
    if backend_name.startswith("threads"):  # every close of a regular file runs in the pool
        own_descriptors = 2 if case.startswith("copy") else 0  # the copy closes the duplicates it worked on
        assert len(_closes(t)) == len(inline) + own_descriptors
        return
    assert _closes(t) == inline


def test_a_cancel_during_the_buffered_close_still_closes_the_file(ringlet, run, local_fs):  # noqa: F811
    """close() of an O_DIRECT file closes its buffered descriptor, then its
    own: a cancel while the first close is pending ends neither."""
    path = local_fs / "f"

    async def main():
        f = await ringlet.open(path, "wb", direct=True)
        await f.write(b"abc")
        fds = {f._fd, f._buffered_fd}
        assert -1 not in fds
        closing = asyncio.ensure_future(f.close())
        await asyncio.sleep(0)  # close() now awaits the first close
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        for _ in range(1000):  # the shielded first close lands when its worker is done
            if not any(os.path.exists(f"/proc/self/fd/{fd}") for fd in fds):
                break
            await asyncio.sleep(0.005)
        return [os.path.exists(f"/proc/self/fd/{fd}") for fd in fds], f.closed

    assert run(main()) == ([False, False], True)
    assert path.read_bytes() == b"abc"


def test_engine_close_arguments(ringlet, run, tmp_path):
    async def main():
        engine = ringlet.get_engine()
        fd = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT)
        await engine._close(fd, True)
        with pytest.raises(OSError) as bad_fd:
            await engine._close(fd, True)  # closed already: EBADF, as os.close
        with pytest.raises(TypeError):
            engine._close()
        with pytest.raises(TypeError):
            engine._close(1, True, 3)
        return bad_fd.value.errno

    assert run(main()) == 9  # EBADF


def test_closes_waiting_for_a_worker_still_close_when_the_engine_shuts_down(ringlet, run, tmp_path):
    """shutdown() cancels all that is in flight, and a cancel reaches a close
    still queued for a kernel worker: it never ran, so the engine closes the
    descriptor itself (it leaked 1 time in 5 in the Ctrl-C-during-copy test).
    Whether the cancel finds a close still queued is up to the workers; with
    64 at once it does in most rounds, and every descriptor is closed in all."""

    async def closes_then_shutdown(batch):
        engine = ringlet.get_engine()
        fds = [os.open(tmp_path / f"f{batch}-{k}", os.O_WRONLY | os.O_CREAT) for k in range(64)]
        for fd in fds:
            engine._close(fd, True)  # never awaited: shutdown() comes first
        left = engine.shutdown(5.0)
        # Nothing opened since the batch: a number still open is one of its files.
        return left, [fd for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")]

    for batch in range(10):
        assert run(closes_then_shutdown(batch)) == (0, [])
