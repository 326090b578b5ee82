"""uvloop: `make test` runs the whole suite once more with
RINGLET_TEST_LOOP=uvloop (every loop the tests make is a uvloop loop).  The
tests here run ringlet on uvloop in every pass: on the test's backend, and
on a thread fallback built by hand."""

import asyncio
import gc
import os
import subprocess
import sys

import pytest

from conftest import TEST_LOOP, child_env, fd_count, thread_engine, wait_until, write_fifo

uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (make installs it with the test tools)")


def uv_run(coro):
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_the_uvloop_pass_runs_on_uvloop(run):
    if TEST_LOOP != "uvloop":
        pytest.skip("only in the RINGLET_TEST_LOOP=uvloop pass")

    async def main():
        return type(asyncio.get_running_loop()).__module__

    assert run(main()).startswith("uvloop")
    loop = asyncio.new_event_loop()  # the policy: plain asyncio calls make uvloop loops too
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_ringlet_on_uvloop(ringlet, fifo, make_file, tmp_path):
    path, data = make_file(3 * 1024 * 1024 + 7)
    out = str(tmp_path / "copy.bin")

    async def main():
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        engine = ringlet.get_engine()
        assert await ringlet.read_file(path) == data
        assert await ringlet.copy_file(path, out) == len(data)
        async with ringlet.open(path, "rb") as f:
            parts = await asyncio.gather(*(f.pread(4096, i * 4096) for i in range(100)))
        assert parts == [data[i * 4096:(i + 1) * 4096] for i in range(100)]
        async with ringlet.open(fifo, "r+b") as f:
            cancelled = [asyncio.ensure_future(f.read(10)) for _ in range(10)]
            await asyncio.sleep(0.01)
            for t in cancelled:
                t.cancel()
            await asyncio.gather(*cancelled, return_exceptions=True)
            reading = asyncio.ensure_future(f.read(5))
            await asyncio.sleep(0.01)
            write_fifo(fifo, b"hello")
            got = await asyncio.wait_for(reading, 5)
        settled = await wait_until(lambda: engine.stats()["in_flight"] == 0)
        return got, settled, engine

    got, settled, engine = uv_run(main())
    assert got == b"hello" and settled
    gc.collect()
    assert engine.closed  # uvloop's close() dropped the reader: the engine was shut down
    with open(out, "rb") as f:
        assert f.read() == data


@pytest.mark.own_backend
def test_thread_engine_on_uvloop(fifo, tmp_path):
    (tmp_path / "f").write_bytes(b"0123456789")

    async def main():
        async with thread_engine(max_workers=2) as e:
            fd = await e.open(os.fsencode(tmp_path / "f"), os.O_RDONLY)
            first = await e.read(fd, 4, 3)
            await e.close(fd)
            rfd = os.open(fifo, os.O_RDWR)
            try:
                pending = e.read(rfd, 3)
                cancelled = e.read(rfd, 3)
                await asyncio.sleep(0.01)
                cancelled.cancel()
                os.write(rfd, b"abc")
                second = await asyncio.wait_for(pending, 5)
            finally:
                os.close(rfd)
            settled = await wait_until(lambda: e.stats()["in_flight"] == 0)
            return first, second, settled

    assert uv_run(main()) == (b"3456", b"abc", True)


def test_uvloop_loops_in_a_row_leak_nothing(ringlet, fifo, make_file):
    path, data = make_file(5000)
    uv_run(ringlet.read_file(path))  # uvloop keeps a pipe of its own from its first loop on
    baseline = fd_count()
    rfd = os.open(fifo, os.O_RDWR)
    try:
        async def main():
            engine = ringlet.get_engine()
            assert await ringlet.read_file(path) == data
            engine.read(rfd, 1)  # in flight when the loop closes
            return engine

        engines = [uv_run(main()) for _ in range(50)]
        assert all(e.closed for e in engines)
    finally:
        os.close(rfd)
    gc.collect()
    assert fd_count() == baseline


SHUTDOWN_BY_HAND = """
import asyncio, os, sys, uvloop, ringlet
async def main():
    old = ringlet.get_engine()
    await ringlet.read_file(sys.argv[1])
    old.shutdown()                 # by hand: the loop goes on watching (a duplicate of) its fd
    await asyncio.sleep(0.05)
    new = ringlet.get_engine()
    r, w = os.pipe()
    pending = new.read(r, 5)
    await asyncio.sleep(0.01)
    os.write(w, b"fresh")
    print(await asyncio.wait_for(pending, 5), new is not old)
loop = uvloop.new_event_loop()
loop.run_until_complete(main())
loop.close()
"""


def test_engine_shutdown_by_hand_inside_a_running_uvloop(make_file):
    """uvloop (libuv) aborts the process if a watched fd is closed under it:
    the loop watches a duplicate the _Watch owns, never the engine's own fd."""
    path, _ = make_file(100)
    proc = subprocess.run([sys.executable, "-c", SHUTDOWN_BY_HAND, path], capture_output=True, text=True,
                          timeout=30, env=child_env())  # a hang: TimeoutExpired
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip() == "b'fresh' True"
