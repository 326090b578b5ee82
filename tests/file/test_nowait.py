"""The non-blocking attempt before the ring (csrc/nowait.c): cached reads
complete at once without the ring; reads of a file dropped from the page
cache, and of pipes, are left to the ring, so the loop never waits for a
device.  Checked with the engine's counters, not clocks."""

import asyncio
import ctypes
import inspect
import io
import mmap
import os
import sys

import pytest


def _resident_pages(path):
    """One bool per page of the file: in the page cache now (mincore(2) on a
    mapping that is never touched, so nothing is read in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = os.path.getsize(path)
    pages = (size + 4095) // 4096
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
            return [b & 1 == 1 for b in vec.raw[:pages]]
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def _drop_from_page_cache(path):
    """Write back and drop the file's pages; the pages still cached afterwards
    (pages held in per-CPU LRU batches cannot be dropped) are returned."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        for _ in range(3):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return _resident_pages(path)


async def _read_at(f, how, size, offset):
    """f.pread, or f.preadinto into a buffer of that size: the bytes read."""
    if how == "pread":
        return await f.pread(size, offset)
    buffer = bytearray(size)
    return bytes(buffer[:await f.preadinto(buffer, offset)])


@pytest.mark.parametrize("how", ["pread", "preadinto"])
def test_cached_preads_complete_without_the_ring(ringlet, run, require_io_uring, make_file, how):
    path, data = make_file(64 * 1024)
    with open(path, "rb") as f:
        f.read()  # in the page cache

    async def main():
        engine = ringlet.get_engine()
        async with ringlet.open(path, "rb") as f:
            s0 = engine.stats()
            got = [await _read_at(f, how, 4096, i * 4096) for i in range(16)]
            tail = await _read_at(f, how, 10_000, len(data) - 100)  # short only at the end of the file
            s1 = engine.stats()
        return got, tail, s0, s1

    got, tail, s0, s1 = run(main())
    assert got == [data[i * 4096:(i + 1) * 4096] for i in range(16)]
    assert tail == data[-100:]
    assert s1["completed_nowait"] - s0["completed_nowait"] == 17
    assert s1["enter_calls"] == s0["enter_calls"]  # the ring was not entered for them
    assert s1["completed_inline"] - s0["completed_inline"] == 17
    assert s1["submitted"] - s0["submitted"] == s1["completed"] - s0["completed"] == 17


