"""The measuring side of benchmarks/run.py.

Each `measure_*` function runs ONE measurement in its own, fresh process
(`run.py --worker JSON`) and returns a dict that the worker prints as one
`RESULT {...}` line.  A measurement's main figure is `value` (ops/s, MB/s or
files/s: see run.py's sections); `status` is "ok" or says why there is no
figure ("not installed", "skipped", "WRONG DATA", "error").

`run_fio` is the exception: it runs fio itself as the child process.

What every measurement shares (files, warming, offsets, the sync and
ringlet/thread-pool read loops, one timed copy) is ringlet's measuring core,
`ringlet._measure.core`, imported from the installed ringlet: the same code
serves `python -m ringlet cliff`.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import time
from functools import partial
from typing import Any

from ringlet._measure import core as M
from ringlet._measure.core import BLOCK, N_OFFSETS, SEED, offsets, warm  # noqa: F401 - run.py uses them

BATCH = 64           # reads per pread_many await (S3)


class Skip(Exception):
    """The measurement cannot be done here (the reason is reported, not an error)."""


def _summary(lat: list[int], elapsed_ns: int, cpu_ns: int, batch: int = 1) -> dict:
    """lat: ns per await; with batch > 1 each await did `batch` operations."""
    n = len(lat)
    if n == 0:
        return {"status": "no ops completed"}
    lat.sort()
    ops = n * batch
    return {
        "status": "ok",
        "ops": ops,
        "elapsed_s": elapsed_ns / 1e9,
        "value": ops / (elapsed_ns / 1e9),
        "ops_per_s": ops / (elapsed_ns / 1e9),
        "p50_us": lat[n // 2] / 1e3,
        "p99_us": lat[min(n - 1, int(n * 0.99))] / 1e3,
        "max_us": lat[-1] / 1e3,
        "ns_per_op": elapsed_ns / ops,
        "cpu_ns_per_op": cpu_ns / ops,   # CPU time of the whole process (all its threads)
    }


# ==========================================================================
# Reads: S1-S4 and the sweeps.  Every contender reads the same offsets.
# ==========================================================================

async def _make_readers(key: str, path: str, fd: int, ntasks: int, size: int):
    """Return (readers, cleanup): one `await reader(item)` per task, where an
    item is an offset (a batch of (size, offset) for ringlet_many).

    ringlet's own contenders and the executor come from the measuring core;
    the peers are here.  Readers are functools.partial objects where possible
    so that the only Python-level overhead is the library's own call path.
    """
    loop = asyncio.get_running_loop()
    cleanups = []

    if key in ("ringlet", "ringlet_uvloop", "ringlet_direct", "ringlet_many", "ringlet_engine", "executor"):
        core_key = {"ringlet_uvloop": "ringlet", "executor": "threads"}.get(key, key)
        return await M.readers_for(core_key, path, fd, ntasks, size, pool=None)

    if key == "baseline":
        # The floor for any asyncio-future-based design: a future created and
        # resolved via call_soon, awaited.  No I/O at all.  (DESIGN.md.)
        data = os.pread(fd, size, 0)
        create, call_soon = loop.create_future, loop.call_soon

        def rd(off):
            fut = create()
            call_soon(fut.set_result, data)
            return fut
        readers = [rd] * ntasks

    elif key in ("caio", "caio_deferred", "caio_sqpoll"):
        from caio.linux_uring_asyncio import AsyncioContext
        ctx = AsyncioContext(max_requests=max(64, ntasks) * 2,
                             sqpoll=(key == "caio_sqpoll"),
                             deferred=(key == "caio_deferred"))
        if key == "caio_sqpoll" and not ctx.context.sqpoll:
            ctx.close()
            raise Skip("SQPOLL not negotiated by the kernel")

        async def _close_ctx():
            ctx.close()
        cleanups.append(_close_ctx)
        readers = [partial(ctx.read, size, fd)] * ntasks

    elif key == "aiofile":
        # aiofile (on caio, with caio's default context for this loop).
        from aiofile import AIOFile
        f = AIOFile(path, "rb")
        await f.open()
        cleanups.append(f.close)
        readers = [partial(f.read_bytes, size)] * ntasks

    elif key in ("aiofiles", "anyio"):
        # Neither has pread: each task gets its own handle and does seek +
        # read (two trips to the thread pool), as a user would.
        if key == "aiofiles":
            import aiofiles
            opener = partial(aiofiles.open, path, "rb")
        else:
            import anyio
            opener = partial(anyio.open_file, path, "rb")
        readers = []
        for _ in range(ntasks):
            f = await opener()
            cleanups.append(f.close if key == "aiofiles" else f.aclose)

            async def rd(off, f=f):
                await f.seek(off)
                return await f.read(size)
            readers.append(rd)

    elif key == "to_thread":
        readers = [partial(asyncio.to_thread, os.pread, fd, size)] * ntasks

    else:
        raise ValueError(f"unknown contender {key!r}")

    async def cleanup():
        for c in cleanups:
            r = c()
            if asyncio.iscoroutine(r) or isinstance(r, asyncio.Future):
                await r
    return readers, cleanup


def _expected(fd: int, item: Any) -> Any:
    if isinstance(item, list):
        return [os.pread(fd, n, off) for n, off in item]
    return None


async def _measure_async(key: str, path: str, ntasks: int, size: int, duration: float, warmup: float) -> dict:
    fd = os.open(path, os.O_RDONLY)
    try:
        offs = offsets(os.fstat(fd).st_size, size)
        batch = BATCH if key == "ringlet_many" else 1
        items: list = _batched(offs, size) if batch > 1 else offs
        readers, cleanup = await _make_readers(key, path, fd, ntasks, size)
        try:
            # Correctness first: the first results of up to 4 readers are checked.
            for i, rd in enumerate(readers[: 0 if key == "baseline" else 4]):
                got = await rd(items[i])
                if batch > 1:
                    ok = [bytes(x) for x in got] == _expected(fd, items[i])
                else:
                    ok = bytes(got) == os.pread(fd, size, items[i])
                if not ok:
                    return {"status": "WRONG DATA", "detail": f"read {i} differs from os.pread"}
            t = await M.task_loops(readers, items, duration, warmup)
        finally:
            await cleanup()
        extra: dict = {"per_task": t.ops // ntasks}
        if key.startswith("ringlet"):
            import ringlet
            try:
                extra["engine_stats"] = dict(ringlet.get_engine().stats())
            except Exception as e:  # noqa: BLE001 - reporting only
                extra["engine_stats"] = repr(e)
        return _summary(t.latencies, t.elapsed_ns, t.cpu_ns, batch) | extra
    finally:
        os.close(fd)


def _batched(offs: list, size: int) -> list:
    """S3's items: lists of BATCH (size, offset) pairs, the same for both sides."""
    return [[(size, offs[(k * BATCH + i) & (N_OFFSETS - 1)]) for i in range(BATCH)] for k in range(N_OFFSETS // BATCH)]


def _measure_sync(path: str, size: int, duration: float, warmup: float, direct: bool, batched: bool = False) -> dict:
    """A plain loop: os.pread, or (direct) os.preadv into an mmap-backed,
    page-aligned buffer on an O_DIRECT descriptor.  batched: a list of
    BATCH reads per step, timed per step as pread_many is (S3)."""
    fd = os.open(path, os.O_RDONLY)
    dfd = -1
    try:
        offs = offsets(os.fstat(fd).st_size, size)
        if direct:
            try:
                dfd = os.open(path, os.O_RDONLY | os.O_DIRECT)
                buf = mmap.mmap(-1, size)
                rd = M.sync_reader(dfd, size, direct=True, buffer=buf)
                n = rd(offs[0])
            except OSError as e:
                raise Skip(f"O_DIRECT refused on {path}: {e.strerror}") from None
            if n != size or buf[:size] != os.pread(fd, size, offs[0]):
                return {"status": "WRONG DATA", "detail": "O_DIRECT read differs from os.pread"}
        else:
            rd = M.sync_reader(fd, size)
        items: list = offs
        if batched:
            pread = os.pread

            def rd(batch: list) -> list:
                return [pread(fd, n, off) for n, off in batch]
            items = _batched(offs, size)
        M.sync_loop(rd, items, warmup, record=False)
        t = M.sync_loop(rd, items, duration)
        return _summary(t.latencies, t.elapsed_ns, t.cpu_ns, BATCH if batched else 1)
    finally:
        os.close(fd)
        if dfd >= 0:
            os.close(dfd)


def measure_reads(p: dict) -> dict:
    key, size = p["key"], p.get("size", BLOCK)
    if key not in ("sync_direct", "ringlet_direct"):
        warm(p["path"])
    if key in ("sync", "sync_direct", "sync_many"):
        return _measure_sync(p["path"], size, p["duration"], p["warmup"], key == "sync_direct", key == "sync_many")
    coro = _measure_async(key, p["path"], p["tasks"], size, p["duration"], p["warmup"])
    if key.endswith("_uvloop"):
        import uvloop
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()
    return asyncio.run(coro)  # a FRESH event loop per measurement


# ==========================================================================
# fio: the kernel's own ceiling for O_DIRECT reads (S4, direct sweep).
# ==========================================================================

def run_fio(path: str, iodepth: int, runtime: float, size: int, timeout: float) -> dict:
    fio = shutil.which("fio")
    if fio is None:
        return {"status": "not installed", "detail": "fio not installed"}
    cmd = [fio, "--name=x", f"--filename={path}", "--rw=randread", f"--bs={size}", "--direct=1",
           "--ioengine=io_uring", f"--iodepth={iodepth}", f"--runtime={runtime:g}", "--time_based",
           f"--size={os.path.getsize(path)}", "--output-format=json"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "detail": f"fio gave no result after {timeout:.0f} s"}
    try:
        out = p.stdout
        job = json.loads(out[out.index("{"):])["jobs"][0]
        rd = job["read"]
        pct = rd.get("clat_ns", {}).get("percentile", {})
        ops = rd["total_ios"]
        secs = rd["runtime"] / 1e3
        cpu_s = (job.get("usr_cpu", 0.0) + job.get("sys_cpu", 0.0)) / 100.0 * secs
        return {"status": "ok", "value": rd["iops"], "ops_per_s": rd["iops"], "ops": ops,
                "p50_us": pct.get("50.000000", 0) / 1e3, "p99_us": pct.get("99.000000", 0) / 1e3,
                "ns_per_op": 1e9 / rd["iops"] if rd["iops"] else None,
                "cpu_ns_per_op": cpu_s * 1e9 / ops if ops else None,
                "cmd": " ".join(cmd[:-1])}
    except (ValueError, KeyError, IndexError) as e:
        tail = " | ".join((p.stderr or p.stdout or "").strip().splitlines()[-2:])
        return {"status": "error", "detail": f"fio rc={p.returncode} ({type(e).__name__}): {tail}"}


# ==========================================================================
# S5: copying a page-cached file.
# ==========================================================================

def _check_copy(src: str, dst: str) -> str | None:
    size = os.path.getsize(src)
    if os.path.getsize(dst) != size:
        return f"{dst} has {os.path.getsize(dst)} bytes, not {size}"
    with open(src, "rb") as a, open(dst, "rb") as b:
        for off in (0, size // 3, size // 2, max(0, size - (1 << 20))):
            if os.pread(a.fileno(), 1 << 20, off) != os.pread(b.fileno(), 1 << 20, off):
                return f"copy differs from the source at offset {off}"
    return None


async def _aiofiles_copy(src: str, dst: str, chunk: int) -> None:
    import aiofiles
    async with aiofiles.open(src, "rb") as s, aiofiles.open(dst, "wb") as d:
        while True:
            b = await s.read(chunk)
            if not b:
                break
            await d.write(b)


def measure_copy(p: dict) -> dict:
    """One copy of p["src"], warm or (p["fresh"]) rewritten and synced right
    before; every copier gets the core's same set-up (prepare_copy)."""
    key, src, dst, fresh = p["key"], p["src"], p["dst"], bool(p.get("fresh"))
    size = os.path.getsize(src)
    try:
        copier = None
        if key == "aiofiles":
            import aiofiles  # noqa: F401 - "not installed" before anything is timed
            copier = partial(_aiofiles_copy, chunk=p.get("chunk", 1 << 20))
        elapsed = asyncio.run(M.copy_once(key, src, dst, fresh, copier))
        bad = _check_copy(src, dst)
        if bad:
            return {"status": "WRONG DATA", "detail": bad}
        return {"status": "ok", "value": size / (elapsed / 1e9) / 1e6, "elapsed_s": elapsed / 1e9,
                "bytes": size}
    finally:
        if os.path.exists(dst):
            os.unlink(dst)  # the destination is dropped after every copy


# ==========================================================================
# S6: many small files, each read whole.
# ==========================================================================

def file_paths(directory: str, nfiles: int) -> list[str]:
    return [os.path.join(directory, f"f{i:05d}") for i in range(nfiles)]


def _read_sync(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def measure_files(p: dict) -> dict:
    key, ntasks, duration = p["key"], p["tasks"], p["duration"]
    paths = file_paths(p["dir"], p["nfiles"])
    expect_first = _read_sync(paths[0])
    expect_total = sum(len(_read_sync(x)) for x in paths)  # also brings every file into the caches

    if key == "sync":
        def one_pass(subset):
            return sum(len(_read_sync(x)) for x in subset)
        first = _read_sync(paths[0])
        one_pass(paths[: len(paths) // 10])  # warm-up
        passes, total, t0 = 0, 0, time.perf_counter_ns()
        while True:
            total += one_pass(paths)
            passes += 1
            elapsed = time.perf_counter_ns() - t0
            if elapsed >= duration * 1e9:
                break
    else:
        if key == "ringlet":
            import ringlet
            read = ringlet.read_file
        elif key == "aiofiles":
            import aiofiles

            async def read(path):
                async with aiofiles.open(path, "rb") as f:
                    return await f.read()
        else:
            raise ValueError(f"unknown reader {key!r}")

        async def a_pass(subset):
            async def task(i):
                n = 0
                for x in subset[i::ntasks]:
                    n += len(await read(x))
                return n
            return sum(await asyncio.gather(*[task(i) for i in range(ntasks)]))

        async def main():
            first = await read(paths[0])
            await a_pass(paths[: len(paths) // 10])  # warm-up
            passes, total, t0 = 0, 0, time.perf_counter_ns()
            while True:
                total += await a_pass(paths)
                passes += 1
                elapsed = time.perf_counter_ns() - t0
                if elapsed >= duration * 1e9:
                    return first, passes, total, elapsed
        first, passes, total, elapsed = asyncio.run(main())
    if first != expect_first or total != passes * expect_total:
        return {"status": "WRONG DATA", "detail": f"read {total} bytes in {passes} passes, "
                f"expected {passes * expect_total}"}
    files = passes * len(paths)
    return {"status": "ok", "value": files / (elapsed / 1e9), "files": files, "passes": passes,
            "elapsed_s": elapsed / 1e9}


# ==========================================================================
# Point 5: 100,000 reads in flight at once.
# ==========================================================================

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _slab_objects(name: str = "io_kiocb") -> int | None:
    """Active objects of a kernel slab cache (system-wide), if readable."""
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith(name + " "):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


async def _in_flight(n: int, size: int, traced: bool) -> dict:
    """n engine.read futures on one pipe, all pending; then the pipe is fed
    n records of `size` bytes (each carrying its number) and every read must
    return exactly one whole record, each record exactly once."""
    import tracemalloc
    import contextvars
    import ringlet

    eng = ringlet.get_engine()
    r, w = os.pipe()
    try:
        try:
            import fcntl
            fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ: room for all the records in one write
        except OSError:
            pass
        os.set_blocking(w, False)
        # Warm-up: one read, so that the engine and its lazy state exist.
        fut = eng.read(r, size)
        os.write(w, b"\0" * size)
        await fut
        futs: list = [None] * n  # allocated before the baseline: not counted
        rd = eng.read
        slab0 = _slab_objects()
        rss0 = _rss_bytes()
        if traced:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter_ns()
        for i in range(n):
            futs[i] = rd(r, size)
        t_submit = time.perf_counter_ns() - t0
        res: dict = {}
        if traced:
            held = tracemalloc.get_traced_memory()[0] - base
            snap = tracemalloc.take_snapshot()
            tracemalloc.stop()
            known = {sys.getsizeof(b"x" * size): "the data: bytes object the kernel fills",
                     sys.getsizeof(futs[0]): "asyncio.Future (with its GC header)",
                     sys.getsizeof(contextvars.copy_context()): "contextvars.Context (copied for the future's done callback)"}
            op = futs[0]._callbacks[0][0] if getattr(futs[0], "_callbacks", None) else None
            if op is not None:
                known.setdefault(type(op).__basicsize__, f"ringlet Op (the cell, {type(op).__name__})")
            by_size: dict = {}
            for t in snap.traces:
                by_size.setdefault(t.size, [0, 0])
                by_size[t.size][0] += 1
                by_size[t.size][1] += t.size
            items = sorted(((sz, c, tot) for sz, (c, tot) in by_size.items() if c >= n // 2),
                           key=lambda x: -x[2])
            data = sys.getsizeof(b"x" * size)
            res.update(traced_bytes=held, bytes_per_op=held / n, data_bytes_per_op=data,
                       beyond_data_per_op=held / n - data,
                       breakdown=[{"size": sz, "count": c, "what": known.get(sz, "?")} for sz, c, tot in items])
        else:
            res.update(rss_per_op=(_rss_bytes() - rss0) / n)
        slab1 = _slab_objects()
        st = eng.stats()
        pending = sum(1 for f in futs if not f.done())
        res.update(submit_s=t_submit / 1e9, pending_after_submit=pending, in_flight=st.get("in_flight"),
                   kernel_io_kiocb_delta=(slab1 - slab0) if slab0 is not None and slab1 is not None else None)
        # Feed them: n records, as few writes as the pipe takes.
        payload = b"".join(struct.pack("<Q", i).ljust(size, b"\0") for i in range(n))
        view = memoryview(payload)
        t0 = time.perf_counter_ns()
        off = 0
        while off < len(view):
            try:
                off += os.write(w, view[off:off + (1 << 20)])
            except BlockingIOError:
                await asyncio.sleep(0)
        got = await asyncio.gather(*futs)
        t_done = time.perf_counter_ns() - t0
        ids = sorted(struct.unpack_from("<Q", x)[0] if len(x) == size else -1 for x in got)
        ok = ids == list(range(n))
        st = eng.stats()
        res.update(complete_s=t_done / 1e9, correct=ok, peak_in_flight=st.get("peak_in_flight"),
                   overflowed=st.get("overflowed"), engine_stats=dict(st))
        return res
    finally:
        os.close(r)
        os.close(w)


def measure_memory(p: dict) -> dict:
    n, size = p["n"], p.get("size", 8)
    plain = asyncio.run(_in_flight(n, size, traced=False))    # timings and RSS, no tracemalloc
    traced = asyncio.run(_in_flight(n, size, traced=True))    # Python allocations per op
    ok = plain["correct"] and traced["correct"]
    return {"status": "ok" if ok else "WRONG DATA", "value": traced["beyond_data_per_op"],
            "n": n, "size": size, "plain": plain, "traced": traced,
            "detail": "" if ok else "some read did not get exactly one whole record"}


MEASURES = {"reads": measure_reads, "copy": measure_copy, "files": measure_files, "memory": measure_memory}


def worker_main(arg: str) -> None:
    p = json.loads(arg)
    try:
        res = MEASURES[p["kind"]](p)
    except ImportError as e:
        res = {"status": "not installed", "detail": str(e)}
    except Skip as e:
        res = {"status": "skipped", "detail": str(e)}
    except Exception as e:  # noqa: BLE001 - a contender failing must not stop the run
        res = {"status": "error", "detail": f"{type(e).__name__}: {e}"}
    print("RESULT " + json.dumps(res), flush=True)
