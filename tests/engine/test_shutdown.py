"""Shutdown: asyncio.run() ending with operations in flight, a loop closed
with operations in flight, the interpreter exiting with operations in
flight, and hundreds of loops in a row: no hang, no crash, no descriptor
leaked.  The engine is shut down when its loop drops the reader
(_engine._Watch.__del__): what is in flight is cancelled, futures are left
as they are, memory the kernel may still write is kept."""

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import LOOP_FACTORY, asyncio_run, child_env, fd_count, wait_until
from test_buffers_in_flight import resizable


def new_loop():
    return LOOP_FACTORY() if LOOP_FACTORY is not None else asyncio.new_event_loop()


def ringlet_threads():
    return [t for t in threading.enumerate() if t.name.startswith("ringlet-worker")]


async def _start_everything(ringlet, fifo, reading_tasks=True):
    """Operations that stay in flight: raw engine futures (asyncio.run does
    not cancel those), tasks (it does), a readinto holding a buffer, a FIFO
    open for writing with no reader, and (reading_tasks) tasks whose open is
    done and whose read waits on a FIFO; the descriptors to close after the
    loop (the raw reads' and a writer's).  Returned once all of that is in
    flight, counted, not after a guessed sleep: on a loaded machine reads
    of a regular file would still be running or already done, by chance."""
    engine = ringlet.get_engine()
    rfd = os.open(fifo, os.O_RDWR)
    fds = [rfd]
    buf = bytearray(16)
    futures = [engine.read(rfd, 10) for _ in range(10)]
    futures.append(engine.readinto(rfd, buf))
    tasks = []
    if reading_tasks:
        held = fifo + "-held"  # a writer holds it open: the opens succeed, the reads wait
        if not os.path.exists(held):
            os.mkfifo(held)
        fds.append(os.open(held, os.O_RDWR))
        opened = []

        async def read_held():
            async with ringlet.open(held, "rb") as f:
                opened.append(f)
                return await f.read(10)

        tasks += [asyncio.ensure_future(read_held()) for _ in range(5)]
        assert await wait_until(lambda: len(opened) == 5, timeout=20)
        del opened
    lonely = fifo + "-no-reader"
    if not os.path.exists(lonely):
        os.mkfifo(lonely)
    tasks.append(asyncio.ensure_future(ringlet.open(lonely, "wb")))
    await asyncio.sleep(0.02)
    assert not any(f.done() for f in futures)
    assert not any(t.done() for t in tasks)
    return engine, fds, buf, futures, tasks


def test_asyncio_run_ends_with_operations_in_flight(ringlet, fifo, make_file):
    path, data = make_file(1 << 20)
    asyncio_run(ringlet.read_file(path))  # warm-up: whatever stays for good is open now
    gc.collect()
    baseline = fd_count()
    kept = {}

    async def main():
        engine, fds, buf, futures, _ = await _start_everything(ringlet, fifo)
        kept.update(engine=engine, fds=fds, buf=buf, futures=futures)
        return "returned"

    assert asyncio_run(main()) == "returned"  # a hang would hit the test's timeout
    engine = kept["engine"]
    assert engine.closed
    assert not any(f.done() for f in kept["futures"])  # left as they were, never resolved
    for fd in kept["fds"]:
        os.close(fd)
    gc.collect()
    assert resizable(kept["buf"]), "the readinto buffer is still held after the loop closed"
    assert fd_count() == baseline, "descriptors leaked"
    assert asyncio_run(ringlet.read_file(path)) == data


def _close_loop_with_everything_in_flight(ringlet, fifo, reading_tasks):
    """loop.close() (not asyncio.run: nothing is cancelled first) with
    _start_everything in flight; the engine, the descriptors to close and
    the readinto buffer."""
    loop = new_loop()
    try:
        engine, fds, buf, futures, tasks = loop.run_until_complete(_start_everything(ringlet, fifo, reading_tasks))
    finally:
        loop.close()  # a hang would hit the test's timeout
    del loop, tasks
    gc.collect()
    return engine, fds, buf


