"""Measuring file I/O fairly: one place for what every measurement shares.

The harness rules, kept here so that both the cliff command and
benchmarks/ follow them:

- The page cache is re-warmed right before every contender's round
  (``warm``): this project's VM pages out memory left idle for about a
  minute, so a file cached when a run started may be gone a few rounds later.
- Every contender gets the same set-up: the same offsets (``offsets``), the
  same warm-up, the same engine and loop made before the clock starts, the
  same preparation before a copy (``prepare_copy``).
- A copy is measured from a warm source and from a freshly written one
  (``fresh=True``: the source is rewritten and synced right before), the
  common pipeline case where the two can differ.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import mmap
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Awaitable, Callable, List, Optional, Sequence, Tuple

KiB = 1 << 10
MiB = 1 << 20
BLOCK = 4096
N_OFFSETS = 1 << 16  # distinct random offsets each contender cycles through (a power of two)
SEED = 20261126
_CHUNK = 4 * MiB

Reader = Callable[[Any], Awaitable[Any]]
Cleanup = Callable[[], Awaitable[None]]


# ---- files ------------------------------------------------------------------------------

def offsets(file_size: int, size: int = BLOCK, seed: int = SEED, count: int = N_OFFSETS) -> List[int]:
    """count random offsets aligned to size within file_size, the same for
    every contender given the same seed."""
    rnd = random.Random(seed)
    nblocks = max(1, file_size // size)
    return [rnd.randrange(nblocks) * size for _ in range(count)]


def warm(path: str, limit: Optional[int] = None) -> None:
    """Read the file (its first limit bytes) into the page cache, right
    before a measurement."""
    buf = bytearray(_CHUNK)
    fd = os.open(path, os.O_RDONLY)
    try:
        off = 0
        while limit is None or off < limit:
            n = os.preadv(fd, [buf], off)
            if n <= 0:
                break
            off += n
    finally:
        os.close(fd)


def drop(path: str) -> None:
    """Write back and drop the file's pages from the page cache, so that its
    reads go to the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are not dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of values, nan for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def write_random(path: str, size: int) -> float:
    """Write size random bytes to path (created or truncated), fsynced so that
    later reads and O_DIRECT do not wait on writeback.  Returns the seconds taken."""
    t = time.perf_counter()
    chunk = bytearray(os.urandom(min(_CHUNK, max(size, 1))))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off in range(0, size, len(chunk)):
            chunk[:8] = off.to_bytes(8, "little")[:len(chunk)]  # each chunk its own: a misplaced one shows
            os.pwrite(fd, chunk[:min(len(chunk), size - off)], off)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t


def make_file(path: str, size: int) -> float:
    """write_random(path, size), then read once into the page cache.  Seconds taken."""
    t = time.perf_counter()
    write_random(path, size)
    warm(path)
    return time.perf_counter() - t


def direct_refusal(path: str) -> Optional[str]:
    """None if O_DIRECT reads work on path, else the reason."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    except OSError as e:
        return f"O_DIRECT not available on {path}: {e.strerror}"
    try:
        buf = mmap.mmap(-1, BLOCK)
        if os.preadv(fd, [buf], 0) != BLOCK:
            return f"O_DIRECT read of {path} came back short"
    except OSError as e:
        return f"O_DIRECT not available on {path}: {e.strerror}"
    finally:
        os.close(fd)
    return None


# ---- timings ----------------------------------------------------------------------------

@dataclass
class Timing:
    """One timed run: ops done, each one's latency (ns; empty when not
    recorded), and the wall and process CPU time it took (ns)."""

    ops: int = 0
    latencies: List[int] = field(default_factory=list, repr=False)
    elapsed_ns: int = 0
    cpu_ns: int = 0

    @property
    def ops_per_s(self) -> float:
        return self.ops / (self.elapsed_ns / 1e9) if self.elapsed_ns else 0.0


def sync_reader(fd: int, size: int, direct: bool = False,
                buffer: Optional[mmap.mmap] = None) -> Callable[[int], Any]:
    """read(offset) for a synchronous loop: os.pread, or (direct) os.preadv
    into buffer (page-aligned; a new one by default), as C partials (no
    Python frame per read)."""
    if direct:
        return partial(os.preadv, fd, [buffer if buffer is not None else mmap.mmap(-1, size)])
    return partial(os.pread, fd, size)


def sync_loop(read: Callable[[int], Any], items: Sequence[int], seconds: float, record: bool = True) -> Timing:
    """One thread, one read after another, until seconds have passed."""
    now = time.perf_counter_ns
    lat: List[int] = []
    mask = len(items) - 1
    i = 0
    cpu0 = time.process_time_ns()
    t_start = now()
    deadline = t_start + int(seconds * 1e9)
    while True:
        t0 = now()
        if t0 >= deadline:
            break
        read(items[i & mask])
        if record:
            lat.append(now() - t0)
        i += 1
    return Timing(i, lat, now() - t_start, time.process_time_ns() - cpu0)


async def _task(read: Reader, items: Sequence[Any], j: int, count: int, deadline: int,
                lat: Optional[List[int]], done: List[int]) -> None:
    """count awaits (or until deadline), each one's latency appended to lat."""
    now = time.perf_counter_ns
    mask = len(items) - 1
    n = 0
    for _ in range(count):
        t0 = now()
        if t0 >= deadline:
            break
        await read(items[j & mask])
        if lat is not None:
            lat.append(now() - t0)
        j += 1
        n += 1
    done.append(n)


