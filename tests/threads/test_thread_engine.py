"""The thread fallback (ringlet/_threads.py) built by hand: the C engine's
interface, stats keys, errors and trace records; a bounded pool that what may
block for ever (FIFO reads and opens) never starves.

Most tests here make their ThreadEngine themselves (conftest.thread_engine),
so they run once (own_backend); the contract tests of the other files run on
both backends through the public API.
"""

import asyncio
import os
import select
import threading
import time

import pytest

from ringlet import _contract as contract

from conftest import fd_count, open_fifo_writer, thread_engine, wait_until


# --------------------------------------------------------------------------
# the same interface and the same errors
# --------------------------------------------------------------------------


@pytest.mark.own_backend
def test_thread_engine_has_the_c_engine_interface():
    from ringlet import _ringlet
    from ringlet._threads import ThreadEngine

    # the C engine's own loop hooks (call_soon'd, and the reader callback's drain) and test hooks
    internal = {"_flush", "_tick", "_wake", "_drain_and_wake", "_restrict_opcodes", "_sqpoll_always"}
    wanted = {name for name in dir(_ringlet.Engine) if not name.startswith("__")} - internal
    missing = sorted(name for name in wanted if not hasattr(ThreadEngine, name))
    assert not missing, missing


@pytest.mark.own_backend
def test_thread_engine_stats_keys_are_the_c_engines(run):
    from ringlet import _ringlet

    async def main():
        async with thread_engine() as engine:
            threads = engine.stats()
        try:
            ring = _ringlet.Engine(asyncio.get_running_loop())
        except OSError:
            return threads, None
        try:
            return threads, ring.stats()
        finally:
            ring.shutdown()

    threads, ring = run(main())
    if ring is None:
        pytest.skip("no io_uring here to compare with")
    assert set(threads) == set(ring)
    assert {k: type(v) for k, v in threads.items()} == {k: type(v) for k, v in ring.items()}


