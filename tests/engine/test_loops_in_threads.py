"""Threads: each thread's event loop gets an engine of its own, and an engine
or a file used from a thread that does not own it raises RuntimeError
instead of touching anything.  On both backends (the test parameter), and
on a thread fallback built by hand."""

import asyncio
import os
import threading

import pytest

from conftest import asyncio_run, thread_engine

WRONG_THREAD = "ringlet: an engine may only be used from the thread running its event loop"


def _in_thread(fn):
    """Run fn() in a new thread; return its result or raise its exception."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the thread hung"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.timeout(60)
def test_four_threads_four_loops_four_engines(ringlet, tmp_path):
    """4 threads, each running asyncio.run with ringlet I/O at the same time:
    each loop has its own engine, and every byte lands where it should."""
    barrier = threading.Barrier(4)
    results, errors = {}, []

    def worker(i):
        async def main():
            engine = ringlet.get_engine()
            loop = asyncio.get_running_loop()
            data = os.urandom(100_000 + i)
            path = str(tmp_path / f"t{i}.bin")
            await asyncio.get_running_loop().run_in_executor(None, barrier.wait, 10)
            for _ in range(20):
                assert await ringlet.write_file(path, data) == len(data)
                assert await ringlet.read_file(path) == data
                async with ringlet.open(path, "rb") as f:
                    parts = await asyncio.gather(*(f.pread(1000, off) for off in range(0, 50_000, 5000)))
                assert parts == [data[off:off + 1000] for off in range(0, 50_000, 5000)]
            assert ringlet.get_engine() is engine and engine.loop is loop
            return id(engine), type(engine).__name__, id(loop), threading.get_ident()

        try:
            results[i] = asyncio_run(main())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 4
    engines = {r[0] for r in results.values()}
    assert len(engines) == 4, results
    assert len({r[2] for r in results.values()}) == 4  # four loops
    assert len({r[1] for r in results.values()}) == 1  # one backend


def test_engine_from_another_thread_raises(ringlet, run, make_file):
    path, data = make_file(1000)

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        try:
            calls = {
                "read": lambda: engine.read(fd, 10, 0),
                "readinto": lambda: engine.readinto(fd, bytearray(10), 0),
                "write": lambda: engine.write(fd, b"x", 0),
                "open": lambda: engine.open(os.fsencode(path), os.O_RDONLY),
                "close": lambda: engine.close(fd),
                "statx": lambda: engine.statx(fd),
                "fsync": lambda: engine.fsync(fd),
                "read_many": lambda: engine.read_many(fd, [(1, 0)]),
                "copy": lambda: engine.copy(fd, fd),
                "drain": lambda: engine.drain(),
            }
            errors = {}
            for name, call in calls.items():
                try:
                    _in_thread(call)
                except RuntimeError as exc:
                    errors[name] = str(exc)
            still = await engine.read(fd, 10, 0)  # the owner goes on as before
            return errors, still, engine.stats()["in_flight"]
        finally:
            os.close(fd)

    errors, still, in_flight = run(main())
    assert errors == {name: WRONG_THREAD for name in errors} and len(errors) == 10, errors
    assert still == data[:10]
    assert in_flight == 0


def test_file_from_another_threads_loop_raises(ringlet, run, make_file):
    """A file opened on one loop, used from a loop in another thread."""
    path, data = make_file(5000)

    async def main():
        f = await ringlet.open(path, "r+b")
        try:
            async def elsewhere():
                outcomes = {}
                for name, call in {
                    "read": lambda: f.read(10),
                    "pread": lambda: f.pread(10, 0),
                    "readinto": lambda: f.readinto(bytearray(10)),
                    "write": lambda: f.write(b"x"),
                    "pwrite": lambda: f.pwrite(b"x", 0),
                    "fsync": lambda: f.fsync(),
                }.items():
                    try:
                        await call()
                        outcomes[name] = "no error"
                    except RuntimeError as exc:
                        outcomes[name] = str(exc)
                return outcomes

            outcomes = _in_thread(lambda: asyncio_run(elsewhere()))
            return outcomes, await f.pread(10, 0), await f.read(5)
        finally:
            await f.close()

    outcomes, pread, read = run(main())
    assert outcomes == dict.fromkeys(outcomes, WRONG_THREAD) and len(outcomes) == 6, outcomes
    assert pread == data[:10]
    assert read == data[:5]
    with open(path, "rb") as f:
        assert f.read() == data  # nothing was written


@pytest.mark.own_backend
def test_thread_engine_refuses_other_threads_too(run, tmp_path):
    """The same refusal from a fallback engine built by hand."""
    (tmp_path / "f").write_bytes(b"data")

    async def main():
        async with thread_engine() as engine:
            fd = os.open(tmp_path / "f", os.O_RDONLY)
            try:
                with pytest.raises(RuntimeError, match="only be used from the thread running its event loop"):
                    _in_thread(lambda: engine.read(fd, 4, 0))
                return await engine.read(fd, 4, 0)
            finally:
                os.close(fd)

    assert run(main()) == b"data"


def test_thread_loop_gets_own_engine_while_main_loop_runs(ringlet, run, make_file):
    path, data = make_file(3000)

    async def main():
        mine = ringlet.get_engine()

        async def other():
            return ringlet.get_engine(), await ringlet.read_file(path)

        theirs, got = _in_thread(lambda: asyncio_run(other()))
        return mine, theirs, got, await ringlet.read_file(path)

    mine, theirs, got, again = run(main())
    assert mine is not theirs
    assert theirs.closed  # its loop is closed: shut down with it
    assert got == again == data