def test_loop_closed_with_operations_in_flight(ringlet, fifo, make_file):
    path, data = make_file(1 << 20)
    asyncio_run(ringlet.read_file(path))
    gc.collect()
    baseline = fd_count()
    engine, fds, buf = _close_loop_with_everything_in_flight(ringlet, fifo, reading_tasks=False)
    assert engine.closed
    for fd in fds:
        os.close(fd)
    gc.collect()
    assert resizable(buf)
    assert fd_count() == baseline, "descriptors leaked"
    with pytest.raises(RuntimeError, match="closed"):
        engine.read(0, 1)
    assert engine.shutdown() == 0  # again: nothing to do


def test_loop_closed_with_tasks_past_their_open(ringlet, fifo, make_file):
    path, data = make_file(100)
    asyncio_run(ringlet.read_file(path))
    gc.collect()
    baseline = fd_count()
    engine, fds, buf = _close_loop_with_everything_in_flight(ringlet, fifo, reading_tasks=True)
    for fd in fds:
        os.close(fd)
    gc.collect()
    assert fd_count() == baseline, "descriptors leaked"


def test_explicit_shutdown_then_a_new_engine(ringlet, run, fifo, make_file):
    """engine.shutdown(timeout) by hand with reads pending: it returns within
    the timeout, the loop goes on, and get_engine() makes a new engine."""
    path, data = make_file(3000)

    async def main():
        engine = ringlet.get_engine()
        rfd = os.open(fifo, os.O_RDWR)
        try:
            futures = [engine.read(rfd, 1) for _ in range(50)]
            await asyncio.sleep(0.01)
            left = engine.shutdown(0.5)
            await asyncio.sleep(0.05)  # the loop goes on (and its old reader goes away)
            new = ringlet.get_engine()
            pending = new.read(rfd, 1)
            await asyncio.sleep(0.01)
            os.write(rfd, b"x")  # a deferred completion: the loop must watch the new engine
            one = await asyncio.wait_for(pending, 5)
            return left, [f.done() for f in futures], new is not engine, one, await ringlet.read_file(path)
        finally:
            os.close(rfd)

    left, done, fresh, one, again = run(main())
    assert left == 0  # nothing left waiting: returned before its timeout ran out
    assert not any(done)
    assert fresh and one == b"x" and again == data


@pytest.mark.timeout(120)
def test_200_loops_in_a_row_leak_no_descriptors(ringlet, fifo, make_file):
    path, data = make_file(10_000)
    asyncio_run(ringlet.read_file(path))
    baseline, threads = fd_count(), len(ringlet_threads())
    rfd = os.open(fifo, os.O_RDWR)
    try:
        async def main(i):
            engine = ringlet.get_engine()
            assert await ringlet.read_file(path) == data
            async with ringlet.open(path, "rb") as f:
                assert await f.pread(10, i) == data[i:i + 10]
            engine.read(rfd, 1)  # left in flight when the loop closes
            return engine

        engines = []
        for i in range(100):
            engines.append(asyncio_run(main(i)))
        for i in range(100):  # and loops closed by hand, with the read still in flight
            loop = new_loop()
            engines.append(loop.run_until_complete(main(i)))
            loop.close()
        assert len(set(map(id, engines))) == 200 and all(e.closed for e in engines)
        del engines
    finally:
        os.close(rfd)
    gc.collect()
    assert fd_count() == baseline, f"{fd_count() - baseline} descriptors leaked over 200 loops"
    # The thread fallback's workers go with their engines.
    assert wait_until_sync(lambda: len(ringlet_threads()) <= threads, 20), ringlet_threads()