def _error_cases(tmp):
    """(name, call(engine, fd) -> future or raises) for errors both engines must give alike."""
    missing, file_, dir_ = f"{tmp}/missing".encode(), f"{tmp}/file".encode(), f"{tmp}/dir".encode()
    return [
        ("open-missing", lambda e, fd: e.open(missing, os.O_RDONLY)),
        ("open-missing-named", lambda e, fd: e.open(missing, os.O_RDONLY, 0, "shown name")),
        ("open-missing-None", lambda e, fd: e.open(missing, os.O_RDONLY, 0, None)),
        ("open-dir-for-writing", lambda e, fd: e.open(dir_, os.O_WRONLY)),
        ("open-exclusive-existing", lambda e, fd: e.open(file_, os.O_WRONLY | os.O_CREAT | os.O_EXCL)),
        ("open-bad-path-type", lambda e, fd: e.open(1.5, os.O_RDONLY)),
        ("open-str-path", lambda e, fd: e.open("str", os.O_RDONLY)),
        ("open-nul", lambda e, fd: e.open(b"a\0b", os.O_RDONLY)),
        ("open-flags-float", lambda e, fd: e.open(file_, 0.5)),
        ("read-bad-fd", lambda e, fd: e.read(987654, 10, 0)),
        ("read-fd-str", lambda e, fd: e.read("0", 10)),
        ("read-size-negative", lambda e, fd: e.read(fd, -1)),
        ("read-size-float", lambda e, fd: e.read(fd, 1.0)),
        ("read-offset-negative", lambda e, fd: e.read(fd, 1, -2)),
        ("read-offset-huge", lambda e, fd: e.read(fd, 1, 2**63)),
        ("read-too-many-args", lambda e, fd: e.read(fd, 1, 0, 0, 0)),
        ("read-align-3", lambda e, fd: e.read(fd, 1, 0, 3)),
        ("read-align-negative", lambda e, fd: e.read(fd, 1, 0, -1)),
        ("readinto-bytes", lambda e, fd: e.readinto(fd, b"read-only")),
        ("readinto-str", lambda e, fd: e.readinto(fd, "text")),
        ("readinto-noncontiguous", lambda e, fd: e.readinto(fd, memoryview(bytearray(10))[::2])),
        ("write-str", lambda e, fd: e.write(fd, "text")),
        ("write-read-only-fd", lambda e, fd: e.write(fd, b"x", 0)),
        ("write-bad-fd", lambda e, fd: e.write(987654, b"x")),
        ("write-direct-unaligned", lambda e, fd: e.write(fd, b"x", 0, 512)),
        ("fsync-bad-fd", lambda e, fd: e.fsync(987654)),
        ("close-bad-fd", lambda e, fd: e.close(987654)),
        ("statx-missing", lambda e, fd: e.statx(missing)),
        ("statx-missing-named", lambda e, fd: e.statx(missing, "name")),
        ("statx-bad-fd", lambda e, fd: e.statx(987654)),
        ("statx-bad-fd-named", lambda e, fd: e.statx(987654, "name")),
        ("rename-missing", lambda e, fd: e.rename(missing, file_ + b"2")),
        ("rename-noreplace", lambda e, fd: e.rename(file_, dir_, 1)),
        ("rename-flags-huge", lambda e, fd: e.rename(missing, file_, 2**40)),
        ("unlink-missing", lambda e, fd: e.unlink(missing)),
        ("unlink-dir", lambda e, fd: e.unlink(dir_)),
        ("rmdir-file", lambda e, fd: e.unlink(file_, True)),
        ("mkdir-existing", lambda e, fd: e.mkdir(dir_)),
        ("symlink-existing", lambda e, fd: e.symlink(b"target", file_)),
        ("link-missing", lambda e, fd: e.link(missing, file_ + b"3")),
        ("link-existing-named", lambda e, fd: e.link(file_, dir_, True, "a", "b")),
        ("ftruncate-negative", lambda e, fd: e.ftruncate(fd, -1)),
        ("copy-chunk-0", lambda e, fd: e.copy(fd, fd, 0)),
        ("copy-depth-99", lambda e, fd: e.copy(fd, fd, 4096, 99)),
        ("copy-chunk-str", lambda e, fd: e.copy(fd, fd, "1")),
        ("read_many-not-a-sequence", lambda e, fd: e.read_many(fd, 5)),
        ("read_many-not-a-pair", lambda e, fd: e.read_many(fd, [(1,)])),
        ("read_many-list-pair", lambda e, fd: e.read_many(fd, [[1, 0]])),
        ("read_many-negative", lambda e, fd: e.read_many(fd, [(1, -1)])),
        ("read_many-bad-fd", lambda e, fd: e.read_many(987654, [(1, 0)])),
        ("shutdown-str", lambda e, fd: e.shutdown("1")),
        ("supports-str", lambda e, fd: e.supports("22")),
        ("tracer-not-callable", lambda e, fd: setattr(e, "tracer", 5)),
    ]


def _outcome_of(call):
    async def main():
        try:
            result = call()
            if isinstance(result, asyncio.Future):
                result = await result
        except BaseException as exc:  # noqa: BLE001
            return (type(exc), getattr(exc, "errno", None), str(exc), getattr(exc, "filename", None),
                    getattr(exc, "filename2", None))
        return ("ok",)

    return main


@pytest.mark.own_backend
def test_errors_are_the_c_engines(run, tmp_path):
    """Every bad call gives the same exception (class, errno, message,
    filename, filename2) on both engines."""
    from ringlet import _ringlet

    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"0123456789")
    cases = _error_cases(str(tmp_path))

    async def main():
        fd = os.open(tmp_path / "file", os.O_RDONLY)
        try:
            try:
                ring = _ringlet.Engine(asyncio.get_running_loop())
            except OSError:
                return None
            loop = asyncio.get_running_loop()
            loop.add_reader(ring.fileno(), ring.drain)
            try:
                async with thread_engine() as threads:
                    outcomes = []
                    for name, call in cases:
                        a = await _outcome_of(lambda: call(ring, fd))()
                        b = await _outcome_of(lambda: call(threads, fd))()
                        outcomes.append((name, a, b))
                    return outcomes
            finally:
                loop.remove_reader(ring.fileno())
                ring.shutdown()
        finally:
            os.close(fd)

    outcomes = run(main())
    if outcomes is None:
        pytest.skip("no io_uring here to compare with")
    differ = [f"{name}: io_uring {a!r}, threads {b!r}" for name, a, b in outcomes if a != b]
    assert not differ, "\n".join(differ)
    assert sum(a[0] != "ok" for _, a, _ in outcomes) >= len(outcomes) - 2  # they are errors indeed


