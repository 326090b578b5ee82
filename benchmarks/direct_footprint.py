"""Does the number of buffers a device writes into set the pace of O_DIRECT reads?

The synchronous loop reads SIZE-byte O_DIRECT blocks at random offsets of a
fresh 128 MiB file, one read in flight, into 1, 4, 16 or 64 page-aligned
buffers in rotation; the counts take turns over ROUNDS rounds (medians).  On
this project's virtual disk the 1 MiB figures fall 15-20% from 1-4 buffers to
16-64 (benchmarks/results/direct_footprint.md): what the cliff's disk rows at
1 MiB and 16-256 tasks measured, not the queue depth.  Hold the bench lock:

    flock /tmp/bench.lock .venv/bin/python benchmarks/direct_footprint.py [DIR]
"""

import mmap
import os
import sys
import tempfile
import time

from ringlet._measure import core

SIZE = int(os.environ.get("SIZE", str(1 << 20)))
SECONDS = 0.7
COUNTS = (1, 4, 16, 64)
ROUNDS = int(os.environ.get("ROUNDS", "6"))


def run(fd: int, offs: list, nbuf: int) -> float:
    """MiB/s of one synchronous loop rotating nbuf buffers (touched first, as reused ones are)."""
    bufs = [mmap.mmap(-1, SIZE) for _ in range(nbuf)]
    for b in bufs:
        b.write(b"x" * SIZE)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < SECONDS:
        os.preadv(fd, [bufs[n % nbuf]], offs[n % len(offs)])
        n += 1
    return n * SIZE / (1 << 20) / (time.perf_counter() - t0)


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
    fd_tmp, path = tempfile.mkstemp(prefix="ringlet-footprint-", dir=directory)
    os.close(fd_tmp)
    try:
        core.write_random(path, 128 << 20)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        offs = core.offsets(128 << 20, SIZE, seed=5, count=8192)
        got = {n: [] for n in COUNTS}
        for r in range(ROUNDS):
            for n in COUNTS[r % len(COUNTS):] + COUNTS[:r % len(COUNTS)]:
                got[n].append(run(fd, offs, n))
        os.close(fd)
    finally:
        os.unlink(path)
    for n in COUNTS:
        vals = sorted(got[n])
        print(f"{SIZE >> 10} KiB, {n:2d} buffers: " + " ".join(f"{v:5.0f}" for v in got[n])
              + f"  median {vals[len(vals) // 2]:.0f} MiB/s")


if __name__ == "__main__":
    main()