def wait_until_sync(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


EXIT_SCRIPTS = {
    # The loop is never closed: the interpreter exits with everything in flight.
    "loop-never-closed": """
loop = asyncio.new_event_loop()
kept = loop.run_until_complete(start())
print("OK")
""",
    # asyncio.run() unwinds through SystemExit raised inside the coroutine.
    "sys-exit-inside-the-loop": """
async def main():
    kept = await start()
    print("OK", flush=True)
    sys.exit(0)
asyncio.run(main())
""",
    # A daemon thread's loop is still running when the main thread leaves.
    "loop-running-in-a-daemon-thread": """
import threading
ready = threading.Event()
def serve():
    loop = asyncio.new_event_loop()
    loop.run_until_complete(start())
    ready.set()
    loop.run_forever()
threading.Thread(target=serve, daemon=True).start()
assert ready.wait(10)
print("OK")
""",
    # Thousands in flight, then a KeyboardInterrupt out of asyncio.run.
    "keyboard-interrupt": """
async def main():
    kept = await start(1000)
    print("OK", flush=True)
    raise KeyboardInterrupt
try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
""",
}

EXIT_PRELUDE = """
import asyncio, os, sys
import ringlet
fifo = sys.argv[1]
path = sys.argv[2]

async def start(n=20):
    engine = ringlet.get_engine()
    rfd = os.open(fifo, os.O_RDWR)
    futures = [engine.read(rfd, 1) for _ in range(n)]
    futures += [engine.readinto(rfd, bytearray(8)) for _ in range(n)]
    tasks = [asyncio.ensure_future(ringlet.read_file(path)) for _ in range(10)]
    tasks.append(asyncio.ensure_future(ringlet.open(fifo + "-lonely", "wb")))
    await asyncio.sleep(0.02)
    return engine, rfd, futures, tasks
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scenario", sorted(EXIT_SCRIPTS))
def test_interpreter_exit_with_operations_in_flight(scenario, fifo, make_file):
    path, _ = make_file(1 << 20)
    os.mkfifo(fifo + "-lonely")
    env = child_env(PYTHONFAULTHANDLER="1")
    proc = subprocess.run([sys.executable, "-c", EXIT_PRELUDE + EXIT_SCRIPTS[scenario], fifo, path],
                          capture_output=True, text=True, timeout=30, env=env)  # a hang: TimeoutExpired
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "OK" in proc.stdout
    for bad in ("Fatal Python error", "Traceback", "Segmentation", "Aborted"):
        assert bad not in proc.stderr, proc.stderr[-3000:]


def test_loop_close_shuts_the_engine_down(ringlet):
    """_Watch.__del__ runs when the loop drops its reader: the engine is shut down."""
    loop = new_loop()
    engine = loop.run_until_complete(_get_engine(ringlet))
    assert not engine.closed
    loop.close()
    gc.collect()
    assert engine.closed


async def _get_engine(ringlet):
    return ringlet.get_engine()


def test_pool_stop_waits_a_bounded_time():
    """The thread fallback's shutdown waits for a running call at most timeout
    seconds, then leaves it (its outcome is dropped when it ends)."""
    from ringlet._threads import WorkerPool

    release = threading.Event()
    ran = []

    class Job:
        key = None

        def __init__(self, name):
            self.name = name

        def run(self):
            ran.append(self.name)
            if self.name == "slow":
                release.wait(10)

    pool = WorkerPool(1)
    pool.submit(Job("slow"))
    assert wait_until_sync(lambda: pool.busy == 1, 20)
    pool.submit(Job("queued"))
    t0 = time.monotonic()
    dropped, running = pool.stop(0.2)
    elapsed = time.monotonic() - t0
    assert [job.name for job in dropped] == ["queued"] and running == 1
    assert elapsed > 0.15  # waited its timeout for the slow job, and returned with it still running
    release.set()
    assert wait_until_sync(lambda: pool.size == 0, 20)
    assert ran == ["slow"]
    with pytest.raises(RuntimeError):
        pool.submit(Job("late"))