@pytest.mark.own_backend
def test_thread_engine_does_the_low_level_api(run, tmp_path):
    """The ThreadEngine directly: every call returns a future of the running loop."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    data = os.urandom(300_000)
    src.write_bytes(data)

    async def main():
        async with thread_engine() as e:
            loop = asyncio.get_running_loop()
            futures = []

            def check(fut):
                assert isinstance(fut, asyncio.Future) and fut.get_loop() is loop
                futures.append(fut)
                return fut

            fd = await check(e.open(os.fsencode(src), os.O_RDONLY))
            out = await check(e.open(os.fsencode(dst), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600))
            assert await check(e.read(fd, 10, 5)) == data[5:15]
            buf = bytearray(100)
            assert await check(e.readinto(fd, buf, 1000)) == 100 and buf == data[1000:1100]
            assert await check(e.read_many(fd, [(3, 0), (4, 10)])) == [data[:3], data[10:14]]
            assert await check(e.copy(fd, out)) == len(data)
            assert await check(e.write(out, b"head", 0)) == 4
            assert await check(e.fsync(out, True)) is None
            assert await check(e.ftruncate(out, 10)) is None
            st = await check(e.statx(out))
            assert st.st_size == 10
            assert (await check(e.statx(os.fsencode(src)))).st_size == len(data)
            assert await check(e.close(out)) is None and await check(e.close(fd)) is None
            d = os.fsencode(tmp_path / "d")
            assert await check(e.mkdir(d, 0o700)) is None
            assert await check(e.symlink(b"../src", d + b"/link")) is None
            assert await check(e.link(d + b"/link", d + b"/hard")) is None  # follows the symlink
            assert await check(e.rename(d + b"/hard", d + b"/renamed")) is None
            assert await check(e.unlink(d + b"/renamed")) is None
            assert await check(e.unlink(d + b"/link")) is None
            assert await check(e.unlink(d, True)) is None
            stats = e.stats()
            assert stats["submitted"] == stats["completed"] == len(futures) - 1 + 5  # copy: 2 reads, 1 write, the closes of its 2 duplicates
            assert stats["in_flight"] == 0
            assert e.supports(22) and e.supports(55) and not e.supports(200)
            return os.stat(src).st_nlink

    assert run(main()) == 1
    assert (tmp_path / "dst").read_bytes() == b"head" + data[4:10]


@pytest.mark.own_backend
def test_thread_engine_tracer_records_have_the_c_keys(run, tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 100)
    keys = set(contract.TRACE_KEYS)

    async def main():
        records = []
        async with thread_engine() as e:
            e.tracer = records.append
            fd = await e.open(os.fsencode(tmp_path / "f"), os.O_RDONLY)
            assert await e.read(fd, 10, 0) == b"x" * 10
            await e.close(fd)
            e.tracer = None
        return records

    records = run(main())
    assert [r["op"] for r in records] == ["open", "read", "close"]
    for r in records:
        assert set(r) == keys
        assert r["submitted"] <= r["returned"] <= r["reaped"] <= r["resolved"] <= r["resumed"]
        assert r["inline"] is False and r["reap_thread"] == r["thread"] == threading.get_ident()
    assert records[1]["result"] == 10


# --------------------------------------------------------------------------
# the fallback's pool: bounded, never starved by what may block for ever
# --------------------------------------------------------------------------


@pytest.mark.own_backend
def test_pool_is_bounded(run, tmp_path):
    path = tmp_path / "f"
    data = os.urandom(1 << 20)
    path.write_bytes(data)

    class Gate:
        """A job that holds a worker until released: the reads find every
        worker busy, whatever the machine's speed."""

        key = None

        def __init__(self, release):
            self.release = release

        def run(self):
            self.release.wait(30)

    async def main():
        async with thread_engine(max_workers=3) as e:
            fd = os.open(path, os.O_RDONLY)
            release = threading.Event()
            try:
                for _ in range(3):
                    e.pool.submit(Gate(release))
                assert await wait_until(lambda: e.pool.busy == 3, timeout=20)
                seen = []
                reads = [e.read(fd, 4096, i * 4096) for i in range(200)]
                release.set()
                while not all(r.done() for r in reads):
                    seen.append((e.pool.size, e.pool.busy))
                    await asyncio.sleep(0)
                results = await asyncio.gather(*reads)
            finally:
                release.set()
                os.close(fd)
            return seen, results, e.stats(), e.pool.max_workers

    seen, results, stats, max_workers = run(main())
    assert results == [data[i * 4096:(i + 1) * 4096] for i in range(200)]
    assert max_workers == 3
    assert max(size for size, _ in seen) <= 3 and max(busy for _, busy in seen) <= 3
    assert stats["overflowed"] == 200 and stats["in_flight"] == 0  # every read waited for a worker


