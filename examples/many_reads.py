#!/usr/bin/env python3
"""Thousands of concurrent 4 KiB reads on one file, and no thread pool.

    python examples/many_reads.py [--count N] [PATH]

Opens one file with ringlet.open and starts N (default 10,000) reads at
random 4 KiB-aligned offsets *all at once* with asyncio.gather.  Every result
is then checked against os.pread.  It prints the rate, the engine's counters,
and the number of threads before and after -- which stays the same, because
there is no thread pool: each read is a request on the io_uring ring, a
cell on the heap, and a future in Python, not a thread parked in pread().
For contrast it then does the same with asyncio.to_thread (a thread pool).

Without PATH, a 64 MiB file of random bytes is created in a temp dir.
Exits non-zero if any read returns the wrong bytes.
"""

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time

import ringlet

BLOCK = 4096
# the cumulative counters of engine.stats(); in_flight/peak_in_flight are levels
COUNTERS = ("submitted", "completed", "completed_inline", "deferred", "cancelled", "enter_calls")


async def ringlet_reads(path, offsets):
    threads_before = threading.active_count()
    async with ringlet.open(path, "rb") as f:
        eng = ringlet.get_engine()
        s0 = eng.stats()
        t = time.perf_counter()
        # N coroutines, each awaiting one pread.  gather wraps each in a
        # Task; every Task sends its read to the ring, and they complete in
        # whatever order the kernel finishes them.
        results = await asyncio.gather(*(f.pread(BLOCK, off) for off in offsets))
        elapsed = time.perf_counter() - t
        s1 = eng.stats()
    threads_after = threading.active_count()
    delta = {k: s1[k] - s0[k] for k in COUNTERS}
    delta["in_flight"] = s1["in_flight"]
    delta["peak_in_flight"] = s1["peak_in_flight"]
    return results, elapsed, delta, threads_before, threads_after


async def thread_reads(path, offsets):
    fd = os.open(path, os.O_RDONLY)
    try:
        t = time.perf_counter()
        results = await asyncio.gather(*(asyncio.to_thread(os.pread, fd, BLOCK, off)
                                         for off in offsets))
        return results, time.perf_counter() - t, threading.active_count()
    finally:
        os.close(fd)


def verify(path, offsets, results):
    bad = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for off, got in zip(offsets, results):
            if got != os.pread(fd, BLOCK, off):
                if bad < 5:
                    print(f"  MISMATCH at offset {off}: got {len(got)} bytes")
                bad += 1
    finally:
        os.close(fd)
    return bad + abs(len(offsets) - len(results))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", nargs="?", help="file to read (default: a temp 64 MiB file)")
    ap.add_argument("--count", type=int, default=10_000, help="number of reads (10,000)")
    a = ap.parse_args()

    tmp = None
    path = a.path
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="ringlet-reads-")
        path = os.path.join(tmp.name, "data.bin")
        with open(path, "wb") as f:
            for _ in range(16):
                f.write(os.urandom(4 << 20))
    size = os.path.getsize(path)
    if size < BLOCK:
        print(f"{path} is smaller than {BLOCK} bytes", file=sys.stderr)
        return 2
    rnd = random.Random(1)
    offsets = [rnd.randrange(size // BLOCK) * BLOCK for _ in range(a.count)]
    print(f"file: {path} ({size / (1 << 20):.1f} MiB); ringlet backend: {ringlet.backend()}")

    results, elapsed, stats, th_before, th_after = asyncio.run(ringlet_reads(path, offsets))
    bad = verify(path, offsets, results)
    print(f"ringlet: {a.count:,} concurrent preads in {elapsed * 1e3:.1f} ms "
          f"= {a.count / elapsed:,.0f} ops/s; {a.count - bad:,}/{a.count:,} verified")
    print(f"  engine.stats() for these reads: {stats}")
    print(f"  threading.active_count(): {th_before} before, {th_after} after")

    t_results, t_elapsed, t_threads = asyncio.run(thread_reads(path, offsets))
    t_bad = verify(path, offsets, t_results)
    print(f"asyncio.to_thread, for contrast: {a.count / t_elapsed:,.0f} ops/s, "
          f"{t_threads} threads while it ran; {a.count - t_bad:,}/{a.count:,} verified")

    if tmp is not None:
        tmp.cleanup()
    if bad:
        print(f"FAILED: {bad} of {a.count} ringlet reads returned wrong data", file=sys.stderr)
        return 1
    if th_after != th_before and ringlet.backend().startswith("io_uring"):
        print(f"FAILED: thread count changed ({th_before} -> {th_after}); "
              "ringlet should not start threads", file=sys.stderr)
        return 1
    print("OK: every read matches os.pread"
          + (", and no thread was started" if th_after == th_before else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
