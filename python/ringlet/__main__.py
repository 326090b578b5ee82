"""python -m ringlet demo|info|cliff

demo  reads and copies a file the synchronous way and the ringlet way, side by
      side, then follows single operations through the engine: submitted,
      completed inline or pending, completed, resumed.
info  what this kernel offers and which backend ringlet uses.
cliff synchronous reads vs ringlet vs a thread pool on this machine and path:
      which side of the async cliff each workload lives on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import threading
import time
from typing import Any, Callable, Optional

import ringlet

from ._contract import Engine
from ._view import EngineView

def info() -> None:
    print(f"python:      {platform.python_implementation()} {platform.python_version()}")
    print(EngineView())


def _sync_job(src: str, dst: str) -> bytes:
    # The essay's "same job, in sync": the thread waits at each line.
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data)
    return data


async def _ringlet_job(src: str, dst: str) -> bytes:
    data = await ringlet.read_file(src)
    await ringlet.write_file(dst, data)
    return data


class _Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter_ns()

    def __call__(self) -> str:
        return f"{(time.perf_counter_ns() - self.t0) / 1000:9.1f} µs"


async def _follow(label: str, submit: Callable[[Engine], "asyncio.Future[Any]"],
                  before_await: Optional[Callable[[], object]] = None) -> None:
    """Follow one operation through the engine and print what happened."""
    engine = ringlet.get_engine()
    thread = threading.current_thread().name
    print(f"\n  {label}")
    # Let the loop turn first: a task that has lived on inline completions
    # for a millisecond is made to yield once (so that others run), and this
    # demo wants to show the read as it comes, not that yield.
    await asyncio.sleep(0)
    clock = _Stopwatch()
    before = engine.stats()
    future = submit(engine)  # a non-blocking attempt, or fills an SQE, attaches the cell, io_uring_enter
    after = engine.stats()
    print(f"  {clock()}  submitted      on thread {thread!r}: {after['enter_calls'] - before['enter_calls']} "
          f"io_uring_enter call, the call returned")
    if after["completed_nowait"] > before["completed_nowait"]:
        print(f"  {clock()}  completed at once: the page cache had the bytes (preadv2 RWF_NOWAIT), "
              "no ring needed; the future is already filled")
    elif future.done():
        print(f"  {clock()}  completed inline: the kernel finished inside io_uring_enter; "
              "the future is already filled")
    else:
        print(f"  {clock()}  pending:       the future is an empty placeholder; the cell on the heap "
              "holds the buffer; no thread waits")
    completed_at = []
    future.add_done_callback(lambda _: completed_at.append((clock(), threading.current_thread().name)))
    if before_await:
        before_await()
    result = await future
    if completed_at:
        stamp, who = completed_at[0]
        print(f"  {stamp}  completed:     the completion was reaped in C and the future resolved "
              f"(callback on thread {who!r})")
    print(f"  {clock()}  resumed:       the coroutine continues with {len(result)} bytes "
          f"({result[:16]!r}{'...' if len(result) > 16 else ''})")


async def _demo(path: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="ringlet-demo-") as tmp:
        if path is None:
            path = os.path.join(tmp, "source.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(8 * 1024 * 1024))
        size = os.path.getsize(path)
        print(f"ringlet demo: {ringlet.backend()}")
        print(f"\n1. Read {path} ({size:,} bytes) and write a copy, side by side:")
        threads_before = threading.active_count()

        t0 = time.perf_counter()
        sync_data = _sync_job(path, os.path.join(tmp, "sync-copy.bin"))
        t_sync = time.perf_counter() - t0

        t0 = time.perf_counter()
        ring_data = await _ringlet_job(path, os.path.join(tmp, "ringlet-copy.bin"))
        t_ring = time.perf_counter() - t0

        t0 = time.perf_counter()
        copied = await ringlet.copy_file(path, os.path.join(tmp, "ringlet-copy2.bin"))
        t_copy = time.perf_counter() - t0

        with open(os.path.join(tmp, "ringlet-copy2.bin"), "rb") as f:
            same = sync_data == ring_data and f.read() == sync_data and copied == size
        print(f"   synchronous  open/read + open/write:     {t_sync * 1000:7.2f} ms  (the thread waited)")
        print(f"   ringlet      read_file + write_file:     {t_ring * 1000:7.2f} ms  (the loop was free)")
        print(f"   ringlet      copy_file (C state machine): {t_copy * 1000:7.2f} ms")
        print(f"   copies identical: {same}; threads before/after: {threads_before}/{threading.active_count()}")
        if not same:
            raise SystemExit("demo: the copies differ")

        print("\n2. One operation, followed through the engine:")
        fd = os.open(path, os.O_RDONLY)
        try:
            await _follow("a 4 KiB read of a cached file:", lambda e: e.read(fd, 4096, 0))
        finally:
            os.close(fd)

        fifo = os.path.join(tmp, "fifo")
        os.mkfifo(fifo)
        async with ringlet.open(fifo, "r+b") as f:  # r+ so opening does not wait for a writer
            loop = asyncio.get_running_loop()
            await _follow(
                "a read of a FIFO whose writer comes 50 ms later:",
                lambda e: e.read(f.fileno(), 64, -1),
                before_await=lambda: loop.call_later(0.05, os.write, f.fileno(), b"hello from the writer"),
            )
        stats = ringlet.get_engine().stats()
        print("\n3. Engine counters: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                 for k, v in stats.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ringlet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the synchronous way and the ringlet way, side by side")
    demo.add_argument("path", nargs="?", help="a file to read (default: 8 MiB of random bytes)")
    sub.add_parser("info", help="kernel, io_uring features and the backend")
    cliff = sub.add_parser("cliff", help="sync vs ringlet vs a thread pool: which side of the async cliff")
    cliff.add_argument("path", nargs="?", help="a directory for the test file, or a file to read (default: temp dir)")
    cliff.add_argument("--quick", action="store_true", help="fewer points (well under a minute)")
    cliff.add_argument("--plot", metavar="FILE", help="write a PNG of the results (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.command == "info":
        info()
    elif args.command == "cliff":
        from ._measure.cliff import main_cliff
        main_cliff(args.path, quick=args.quick, plot_file=args.plot)
    else:
        asyncio.run(_demo(args.path))


if __name__ == "__main__":
    main()