@pytest.mark.own_backend
def test_fifo_waits_take_no_worker_and_cannot_starve_the_pool(run, tmp_path, fifo):
    """More FIFO reads and FIFO opens pending than the pool has workers:
    regular-file work still gets done at once."""
    path = tmp_path / "f"
    path.write_bytes(b"regular")
    lonely = str(tmp_path / "lonely-fifo")
    os.mkfifo(lonely)

    async def main():
        async with thread_engine(max_workers=1) as e:
            rfd = os.open(fifo, os.O_RDWR)
            try:
                reads = [e.read(rfd, 10) for _ in range(10)]
                opens = [e.open(os.fsencode(lonely), os.O_WRONLY) for _ in range(5)]  # no reader: ENXIO, retried
                await asyncio.sleep(0.05)
                assert not any(f.done() for f in reads + opens)
                fd = await e.open(os.fsencode(path), os.O_RDONLY)
                got = await e.read(fd, 100, 0)
                await e.close(fd)
                waiting = not any(f.done() for f in reads + opens)  # done while all 15 still wait
                # The worker that ran the close counts itself idle just after it
                # resolved the close's future; the 15 FIFO waits must hold no worker.
                idle = await wait_until(lambda: e.pool.busy == 0)
                waiting = waiting and not any(f.done() for f in reads + opens)
                for f in reads + opens:
                    f.cancel()
                settled = await wait_until(lambda: e.stats()["in_flight"] == 0)
                return got, waiting, idle, settled
            finally:
                os.close(rfd)

    got, waiting, idle, settled = run(main())
    assert got == b"regular"
    assert waiting
    assert idle
    assert settled