@pytest.mark.parametrize("how", ["pread", "preadinto"])
def test_reads_of_a_dropped_file_are_completed_by_the_ring(ringlet, run, require_io_uring, make_file, how):
    path, data = make_file(64 << 20)
    resident = _drop_from_page_cache(path)
    # Pages apart by more than a readahead window, none of them still cached.
    offsets = [i * (4 << 20) + 8192 for i in range(15) if not resident[(i * (4 << 20) + 8192) // 4096]]
    if len(offsets) < 8 or sum(resident) > len(resident) // 2:
        pytest.skip(f"this file system keeps the pages after POSIX_FADV_DONTNEED ({sum(resident)} of "
                    f"{len(resident)} still cached)")

    async def main():
        engine = ringlet.get_engine()
        by_ring = inline = 0
        async with ringlet.open(path, "rb") as f:
            # No readahead on this descriptor (read_ahead_kb may exceed the
            # spacing): a ring read must not bring another offset's page in.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
            for off in offsets:  # one at a time, each page seen uncached just before its read
                if _resident_pages(path)[off // 4096]:
                    continue
                s0 = engine.stats()
                assert await _read_at(f, how, 4096, off) == data[off:off + 4096]
                s1 = engine.stats()
                assert s1["submitted"] - s0["submitted"] == 1
                assert s1["completed"] - s0["completed"] == 1
                inline += s1["completed_nowait"] - s0["completed_nowait"]
                by_ring += 1 - (s1["completed_nowait"] - s0["completed_nowait"])
        return by_ring, inline

    by_ring, inline = run(main())
    # The attempt itself starts the kernel's read of the page and returns
    # EAGAIN without waiting for it; about one attempt in 200 here finds the
    # page already read (the virtual CPU was descheduled for longer than the
    # device took) and returns it: ready data, not a wait. So "most", not "all".
    assert by_ring + inline >= len(offsets) // 2  # most pages stayed uncached until their own read
    assert by_ring > 2 * inline, f"{inline} of {by_ring + inline} uncached reads completed inline"


def test_fifo_read_waits_in_the_ring_and_the_loop_turns(ringlet, run, fifo):
    """A FIFO has no offset: no attempt is made; its read waits in the ring
    (or a worker) while other tasks run."""

    async def main():
        engine = ringlet.get_engine()
        turns = 0
        async with ringlet.open(fifo, "r+b") as f:
            s0 = engine.stats()
            reading = asyncio.ensure_future(f.read(5))
            for _ in range(20):
                await asyncio.sleep(0)
                turns += 1
            assert not reading.done()
            os.write(f.fileno(), b"hello")
            got = await reading
            s1 = engine.stats()
        return got, turns, s0, s1

    got, turns, s0, s1 = run(main())
    assert got == b"hello" and turns == 20
    assert s1["completed_nowait"] == s0["completed_nowait"]


def test_pread_is_a_coroutine_for_asyncio(ringlet, run, make_file):
    """pread makes no Python frame on its hot path, yet is what it was: a
    coroutine (create_task takes it), errors raised by the await."""
    path, data = make_file(10_000)

    async def main():
        async with ringlet.open(path, "rb") as f:
            assert asyncio.iscoroutinefunction(f.pread)
            probe = f.pread(1, 0)
            assert asyncio.iscoroutine(probe)
            assert await probe == data[:1]
            task = asyncio.create_task(f.pread(100, 50))
            pending = f.pread(10, -1)  # no error yet
            with pytest.raises(ValueError):
                await pending
            with pytest.raises(TypeError):
                await f.pread("10", 0)
            return await task, await asyncio.wait_for(f.pread(5, 9_998), 5)

    assert run(main()) == (data[50:150], data[9_998:])


def test_pread_in_c_answers_as_the_python_pread(ringlet, run, make_file):
    """AsyncFile.pread is made in C (no Python frame); the Python pread it
    wraps answers every call alike, keywords and errors included."""
    path, data = make_file(10_000)
    python_pread = ringlet.AsyncFile.pread.__wrapped__

    async def main():
        got = []
        async with ringlet.open(path, "rb") as f:
            for pread in (f.pread, python_pread.__get__(f)):
                got.append((await pread(100, 50), await pread(size=7, offset=3), await pread(5, 9_998),
                            await pread(4, 20_000)))
                with pytest.raises(ValueError, match="negative offset"):
                    await pread(10, -1)
        async with ringlet.open(path, "wb") as w:
            with pytest.raises(io.UnsupportedOperation):
                await w.pread(1, 0)
        with pytest.raises(ValueError, match="closed file"):
            await f.pread(1, 0)
        return got

    ours, theirs = run(main())
    assert ours == theirs == (data[50:150], data[3:10], data[9_998:], b"")
    assert ringlet.AsyncFile.pread.__name__ == "pread" and "offset" in str(inspect.signature(ringlet.AsyncFile.pread))


def test_pread_knows_its_loop_runs_whatever_the_asyncgen_hooks(ringlet, run, require_io_uring, make_file):
    """The engine takes the thread's async generator hooks, when they are its
    loop's own (asyncio installs them for as long as the loop runs), as the
    sign that its loop runs here; hooks the program set, or another loop's,
    leave the question to the loop: pread's C way on its loop, never off it."""
    path, data = make_file(1000)
    home = asyncio.new_event_loop()
    try:
        f = home.run_until_complete(ringlet.open(path, "rb"))

        async def with_hooks_of_our_own():
            old = sys.get_asyncgen_hooks()
            sys.set_asyncgen_hooks(firstiter=lambda agen: None, finalizer=lambda agen: None)
            try:
                probe = f.pread(10, 5)
                return inspect.iscoroutine(probe), await probe
            finally:
                sys.set_asyncgen_hooks(*old)

        async def on_another_loop():
            probe = f.pread(10, 5)
            with pytest.raises(RuntimeError, match="another event loop"):
                await probe
            return inspect.iscoroutine(probe)

        assert home.run_until_complete(with_hooks_of_our_own()) == (False, data[5:15])  # the C engine's awaitable
        assert run(on_another_loop())  # the Python pread's coroutine, which raises
        assert home.run_until_complete(with_hooks_of_our_own()) == (False, data[5:15])
        home.run_until_complete(f.close())
    finally:
        home.close()


def test_traced_nowait_read_says_so(ringlet, run, require_io_uring, make_file):
    path, data = make_file(8192)
    with open(path, "rb") as f:
        f.read()

    async def main():
        async with ringlet.open(path, "rb") as f:
            with ringlet.trace() as t:
                got = await f.pread(4096, 4096)
        return got, t

    got, t = run(main())
    assert got == data[4096:]
    (record,) = [r for r in t.records if r["op"] == "read"]
    assert record["nowait"] is True and record["inline"] is True and record["result"] == 4096
    assert "nowait" in str(t.timeline())


def test_refused_attempt_is_not_tried_again(ringlet, run, require_io_uring):
    """/proc files refuse RWF_NOWAIT: the read goes to the ring, correct as before."""

    async def main():
        engine = ringlet.get_engine()
        async with ringlet.open("/proc/self/status", "rb") as f:
            s0 = engine.stats()
            first = await f.pread(5, 0)
            second = await f.pread(5, 0)
            s1 = engine.stats()
        return first, second, s0, s1

    first, second, s0, s1 = run(main())
    assert first == second == b"Name:"
    assert s1["completed_nowait"] == s0["completed_nowait"]


def test_preadinto_fills_the_buffer_as_os_preadv_and_is_a_coroutine(ringlet, run, make_file):
    """preadinto is made in C as pread is, and answers every call as the
    Python preadinto it wraps (and os.preadv): counts, bytes, a short count
    at the end of the file, any __index__ offset, errors raised by the await;
    the file position stays."""
    import operator

    path, data = make_file(10_000)
    python_preadinto = ringlet.AsyncFile.preadinto.__wrapped__

    class Index:
        def __index__(self):
            return 9_990

    async def main():
        got = []
        async with ringlet.open(path, "rb") as f:
            assert asyncio.iscoroutinefunction(f.preadinto)
            probe = f.preadinto(bytearray(1), 0)
            assert asyncio.iscoroutine(probe)
            await probe
            for preadinto in (f.preadinto, python_preadinto.__get__(f)):
                bufs = [bytearray(100), memoryview(bytearray(7)), bytearray(50), bytearray(4)]
                counts = [await preadinto(bufs[0], 50), await preadinto(bufs[1], operator.index(3)),
                          await preadinto(bufs[2], Index()), await preadinto(bufs[3], 20_000)]
                got.append((counts, [bytes(b) for b in bufs], await f.tell()))
                pending = preadinto(bytearray(1), -1)  # no error yet
                with pytest.raises(ValueError, match="negative offset"):
                    await pending
                with pytest.raises(TypeError):
                    await preadinto(b"read-only", 0)
        return got

    fd = os.open(path, os.O_RDONLY)
    try:
        want_bufs = [bytearray(100), bytearray(7), bytearray(50), bytearray(4)]
        want_counts = [os.preadv(fd, [b], at) for b, at in zip(want_bufs, [50, 3, 9_990, 20_000])]
    finally:
        os.close(fd)
    want = (want_counts, [bytes(b) for b in want_bufs], 0)
    assert want_counts == [100, 7, 10, 0] and want[1][0] == data[50:150]
    assert run(main()) == [want, want]


# --------------------------------------------------------------------------
# pread_many's second core: io_uring's SQPOLL thread copies part of a batch
# --------------------------------------------------------------------------


def _sqpoll_always(engine):
    """Make every large batch hand reads to the SQPOLL thread, whatever the
    machine's load (the tests run with both cores busy), or skip."""
    if not engine._sqpoll_always(True):
        pytest.skip("io_uring's SQPOLL thread cannot be had here (one CPU, /proc/loadavg unreadable, a ring "
                    "without IORING_OP_READ (an older kernel, or one emulated), or IORING_SETUP_SQPOLL refused)")


def _sqpoll_threads():
    """The thread ids of this process's SQPOLL threads (Linux names them iou-sqp-<pid>)."""
    tids = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().startswith("iou-sqp"):
                    tids.add(tid)
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            pass
    return tids


async def _batch_with_sqpoll(ringlet, path, requests, advice=os.POSIX_FADV_NORMAL):
    """f.pread_many(requests) with the SQPOLL thread always asked, on a
    descriptor given advice: (the bytes, the engine's stats before, after)."""
    engine = ringlet.get_engine()
    _sqpoll_always(engine)
    async with ringlet.open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, advice)
        s0 = engine.stats()
        got = await f.pread_many(requests)
        s1 = engine.stats()
    return got, s0, s1


def test_a_cached_batch_is_shared_with_the_sqpoll_thread(ringlet, run, require_io_uring, make_file):
    """The thread takes reads from the back of the batch (here the last ones:
    one across the end of the file, one past it, one of 0 bytes); every read
    is served from the page cache, none by the ring, in request order."""
    path, data = make_file(1 << 20)
    with open(path, "rb") as f:
        f.read()  # in the page cache
    size = len(data)
    requests = [(4096, (i * 7919 * 4096 + i * 13) % (size - 4096)) for i in range(100)]
    requests += [(5000, size - 100), (10, size + 5000), (0, 8), (4096, size - 4096)]

    got, s0, s1 = run(_batch_with_sqpoll(ringlet, path, requests))
    assert got == [data[off:off + n] for n, off in requests]
    assert s1["completed_nowait"] - s0["completed_nowait"] == len(requests)
    shared = s1["completed_nowait_sqpoll"] - s0["completed_nowait_sqpoll"]
    assert 8 <= shared <= len(requests) - 1  # a chunk at least; never the caller's first read
    assert s1["enter_calls"] == s0["enter_calls"]  # the ring was not entered


def test_reads_the_sqpoll_thread_finds_uncached_go_to_the_ring(ringlet, run, require_io_uring, make_file):
    """A read handed to the thread whose pages are not cached is refused
    there (RWF_NOWAIT: the thread never waits for the device) and completed
    by the ring, as the caller's own misses are."""
    path, data = make_file(32 << 20)
    resident = _drop_from_page_cache(path)
    # The first read must be cached (handovers begin after a first hit); the
    # others are 256 KiB apart, none of them still cached.
    offsets = [i * (256 << 10) + 4096 for i in range(1, 128) if not resident[(i * (256 << 10) + 4096) // 4096]]
    if len(offsets) < 64 or resident[1] or sum(resident) > len(resident) // 2:
        pytest.skip(f"this file system keeps the pages after POSIX_FADV_DONTNEED ({sum(resident)} of "
                    f"{len(resident)} still cached)")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # the first page only
        assert os.pread(fd, 4096, 0) == data[:4096]
    finally:
        os.close(fd)
    if _resident_pages(path)[1]:
        pytest.skip("the file system read the second page in with the first")
    # The last read (the thread's first) has its first page cached and its
    # second not: the thread's short count must not be taken for the end of the file.
    requests = [(4096, 0)] + [(4096, off) for off in offsets[:64]] + [(8192, 0)]

    # No readahead into the next offsets.
    got, s0, s1 = run(_batch_with_sqpoll(ringlet, path, requests, os.POSIX_FADV_RANDOM))
    assert got == [data[off:off + n] for n, off in requests]
    # Of the thread's reads only the last may count as copied: its second
    # page, which the thread's refusal started reading in, may be there when
    # the caller goes on with it.  What was not read at once went to the ring.
    shared = s1["completed_nowait_sqpoll"] - s0["completed_nowait_sqpoll"]
    nowait = s1["completed_nowait"] - s0["completed_nowait"]
    by_ring = (s1["submitted"] - s0["submitted"]) - nowait
    assert shared in (0, 1)
    assert 1 + shared <= nowait < len(requests) // 2 and by_ring >= len(requests) - nowait


def test_the_sqpoll_thread_ends_with_its_engine(ringlet, run, require_io_uring, make_file):
    """shutdown() lets the thread go: no kernel thread is left behind."""
    import time

    path, data = make_file(256 << 10)
    before = _sqpoll_threads()  # earlier engines' threads may still be ending

    async def main():
        engine = ringlet.get_engine()
        _sqpoll_always(engine)
        async with ringlet.open(path, "rb") as f:
            got = await f.pread_many([(4096, i * 4096) for i in range(64)])
        ours = _sqpoll_threads() - before
        engine.shutdown()
        with pytest.raises(RuntimeError, match="closed"):
            engine._sqpoll_always(True)
        return got, ours

    got, ours = run(main())
    assert got == [data[i * 4096:(i + 1) * 4096] for i in range(64)]
    assert len(ours) == 1
    deadline = time.monotonic() + 10  # the kernel ends the thread after the ring's teardown
    while ours & _sqpoll_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not ours & _sqpoll_threads()


def _cpu_cgroup(tmp_name):
    """A new cgroup of the CPU controller (v1, or v2 with cpu in the root's
    subtree_control): (its directory, the file a quota goes in, how a quota
    of n CPUs is written), or a skip with the reason."""
    import uuid

    name = f"ringlet-test-{tmp_name}-{uuid.uuid4().hex[:8]}"
    for root, quota_file, quota_of in [
            ("/sys/fs/cgroup/cpu", "cpu.cfs_quota_us", lambda n: f"{int(n * 100_000)}"),
            ("/sys/fs/cgroup", "cpu.max", lambda n: f"{int(n * 100_000)} 100000")]:
        if not os.path.exists(os.path.join(root, quota_file if root.endswith("/cpu") else "cgroup.controllers")):
            continue
        if root == "/sys/fs/cgroup":
            with open(os.path.join(root, "cgroup.subtree_control")) as f:
                if "cpu" not in f.read().split():
                    continue
        group = os.path.join(root, name)
        try:
            os.mkdir(group)
        except OSError as exc:
            pytest.skip(f"cannot make a cgroup under {root}: {exc}")
        return group, quota_file, quota_of
    pytest.skip("no cgroup hierarchy with the CPU controller to make a group in")


def _sqpoll_in_child(procs=None):
    """Whether a new process (in the cgroup whose cgroup.procs is procs, if
    given) can have the SQPOLL thread: _sqpoll_always's answer."""
    import subprocess

    from conftest import child_env

    child = ("import asyncio, os\n"
             f"if {procs!r}: open({procs!r}, 'w').write(str(os.getpid()))\n"
             "import ringlet\n"
             "async def main():\n"
             "    return ringlet.get_engine()._sqpoll_always(True)\n"
             "print(asyncio.run(main()))\n")
    out = subprocess.run([sys.executable, "-c", child], env=child_env(RINGLET_BACKEND="io_uring"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {"True": True, "False": False}[out.stdout.strip()]


@pytest.mark.parametrize("limit, wanted", [(1.0, False), (1.5, False), (2.0, True)])
def test_no_sqpoll_thread_under_a_cgroup_limit_below_two_cpus(require_io_uring, tmp_path, limit, wanted):
    """In a container limited to fewer than two CPUs (--cpus, a pod's limit)
    the thread would spend the caller's quota, not an idle CPU: it is not set
    up.  With two CPUs' quota it is."""
    if not _sqpoll_in_child():
        pytest.skip("io_uring's SQPOLL thread cannot be had here at all")
    group, quota_file, quota_of = _cpu_cgroup(tmp_path.name[:20])
    try:
        with open(os.path.join(group, quota_file), "w") as f:
            f.write(quota_of(limit))
        got = _sqpoll_in_child(os.path.join(group, "cgroup.procs"))
    finally:
        os.rmdir(group)  # empty again: the child has exited
    assert got is wanted
