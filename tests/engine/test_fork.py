"""fork(): a child gets a fresh engine of its own and never touches its
parent's (the C engine checks a fork generation; _engine.py forgets every
engine in the child); the parent goes on working; multiprocessing with the
fork start method works.  On both backends (the test parameter)."""

import asyncio
import multiprocessing
import os
import signal
import time

import pytest

import ringlet
from conftest import asyncio_run, child_env, wait_until, write_fifo

PARENT_ENGINE = "ringlet: this engine belongs to the parent process; a forked child gets its own"


def _wait_child(pid, timeout=30):
    """Exit status of child pid; it is killed (and the test fails) if it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")


def _fork(child):
    """Fork; the child runs child() and exits 0 if it returns True, else 1
    (2 if it raised), never running the rest of pytest."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            code = 0 if child() else 1
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def test_child_gets_its_own_engine_parent_goes_on(ringlet, run, make_file, tmp_path):
    path, data = make_file(50_000)
    out = str(tmp_path / "from-child.bin")

    async def parent_io():
        assert await ringlet.read_file(path) == data
        return ringlet.get_engine()

    parent_engine = run(parent_io())

    def child():
        async def main():
            engine = ringlet.get_engine()
            await ringlet.write_file(out, data[::-1])
            got = await ringlet.read_file(out)
            async with ringlet.open(path, "rb") as f:
                part = await f.pread(100, 1000)
            return engine is not parent_engine and got == data[::-1] and part == data[1000:1100]

        return asyncio.run(main())

    assert _wait_child(_fork(child)) == 0
    with open(out, "rb") as f:
        assert f.read() == data[::-1]
    assert run(parent_io()) is not parent_engine  # a new loop: a new engine, and it works


def test_fork_inside_a_running_loop_with_io_in_flight(ringlet, run, fifo, make_file):
    """The parent forks while its engine has a FIFO read in flight.  The child
    cannot use the parent's engine (RuntimeError, no crash), makes its own in
    a fresh loop; the parent's read completes afterwards, untouched."""
    path, data = make_file(10_000)

    async def main():
        engine = ringlet.get_engine()
        f = await ringlet.open(fifo, "r+b")
        try:
            pending = asyncio.ensure_future(f.read(5))
            await asyncio.sleep(0.02)
            assert not pending.done()

            def child():
                try:
                    engine.read(f.fileno(), 1, 0)
                except RuntimeError as exc:
                    refused = str(exc) == PARENT_ENGINE
                else:
                    refused = False

                async def fresh():
                    mine = ringlet.get_engine()
                    return mine is not engine and await ringlet.read_file(path) == data

                # The parent's loop is "running" in the child's copy of memory:
                # a new thread-free asyncio.run works all the same.
                return refused and asyncio.run(fresh())

            status = await asyncio.get_running_loop().run_in_executor(None, _wait_child, _fork(child))
            assert not pending.done()
            write_fifo(fifo, b"hello")
            got = await asyncio.wait_for(pending, 5)
            settled = await wait_until(lambda: engine.stats()["in_flight"] == 0)
            return status, got, settled, await ringlet.read_file(path)
        finally:
            await f.close()

    status, got, settled, again = run(main())
    assert status == 0
    assert got == b"hello"
    assert settled
    assert again == data


def test_child_shutting_down_the_parents_engine_changes_nothing(ringlet, run, make_file):
    """A child that calls shutdown() (or anything else) on its parent's engine:
    RuntimeError or nothing, and the parent's engine is as it was."""
    path, data = make_file(2000)

    async def main():
        engine = ringlet.get_engine()
        assert await ringlet.read_file(path) == data

        def child():
            try:
                engine.drain()
            except RuntimeError as exc:
                refused = str(exc) == PARENT_ENGINE
            else:
                refused = False
            return refused and engine.shutdown() == 0

        status = await asyncio.get_running_loop().run_in_executor(None, _wait_child, _fork(child))
        return status, engine.closed, await ringlet.read_file(path), ringlet.get_engine() is engine

    assert run(main()) == (0, False, data, True)


CHILD_EXITS_NORMALLY = """
import asyncio, gc, os, sys
import ringlet

async def main():
    engine = ringlet.get_engine()
    r, w = os.pipe()
    f = await ringlet.open(r, "rb")
    pending = asyncio.ensure_future(f.read(5))
    await asyncio.sleep(0.02)
    pid = os.fork()
    if pid == 0:
        # The child leaves the normal way: asyncio.run in the child, then
        # interpreter finalization collects the parent's loop and engine.
        async def child():
            return await ringlet.read_file(sys.argv[1])
        assert asyncio.run(child()) == b"payload"
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    os.write(w, b"hello")
    got = await asyncio.wait_for(pending, 5)
    print(os.waitstatus_to_exitcode(status), got, engine.stats()["in_flight"])
    await f.close()
    os.close(w)

asyncio.run(main())
"""




def test_child_exiting_normally_leaves_the_parents_engine_alone(ringlet, make_file):
    """Forked inside asyncio.run with a read pending: the child leaves through
    asyncio.run's teardown, which cancels the parent's pending task in the
    child's copy of memory, and through interpreter finalization."""
    import subprocess
    import sys

    path, _ = make_file(b"payload")
    env = child_env()
    proc = subprocess.run([sys.executable, "-c", CHILD_EXITS_NORMALLY, path], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0 b'hello' 0", proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def _read_in_child(path):
    """A multiprocessing target: ringlet I/O in a forked worker process."""

    async def main():
        data = await ringlet.read_file(path)
        return len(data), type(ringlet.get_engine()).__name__, os.getpid()

    return asyncio_run(main())


@pytest.mark.timeout(60)
def test_multiprocessing_fork_pool(ringlet, run, make_file):
    paths = [make_file(1000 * (i + 1))[0] for i in range(6)]

    async def parent():
        await ringlet.read_file(paths[0])  # the parent has an engine (and maybe workers) when it forks
        return type(ringlet.get_engine()).__name__

    backend = run(parent())
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map(_read_in_child, paths, chunksize=1)
    assert [n for n, _, _ in results] == [1000 * (i + 1) for i in range(6)]
    assert {kind for _, kind, _ in results} == {backend}
    assert os.getpid() not in {pid for _, _, pid in results}
    assert run(parent()) == backend  # the parent goes on


def _process_target(path, queue):
    try:
        queue.put(("ok",) + _read_in_child(path))
    except BaseException as exc:  # noqa: BLE001
        queue.put(("error", repr(exc)))


@pytest.mark.timeout(60)
def test_multiprocessing_fork_process_started_inside_a_loop(ringlet, run, make_file):
    path, data = make_file(4321)

    async def main():
        await ringlet.read_file(path)
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_process_target, args=(path, queue))
        proc.start()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, queue.get, True, 30)
        await loop.run_in_executor(None, proc.join, 30)
        return result, proc.exitcode, await ringlet.read_file(path)

    result, exitcode, again = run(main())
    assert result[:2] == ("ok", len(data)), result
    assert exitcode == 0
    assert again == data