@pytest.mark.timeout(60)
def test_cancelled_fifo_reads_and_opens_leave_no_worker_blocked(ringlet, run, require_threads, fifo, make_file):
    """20 FIFO reads and 20 FIFO opens (for writing, no reader) cancelled:
    no worker is left busy, the threads are back to where they were, no
    descriptor leaks, and the engine goes on working."""
    path, data = make_file(5000)

    async def main():
        engine = ringlet.get_engine()
        assert await ringlet.read_file(path) == data
        await asyncio.sleep(0)
        threads_before = {t for t in threading.enumerate() if not t.name.startswith("ringlet-worker")}
        fds_before = fd_count()
        f = await ringlet.open(fifo, "r+b")
        reads = [asyncio.ensure_future(f.read(10)) for _ in range(20)]
        lonely = fifo + "-lonely"
        os.mkfifo(lonely)
        opens = [asyncio.ensure_future(ringlet.open(lonely, "wb")) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in reads + opens)
        during = engine.pool.busy
        for t in reads + opens:
            t.cancel()
        outcomes = await asyncio.gather(*reads, *opens, return_exceptions=True)
        settled = await wait_until(lambda: engine.stats()["in_flight"] == 0)
        # A worker counts itself idle just after resolving its last future.
        busy_after = 0 if await wait_until(lambda: engine.pool.busy == 0) else engine.pool.busy
        await f.close()
        fds_back = await wait_until(lambda: fd_count() == fds_before)
        threads_after = {t for t in threading.enumerate() if not t.name.startswith("ringlet-worker")}
        workers = [t for t in threading.enumerate() if t.name.startswith("ringlet-worker")]
        still = await ringlet.read_file(path)
        return (outcomes, during, settled, busy_after, fds_back, threads_before, threads_after, workers,
                engine.pool.max_workers, still)

    (outcomes, during, settled, busy_after, fds_back, before, after, workers, max_workers, still) = run(main())
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    assert busy_after == 0 and settled and fds_back
    assert during <= max_workers  # FIFO reads take none; opens only for the instant of a try
    assert after == before, (before, after)
    assert len(workers) <= max_workers
    assert still == data


@pytest.mark.own_backend
def test_fifo_open_for_writing_waits_for_a_reader(run, tmp_path):
    lonely = str(tmp_path / "fifo")
    os.mkfifo(lonely)

    async def main():
        async with thread_engine(max_workers=2) as e:
            fut = e.open(os.fsencode(lonely), os.O_WRONLY)
            await asyncio.sleep(0.05)
            assert not fut.done()
            rfd = os.open(lonely, os.O_RDONLY | os.O_NONBLOCK)
            try:
                wfd = await asyncio.wait_for(fut, 20)
                blocking = os.get_blocking(wfd)
                assert await e.write(wfd, b"through") == 7
                await e.close(wfd)
                os.set_blocking(rfd, True)
                idle = await wait_until(lambda: e.pool.busy == 0)  # the close's worker, just after it
                return blocking, os.read(rfd, 100), idle
            finally:
                os.close(rfd)

    assert run(main()) == (True, b"through", True)


