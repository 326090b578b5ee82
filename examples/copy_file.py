#!/usr/bin/env python3
"""Copy a file three ways and check that the copies match.

    python examples/copy_file.py [SRC]

Without SRC, an 8 MiB file of random bytes is created in a temp dir.

This is the job from the essay (shared/reference/how-async-works.txt, "The
same job, in sync"): read a file, write it elsewhere.  First the way everyone
knows -- one thread walks down two lines and waits on the disk at each.  Then
the ringlet way, where no thread waits: the same two lines with `await`.

Asynchrony is an orchestration of three parts.  In ringlet each one is real
and you can point at it:

  1. STATE ON THE HEAP -- the *cell*.  When ringlet hands a read to the
     kernel, everything the kernel will touch (the output buffer, the file
     reference, where the result goes) lives in a C struct on the heap, the
     cell.  Its address travels with the request (io_uring's user_data) and
     comes back with the answer, so nothing depends on any thread's stack.
     (Python's half of the state is the coroutine frame, also on the heap.)
  2. A PLACEHOLDER -- the *future*.  The call returns an asyncio.Future at
     once; `await` parks the coroutine on it.  When the completion arrives,
     C fills the cell and sets the future's result, and the loop resumes the
     coroutine.  (For page-cache hits the kernel often finishes *during*
     the submit call: the future is already done and await does not even
     suspend.)
  3. ONE NON-BLOCKING OS CALL -- *io_uring_enter*.  Requests are written to
     a ring shared with the kernel; a single io_uring_enter() submits the
     batch and returns without waiting for the disk.  Completions come back
     on the other ring; the event loop is woken through a file descriptor.

engine.stats() below counts each part: `submitted` (cells handed over),
`completed_inline` vs `deferred` (future done at once vs filled later) and
`enter_calls` (OS calls).  The thread count does not change: there is no
thread pool behind it.
"""

import asyncio
import hashlib
import os
import sys
import tempfile
import threading
import time

import ringlet

MiB = 1 << 20
# the cumulative counters of engine.stats(); in_flight/peak_in_flight are levels
COUNTERS = ("submitted", "completed", "completed_inline", "deferred", "cancelled", "enter_calls")


# ---------------------------------------------------------------- the sync way
def copy_sync(src, dst):
    # The thread waits here for the disk...
    with open(src, "rb") as f:
        data = f.read()
    # ...and here.  `data` lives on this thread's stack the whole time,
    # because the thread never leaves.  Two lines; no orchestration.
    with open(dst, "wb") as f:
        f.write(data)
    return len(data)


# ------------------------------------------------------------- the ringlet way
async def copy_ringlet(src, dst):
    # Same two lines.  Each `await` below: C fills a cell (1), returns a
    # future (2), and the request goes to the kernel with io_uring_enter (3).
    # While the kernel works, this thread is free to run other tasks.
    data = await ringlet.read_file(src)
    return await ringlet.write_file(dst, data)


async def copy_ringlet_c(src, dst):
    # One call, and the "read done -> now write" step runs in C: the cell
    # is a small state machine whose completion submits the next write.
    # Python sees a single future for the whole copy.
    return await ringlet.copy_file(src, dst)


# -------------------------------------------------------- a look at the parts
async def show_the_parts(src):
    eng = ringlet.get_engine()          # one engine (one ring) per event loop
    fd = os.open(src, os.O_RDONLY)
    try:
        before = eng.stats()
        fut = eng.read(fd, 4096, 0)     # (1) cell filled + (3) submitted...
        print(f"  engine.read(...) returned {type(fut).__name__}, "
              f"done={fut.done()}")     # (2) ...and we got the placeholder
        block = await fut               # resumes when the cell is completed
        after = eng.stats()
    finally:
        os.close(fd)
    delta = {k: after[k] - before[k] for k in
             ("submitted", "completed_inline", "deferred", "enter_calls")}
    print(f"  got {len(block)} bytes; stats delta: {delta}")
    return block


# ------------------------------------------------------------------- harness
def best_of(n, fn):
    """Run fn() n times, return (best seconds, last result)."""
    best, res = float("inf"), None
    for _ in range(n):
        t = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t)
    return best, res


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    tmp = tempfile.TemporaryDirectory(prefix="ringlet-copy-")
    if len(sys.argv) > 1:
        src = sys.argv[1]
    else:
        src = os.path.join(tmp.name, "src.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(8 * MiB))
    size = os.path.getsize(src)
    out = {name: os.path.join(tmp.name, name) for name in
           ("sync.bin", "ringlet.bin", "ringlet-copy_file.bin")}
    print(f"source: {src} ({size / MiB:.1f} MiB); ringlet backend: {ringlet.backend()}")

    threads_before = threading.active_count()
    t_sync, n_sync = best_of(3, lambda: copy_sync(src, out["sync.bin"]))

    async def ringlet_part():
        print("the three parts, on one 4 KiB read:")
        await show_the_parts(src)
        eng = ringlet.get_engine()
        s0 = eng.stats()
        timings = []
        for name, fn in (("ringlet.bin", copy_ringlet), ("ringlet-copy_file.bin", copy_ringlet_c)):
            best, n = float("inf"), None
            for _ in range(3):
                t = time.perf_counter()
                n = await fn(src, out[name])
                best = min(best, time.perf_counter() - t)
            timings.append((best, n))
        s1 = eng.stats()
        return timings, {k: s1[k] - s0[k] for k in COUNTERS}, \
            threading.active_count()

    timings, stats, threads_during = asyncio.run(ringlet_part())
    (t_rw, n_rw), (t_cp, n_cp) = timings

    print()
    print(f"{'way':<48}{'best of 3':>12}{'MiB/s':>10}  bytes")
    for label, t, n in (
        ("sync: open/read + open/write", t_sync, n_sync),
        ("ringlet: await read_file + await write_file", t_rw, n_rw),
        ("ringlet: await copy_file", t_cp, n_cp),
    ):
        print(f"{label:<48}{t * 1e3:>9.2f} ms{size / MiB / t:>10,.0f}  {n:,}")
    print(f"engine.stats() for the 6 ringlet copies: {stats}")
    print(f"threads: {threads_before} before, {threads_during} while ringlet ran")

    # Verify: every copy must be byte-identical to the source.
    want = digest(src)
    ok = True
    for name, path in out.items():
        same = os.path.getsize(path) == size and digest(path) == want
        ok &= same
        print(f"  {name:<24} {'matches source' if same else 'DIFFERS FROM SOURCE'}")
    for n in (n_sync, n_rw, n_cp):
        if n != size:
            print(f"  a copy reported {n} bytes, expected {size}")
            ok = False
    tmp.cleanup()
    if not ok:
        print("FAILED: a copy does not match its source", file=sys.stderr)
        return 1
    print("OK: all copies match the source")
    return 0


if __name__ == "__main__":
    sys.exit(main())