async def task_loops(readers: Sequence[Reader], items: Sequence[Any], seconds: float, warmup: float,
                     record: bool = True) -> Timing:
    """len(readers) tasks, each awaiting its reader in a loop over items.

    A time-bounded warm-up (thread pools, caches) measures the rate; the timed
    run then gives each task a FIXED number of awaits sized to last about
    seconds.  (Not "until a deadline": when reads complete inline, awaiting a
    done future never yields, so with a deadline the first task would do every
    read and the others none.)  A safety deadline of 5x stops a mis-sized run."""
    ntasks = len(readers)
    stride = len(items) // ntasks or 1
    now = time.perf_counter_ns
    done: List[int] = []
    t_w = now()
    await asyncio.gather(*[_task(readers[i], items, i * stride + 7, 1 << 62, t_w + int(warmup * 1e9), None, done)
                           for i in range(ntasks)])
    rate = sum(done) / max((now() - t_w) / 1e9, 1e-9)
    per_task = max(1, int(rate * seconds / ntasks))
    lat: Optional[List[int]] = [] if record else None
    done = []
    cpu0 = time.process_time_ns()
    t_start = now()
    deadline = t_start + int((5 * seconds + 1) * 1e9)
    await asyncio.gather(*[_task(readers[i], items, i * stride, per_task, deadline, lat, done)
                           for i in range(ntasks)])
    return Timing(sum(done), lat or [], now() - t_start, time.process_time_ns() - cpu0)


# ---- the async contenders: ringlet and a thread pool ------------------------------------

async def readers_for(key: str, path: str, fd: int, ntasks: int, size: int,
                      pool: Optional[concurrent.futures.Executor] = None,
                      direct_fd: Optional[int] = None) -> Tuple[List[Reader], Cleanup]:
    """One reader per task for key, and the coroutine that cleans up.

    ringlet          f.pread(size, offset) on ringlet.open(path, "rb")
    ringlet_direct   the same on ringlet.open(path, "rb", direct=True)
    ringlet_direct_into  f.preadinto(buffer, offset) on ringlet.open(path, "rb",
                     direct=True), each task with its own page-aligned buffer
    ringlet_many     f.pread_many(batch): an item is a list of (size, offset)
    ringlet_engine   engine.read(fd, size, offset), the low level
    threads          loop.run_in_executor(pool, os.pread, fd, size, offset)
    threads_direct   os.preadv(direct_fd, [buffer], offset) in the pool,
                     each task with its own page-aligned buffer
    """
    import ringlet

    closers: List[Callable[[], Awaitable[Any]]] = []
    readers: List[Reader]
    if key in ("ringlet", "ringlet_direct", "ringlet_many"):
        f = await ringlet.open(path, "rb", direct=(key == "ringlet_direct"))
        assert isinstance(f, ringlet.AsyncFile)  # a binary mode
        closers.append(f.close)
        readers = [f.pread_many if key == "ringlet_many" else partial(f.pread, size)] * ntasks
    elif key == "ringlet_engine":
        readers = [partial(ringlet.get_engine().read, fd, size)] * ntasks
    elif key == "ringlet_direct_into":
        f = await ringlet.open(path, "rb", direct=True)
        assert isinstance(f, ringlet.AsyncFile)  # a binary mode
        closers.append(f.close)
        readers = [partial(f.preadinto, mmap.mmap(-1, size)) for _ in range(ntasks)]
    elif key == "threads":
        run = asyncio.get_running_loop().run_in_executor
        readers = [partial(run, pool, os.pread, fd, size)] * ntasks  # type: ignore[arg-type]
    elif key == "threads_direct":
        if direct_fd is None:
            raise ValueError("threads_direct needs direct_fd")
        run = asyncio.get_running_loop().run_in_executor
        readers = [partial(run, pool, os.preadv, direct_fd, [mmap.mmap(-1, size)])  # type: ignore[arg-type]
                   for _ in range(ntasks)]
    else:
        raise ValueError(f"unknown contender {key!r}")

    async def cleanup() -> None:
        for close in closers:
            await close()
    return readers, cleanup


# ---- one timed copy ---------------------------------------------------------------------

def prepare_copy(src: str, dst: str, fresh: bool) -> None:
    """The same set-up for every copier: no destination; the source either
    warm in the page cache or (fresh) rewritten and synced right now."""
    if os.path.exists(dst):
        os.unlink(dst)
    if fresh:
        write_random(src, os.path.getsize(src))
    else:
        warm(src)


async def copy_once(key: str, src: str, dst: str, fresh: bool = False,
                    copier: Optional[Callable[[str, str], Awaitable[Any]]] = None) -> int:
    """Time one copy of src to dst (ns), after prepare_copy.  key is "ringlet"
    (copy_file), "shutil" (copyfile, run on the loop's thread as a sync
    program would) or any other name with its copier coroutine function.
    The loop and ringlet's engine exist before the clock starts, for all."""
    import ringlet

    ringlet.get_engine()
    if key == "ringlet":
        copier = ringlet.copy_file
    elif key != "shutil" and copier is None:
        raise ValueError(f"unknown copier {key!r}")
    prepare_copy(src, dst, fresh)
    t0 = time.perf_counter_ns()
    if key == "shutil":
        shutil.copyfile(src, dst)
    else:
        assert copier is not None
        await copier(src, dst)
    return time.perf_counter_ns() - t0