@pytest.mark.own_backend
@pytest.mark.parametrize("reopen", ["engine", "adopted"])
def test_a_number_reopened_before_its_close_is_delivered_can_be_read(run, tmp_path, monkeypatch, reopen):
    """A close runs in a worker, which may post its completion after another
    worker's open got the same number and was delivered (the loop then runs
    the caller's next read first).  Operations started after a close fail
    with EBADF, but not on the new file: held here by keeping the close's
    worker, after its close(2), until the new file has been read.  The new
    descriptor comes from the engine's open, or from os.open handed over
    with _adopt (as ringlet.open(fd) does)."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"old")
    new.write_bytes(b"new file")
    closed, release = threading.Event(), threading.Event()
    real_close = os.close
    hold = []  # the descriptor whose close is held, once

    def close_then_wait(fd):
        real_close(fd)
        if hold and fd == hold[0] and threading.current_thread() is not threading.main_thread():
            hold.clear()
            closed.set()
            release.wait(20)

    async def main():
        async with thread_engine() as e:
            fd = os.open(old, os.O_RDONLY)
            monkeypatch.setattr(os, "close", close_then_wait)
            hold.append(fd)
            closing = e.close(fd)
            try:
                assert await asyncio.to_thread(closed.wait, 20)
                if reopen == "engine":
                    new_fd = await e.open(os.fsencode(new), os.O_RDONLY)
                else:
                    new_fd = os.open(new, os.O_RDONLY)
                    e._adopt(new_fd)
                got = await e.read(new_fd, 100, 0)
            finally:
                release.set()
            await closing
            await e.close(new_fd)
        return new_fd == fd, got

    assert run(main()) == (True, b"new file")


@pytest.mark.own_backend
def test_reads_wait_on_a_descriptor_of_their_own(run, fifo):
    """As the kernel holds the file: closing the caller's descriptor does not
    disturb a pending read, which still gets data written later."""

    async def main():
        async with thread_engine() as e:
            fd = os.open(fifo, os.O_RDWR)
            fut = e.read(fd, 5)
            await asyncio.sleep(0.01)
            assert await e.close(fd) is None
            wfd = os.open(fifo, os.O_RDWR)
            try:
                os.write(wfd, b"hello")
                return await asyncio.wait_for(fut, 20)
            finally:
                os.close(wfd)

    assert run(main()) == b"hello"


@pytest.mark.own_backend
def test_o_nonblock_is_set_only_around_each_call(run, fifo):
    async def main():
        async with thread_engine() as e:
            fd = os.open(fifo, os.O_RDWR)
            try:
                fut = e.read(fd, 3)
                await asyncio.sleep(0.01)
                pending_blocking = os.get_blocking(fd)
                os.write(fd, b"abc")
                got = await asyncio.wait_for(fut, 20)
                return pending_blocking, got, os.get_blocking(fd)
            finally:
                os.close(fd)

    assert run(main()) == (True, b"abc", True)


@pytest.mark.own_backend
def test_fifo_read_only_open_waits_for_data_not_eof(run, fifo):
    """open(fifo, O_RDONLY) never blocks a worker (O_NONBLOCK), yet a read
    waits for a writer's data, as a blocking open + read would."""

    async def main():
        async with thread_engine() as e:
            fd = await asyncio.wait_for(e.open(os.fsencode(fifo), os.O_RDONLY), 20)
            try:
                fut = e.read(fd, 100)
                await asyncio.sleep(0.05)
                assert not fut.done()
                wfd = await open_fifo_writer(fifo)
                os.write(wfd, b"late data")
                os.close(wfd)
                first = await asyncio.wait_for(fut, 20)
                eof = await asyncio.wait_for(e.read(fd, 100), 20)  # the writer is gone
                return first, eof
            finally:
                os.close(fd)

    assert run(main()) == (b"late data", b"")


# --------------------------------------------------------------------------
# an interrupt while a drain resolves its batch (issue 13.8)
# --------------------------------------------------------------------------


class _InterruptAt(asyncio.Future):
    """set_result raises KeyboardInterrupt at the countdown-th call (before
    setting anything), as a Ctrl-C landing in the middle of a drain would."""

    countdown = 0

    def set_result(self, result):
        cls = _InterruptAt
        if cls.countdown > 0:
            cls.countdown -= 1
            if cls.countdown == 0:
                raise KeyboardInterrupt("injected")
        super().set_result(result)


@pytest.mark.own_backend
@pytest.mark.parametrize("position", [1, 6, 12])
def test_an_interrupt_while_draining_is_raised_after_its_batch(run, make_file, position):
    """Operations finished in the pool: the drain that meets the interrupt
    resolves every future of its batch (completed == futures done) and then
    raises it, once; every read gets its bytes."""
    from ringlet._threads import ThreadEngine

    path, data = make_file(4096)
    n = 12

    async def main():
        engine = ThreadEngine(asyncio.get_running_loop(), future_type=_InterruptAt)
        fd = os.open(path, os.O_RDONLY)
        try:
            futures = [engine.read(fd, 16, 16 * i) for i in range(n)]
            _InterruptAt.countdown = position
            interrupts, batch_whole = 0, []
            deadline = time.monotonic() + 20
            while not all(f.done() for f in futures) and time.monotonic() < deadline:
                select.select([engine.fileno()], [], [], 0.1)
                try:
                    engine.drain()
                except KeyboardInterrupt:
                    interrupts += 1
                    batch_whole.append(engine.stats()["completed"] == sum(f.done() for f in futures))
            return interrupts, batch_whole, [f.result() for f in futures]
        finally:
            _InterruptAt.countdown = 0
            os.close(fd)
            engine.shutdown()

    interrupts, batch_whole, results = run(main())
    assert interrupts == 1 and batch_whole == [True]
    assert results == [data[16 * i:16 * i + 16] for i in range(n)]
