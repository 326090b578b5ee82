#!/usr/bin/env python3
"""Side-by-side benchmark: 4 KiB random reads from a page-cached file.

    python benchmarks/run.py [--quick] [--out DIR] [--dir TMPDIR] [--only REGEX]

What it does
  1. creates a test file of random bytes (256 MiB, --quick 32 MiB) in a fresh
     temp dir under /var/tmp (or --dir), then reads it once so it is in the
     page cache;
  2. for every contender (sync os.pread, ringlet, caio, aiofiles, thread pool,
     anyio, ...) and task count, runs a fixed-duration measurement of 4 KiB
     reads at random 4 KiB-aligned offsets, each in a FRESH subprocess and a
     FRESH event loop (asyncio.run);
  3. repeats that in alternation for several rounds (5, --quick 2), rotating
     the order each round, and reports per contender the MEDIAN over rounds
     of ops/s, p50 and p99 latency per op;
  4. prints a Markdown table and writes DIR/results.md, DIR/results.json and
     (if matplotlib is importable) DIR/reads.png.

Every contender reads exactly the same offsets, and its first read is checked
against os.pread before timing starts.  A library that is not importable is
reported as "not installed"; a contender that crashes or hangs is reported as
such; neither stops the run.  This is a measurement, never a test: nothing
here fails because a machine is slow (the exit status is non-zero only when a
contender returned WRONG DATA).

Latency is measured around each `await` (or call) with time.perf_counter_ns;
with N tasks in flight it includes the time an op waits behind the others
(p50 ~= N / ops/s).  The two clock reads cost every contender the same
~0.1 µs per op.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial

BLOCK = 4096
N_OFFSETS = 1 << 16  # distinct random offsets each contender cycles through
SEED = 20261126


# --------------------------------------------------------------------------
# Contenders.  Each is (key, label, family, tasks, modules it needs).
# `key` selects the reader factory in the worker (see _make_readers).
# --------------------------------------------------------------------------

CONTENDERS = [
    # key                  label                                      family      tasks  needs
    ("sync",               "sync os.pread loop",                      "sync",     1,  []),
    ("baseline",           "baseline: create_future+call_soon",       "baseline", 1,  []),
    ("baseline",           "baseline: create_future+call_soon",       "baseline", 64, []),
    ("ringlet",            "ringlet f.pread",                         "ringlet",  1,  ["ringlet"]),
    ("ringlet",            "ringlet f.pread",                         "ringlet",  64, ["ringlet"]),
    ("ringlet_engine",     "ringlet engine.read (low level)",         "ringlet",  1,  ["ringlet"]),
    ("ringlet_engine",     "ringlet engine.read (low level)",         "ringlet",  64, ["ringlet"]),
    ("ringlet_uvloop",     "ringlet f.pread on uvloop",               "ringlet",  1,  ["ringlet", "uvloop"]),
    ("ringlet_uvloop",     "ringlet f.pread on uvloop",               "ringlet",  64, ["ringlet", "uvloop"]),
    ("caio",               "caio linux_uring sqpoll=off",             "caio",     1,  ["caio.linux_uring_asyncio"]),
    ("caio",               "caio linux_uring sqpoll=off",             "caio",     64, ["caio.linux_uring_asyncio"]),
    ("caio_deferred",      "caio linux_uring sqpoll=off deferred",    "caio",     64, ["caio.linux_uring_asyncio"]),
    ("caio_sqpoll",        "caio linux_uring sqpoll=on",              "caio",     1,  ["caio.linux_uring_asyncio"]),
    ("caio_sqpoll",        "caio linux_uring sqpoll=on",              "caio",     64, ["caio.linux_uring_asyncio"]),
    ("aiofile",            "aiofile AIOFile.read_bytes (caio default)", "aiofile", 1,  ["aiofile"]),
    ("aiofile",            "aiofile AIOFile.read_bytes (caio default)", "aiofile", 64, ["aiofile"]),
    ("aiofiles",           "aiofiles seek+read",                      "aiofiles", 1,  ["aiofiles"]),
    ("aiofiles",           "aiofiles seek+read",                      "aiofiles", 64, ["aiofiles"]),
    ("executor",           "loop.run_in_executor(None, os.pread)",    "threads",  64, []),
    ("to_thread",          "asyncio.to_thread(os.pread)",             "threads",  64, []),
    ("anyio",              "anyio.open_file seek+read",               "anyio",    1,  ["anyio"]),
    ("anyio",              "anyio.open_file seek+read",               "anyio",    64, ["anyio"]),
]

# Families whose variants are collapsed to their best in the main table.
BEST_OF = {"caio": "caio linux_uring"}

RINGLET_REF = "ringlet f.pread"
SYNC_REF = "sync os.pread loop"


# ==========================================================================
# Worker side: runs ONE measurement in its own process and prints JSON.
# ==========================================================================

def _offsets(size: int) -> list[int]:
    rnd = random.Random(SEED)
    nblocks = size // BLOCK
    return [rnd.randrange(nblocks) * BLOCK for _ in range(N_OFFSETS)]


async def _make_readers(key, path, fd, ntasks):
    """Return (readers, cleanup): one `await reader(offset) -> bytes` per task.

    Readers are functools.partial objects where possible so that the only
    Python-level overhead is the library's own call path.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    cleanups = []

    if key == "baseline":
        # The floor for any asyncio-future-based design: a future created and
        # resolved via call_soon, awaited.  No I/O at all.  (DESIGN.md.)
        data = os.pread(fd, BLOCK, 0)
        create, call_soon = loop.create_future, loop.call_soon

        def rd(off):
            fut = create()
            call_soon(fut.set_result, data)
            return fut
        readers = [rd] * ntasks

    elif key in ("ringlet", "ringlet_uvloop"):
        import ringlet
        f = await ringlet.open(path, "rb")
        cleanups.append(f.close)
        readers = [partial(f.pread, BLOCK)] * ntasks

    elif key == "ringlet_engine":
        import ringlet
        eng = ringlet.get_engine()
        readers = [partial(eng.read, fd, BLOCK)] * ntasks

    elif key in ("caio", "caio_deferred", "caio_sqpoll"):
        from caio.linux_uring_asyncio import AsyncioContext
        ctx = AsyncioContext(max_requests=max(64, ntasks) * 2,
                             sqpoll=(key == "caio_sqpoll"),
                             deferred=(key == "caio_deferred"))
        if key == "caio_sqpoll" and not ctx.context.sqpoll:
            ctx.close()
            raise _Skip("SQPOLL not negotiated by the kernel")

        async def _close_ctx():
            ctx.close()
        cleanups.append(_close_ctx)
        readers = [partial(ctx.read, BLOCK, fd)] * ntasks

    elif key == "aiofile":
        # aiofile (on caio, with caio's default context for this loop).
        from aiofile import AIOFile
        f = AIOFile(path, "rb")
        await f.open()
        cleanups.append(f.close)
        readers = [partial(f.read_bytes, BLOCK)] * ntasks

    elif key == "aiofiles":
        # aiofiles has no pread: each task gets its own handle and does
        # seek + read (two trips to the thread pool), as a user would.
        import aiofiles
        readers = []
        for _ in range(ntasks):
            f = await aiofiles.open(path, "rb")
            cleanups.append(f.close)

            async def rd(off, f=f):
                await f.seek(off)
                return await f.read(BLOCK)
            readers.append(rd)

    elif key == "anyio":
        import anyio
        readers = []
        for _ in range(ntasks):
            f = await anyio.open_file(path, "rb")
            cleanups.append(f.aclose)

            async def rd(off, f=f):
                await f.seek(off)
                return await f.read(BLOCK)
            readers.append(rd)

    elif key == "executor":
        readers = [partial(loop.run_in_executor, None, os.pread, fd, BLOCK)] * ntasks

    elif key == "to_thread":
        readers = [partial(asyncio.to_thread, os.pread, fd, BLOCK)] * ntasks

    else:
        raise ValueError(f"unknown contender {key!r}")

    async def cleanup():
        for c in cleanups:
            r = c()
            if asyncio.iscoroutine(r) or isinstance(r, asyncio.Future):
                await r
    return readers, cleanup


class _Skip(Exception):
    pass


async def _task(rd, offs, j, count, deadline, lat):
    """Do `count` reads (or stop at `deadline`), appending each op's latency."""
    now = time.perf_counter_ns
    app = lat.append
    mask = N_OFFSETS - 1
    for _ in range(count):
        t0 = now()
        if t0 >= deadline:
            return
        await rd(offs[j & mask])
        app(now() - t0)
        j += 1


async def _measure_async(key, path, ntasks, duration, warmup):
    import asyncio

    fd = os.open(path, os.O_RDONLY)
    try:
        offs = _offsets(os.fstat(fd).st_size)
        readers, cleanup = await _make_readers(key, path, fd, ntasks)
        try:
            # Correctness first: every reader's first result is checked.
            for i, rd in enumerate(readers[: 0 if key == "baseline" else 4]):
                off = offs[i]
                got = await rd(off)
                if bytes(got) != os.pread(fd, BLOCK, off):
                    return {"status": "WRONG DATA",
                            "detail": f"read at offset {off} differs from os.pread"}
            stride = N_OFFSETS // ntasks
            # Warm-up, time-bounded (spins up thread pools, caches); it also
            # measures the rate used to size the timed run.
            lat: list[int] = []
            t_w = time.perf_counter_ns()
            dl = t_w + int(warmup * 1e9)
            await asyncio.gather(*[_task(readers[i], offs, i * stride + 7, 1 << 62, dl, lat)
                                   for i in range(ntasks)])
            rate = len(lat) / max((time.perf_counter_ns() - t_w) / 1e9, 1e-9)
            # Timed run: a FIXED number of reads per task, sized to last about
            # `duration`.  (Not "until a deadline": when reads complete inline,
            # awaiting a done future never yields, so with a deadline the first
            # task would do every read and the other 63 none.)  A safety
            # deadline of 5x keeps a mis-sized run from dragging on.
            per_task = max(1, int(rate * duration / ntasks))
            lat = []
            t_start = time.perf_counter_ns()
            dl = t_start + int((5 * duration + 1) * 1e9)
            await asyncio.gather(*[_task(readers[i], offs, i * stride, per_task, dl, lat)
                                   for i in range(ntasks)])
            elapsed = time.perf_counter_ns() - t_start
        finally:
            await cleanup()
        extra = {}
        if key.startswith("ringlet"):
            import ringlet
            try:
                extra["engine_stats"] = dict(ringlet.get_engine().stats())
            except Exception as e:  # noqa: BLE001 - reporting only
                extra["engine_stats"] = repr(e)
        return _summary(lat, elapsed) | {"ops_per_task": per_task} | extra
    finally:
        os.close(fd)


def _measure_sync(path, duration, warmup):
    fd = os.open(path, os.O_RDONLY)
    try:
        offs = _offsets(os.fstat(fd).st_size)
        mask = N_OFFSETS - 1
        rd = partial(os.pread, fd, BLOCK)
        now = time.perf_counter_ns
        for phase in ("warmup", "timed"):
            lat: list[int] = []
            app = lat.append
            j = 0
            t_start = now()
            dl = t_start + int((warmup if phase == "warmup" else duration) * 1e9)
            while True:
                t0 = now()
                if t0 >= dl:
                    break
                rd(offs[j & mask])
                app(now() - t0)
                j += 1
            elapsed = now() - t_start
        return _summary(lat, elapsed)
    finally:
        os.close(fd)


def _summary(lat, elapsed_ns):
    n = len(lat)
    if n == 0:
        return {"status": "no ops completed"}
    lat.sort()
    return {
        "status": "ok",
        "ops": n,
        "elapsed_s": elapsed_ns / 1e9,
        "ops_per_s": n / (elapsed_ns / 1e9),
        "p50_us": lat[n // 2] / 1e3,
        "p99_us": lat[min(n - 1, int(n * 0.99))] / 1e3,
        "max_us": lat[-1] / 1e3,
    }


def worker_main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--key")
    ap.add_argument("--tasks", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--path")
    a = ap.parse_args(argv)
    try:
        if a.key == "sync":
            res = _measure_sync(a.path, a.duration, a.warmup)
        else:
            import asyncio
            coro = _measure_async(a.key, a.path, a.tasks, a.duration, a.warmup)
            if a.key.endswith("_uvloop"):
                import uvloop
                loop = uvloop.new_event_loop()
                try:
                    res = loop.run_until_complete(coro)
                finally:
                    loop.close()
            else:
                res = asyncio.run(coro)  # a FRESH event loop per measurement
    except ImportError as e:
        res = {"status": "not installed", "detail": str(e)}
    except _Skip as e:
        res = {"status": "skipped", "detail": str(e)}
    except Exception as e:  # noqa: BLE001 - a contender failing must not stop the run
        res = {"status": "error", "detail": f"{type(e).__name__}: {e}"}
    print("RESULT " + json.dumps(res), flush=True)


# ==========================================================================
# Probe: which libraries are importable (in a child, so a broken import
# cannot take the harness down), their versions, ringlet's backend.
# ==========================================================================

PROBE = r"""
import importlib, json, sys
from importlib import metadata
mods = json.loads(sys.argv[1])
out = {}
for m in mods:
    try:
        importlib.import_module(m)
        dist = m.split(".")[0]
        try:
            ver = metadata.version(dist)
        except Exception:
            ver = "?"
        out[m] = {"ok": True, "version": ver}
    except Exception as e:
        out[m] = {"ok": False, "detail": f"{type(e).__name__}: {e}"}
try:
    import ringlet
    out["ringlet.backend"] = ringlet.backend()
except Exception as e:
    out["ringlet.backend"] = None
print("RESULT " + json.dumps(out))
"""


def _last_result(stdout: str):
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return None


def probe_libs():
    mods = sorted({m for c in CONTENDERS for m in c[4]} | {"matplotlib"})
    try:
        p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(mods)],
                           capture_output=True, text=True, timeout=120)
        res = _last_result(p.stdout)
    except subprocess.TimeoutExpired:
        res = None
    if res is None:
        res = {m: {"ok": False, "detail": "import probe crashed"} for m in mods}
    return res


# ==========================================================================
# Harness side.
# ==========================================================================

def machine_info(libs):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0] + " (" + sys.executable + ")",
        "ringlet_backend": libs.get("ringlet.backend"),
        "versions": {m: v.get("version") for m, v in libs.items()
                     if isinstance(v, dict) and v.get("ok")},
    }
    return info


def make_file(dirpath: str, size: int) -> tuple[str, float, float]:
    path = os.path.join(dirpath, "ringlet-bench.dat")
    chunk = 4 << 20
    t = time.perf_counter()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
    t_make = time.perf_counter() - t
    # Warm: read it all once so every measurement hits the page cache.
    t = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, chunk):
            pass
    finally:
        os.close(fd)
    t_warm = time.perf_counter() - t
    return path, t_make, t_warm


def run_one(key, tasks, duration, warmup, path, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker",
           "--key", key, "--tasks", str(tasks), "--duration", str(duration),
           "--warmup", str(warmup), "--path", path]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "detail": f"no result after {timeout:.0f} s (hang?)"}
    res = _last_result(p.stdout)
    if res is None:
        tail = (p.stderr or "").strip().splitlines()[-3:]
        return {"status": "crashed", "detail": f"rc={p.returncode}: " + " | ".join(tail)}
    return res


def fmt_int(x):
    return f"{x:,.0f}"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def aggregate(rows):
    """rows: list of dicts (label, family, tasks, key, rounds: [result...])."""
    for r in rows:
        oks = [x for x in r["rounds"] if x.get("status") == "ok"]
        if oks:
            r["status"] = "ok" if len(oks) == len(r["rounds"]) else \
                f"ok ({len(oks)}/{len(r['rounds'])} rounds)"
            r["ops_per_s"] = statistics.median(x["ops_per_s"] for x in oks)
            r["p50_us"] = statistics.median(x["p50_us"] for x in oks)
            r["p99_us"] = statistics.median(x["p99_us"] for x in oks)
            ops = [x["ops_per_s"] for x in oks]
            r["spread_pct"] = 100.0 * (max(ops) - min(ops)) / r["ops_per_s"]
        else:
            first = r["rounds"][0] if r["rounds"] else {"status": "not run"}
            r["status"] = first.get("status", "?")
            r["detail"] = first.get("detail", "")
            r["ops_per_s"] = None
    return rows


def main_table(rows):
    """Collapse BEST_OF families to their fastest variant per task count."""
    out = []
    seen_best = set()
    for r in rows:
        fam = r["family"]
        if fam in BEST_OF:
            k = (fam, r["tasks"])
            if k in seen_best:
                continue
            seen_best.add(k)
            cands = [x for x in rows if x["family"] == fam and x["tasks"] == r["tasks"]]
            good = [x for x in cands if x["ops_per_s"] is not None]
            if good:
                best = max(good, key=lambda x: x["ops_per_s"])
                variant = best["label"][len(BEST_OF[fam]):].strip()
                out.append(dict(best, label=f"{BEST_OF[fam]} (best: {variant})"))
            else:
                out.append(dict(cands[0], label=BEST_OF[fam]))
        else:
            out.append(r)
    ref = {r["tasks"]: r["ops_per_s"] for r in rows if r["label"] == RINGLET_REF}
    sync = next((r["ops_per_s"] for r in rows if r["label"] == SYNC_REF), None)
    for r in out:
        v = r["ops_per_s"]
        rr = ref.get(r["tasks"])
        r["x_ringlet"] = v / rr if v and rr else None
        r["x_sync"] = v / sync if v and sync else None
    return out


def markdown(info, cfg, table, rows):
    L = []
    L.append("# ringlet benchmark: 4 KiB random reads, page-cached file\n")
    L.append(f"- kernel: `{info['kernel']}`; CPU: {info['cpu']} × {info['cpus']}")
    L.append(f"- python: {info['python']}")
    L.append(f"- ringlet backend: {info['ringlet_backend'] or 'ringlet not importable'}")
    vers = ", ".join(f"{k} {v}" for k, v in sorted(info["versions"].items()))
    L.append(f"- versions: {vers or '—'}")
    L.append(f"- file: {cfg['file_mib']} MiB; {cfg['rounds']} rounds × {cfg['duration']} s per "
             f"measurement (after {cfg['warmup']} s warm-up), each in a fresh process and event loop; "
             "median over rounds")
    L.append("")
    L.append("| contender | tasks | ops/s (median) | p50 µs | p99 µs | vs ringlet (same tasks) | vs sync | spread |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in table:
        if r["ops_per_s"] is None:
            L.append(f"| {r['label']} | {r['tasks']} | {r['status']} | | | | | |")
            continue
        note = "" if r["status"] == "ok" else f" ({r['status']})"
        L.append(f"| {r['label']}{note} | {r['tasks']} | {fmt_int(r['ops_per_s'])} | "
                 f"{r['p50_us']:.1f} | {r['p99_us']:.1f} | {fmt_ratio(r['x_ringlet'])} | "
                 f"{fmt_ratio(r['x_sync'])} | ±{r['spread_pct'] / 2:.0f}% |")
    L.append("")
    L.append("vs ringlet / vs sync = this row's ops/s ÷ the reference's ops/s (above 1 = faster "
             "than the reference). spread = (max − min) / 2 of ops/s over rounds, in % of the median. "
             "With 64 tasks, latency includes waiting behind the other 63 ops.")
    variants = [r for r in rows if r["family"] in BEST_OF]
    if variants:
        L.append("")
        L.append("## all variants (best per task count is in the table above)\n")
        L.append("| variant | tasks | ops/s (median) | p50 µs | p99 µs |")
        L.append("|---|---:|---:|---:|---:|")
        for r in variants:
            if r["ops_per_s"] is None:
                L.append(f"| {r['label']} | {r['tasks']} | {r['status']} | | |")
            else:
                L.append(f"| {r['label']} | {r['tasks']} | {fmt_int(r['ops_per_s'])} | "
                         f"{r['p50_us']:.1f} | {r['p99_us']:.1f} |")
    stats = [(r, x["engine_stats"]) for r in rows for x in r["rounds"][-1:]
             if isinstance(x.get("engine_stats"), dict)]
    if stats:
        L.append("")
        L.append("## ringlet engine.stats() after the last round "
                 "(whole worker: verification + warm-up + timed run)\n")
        L.append("| contender | tasks | completed | inline % | enter_calls / op | peak_in_flight |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for r, st in stats:
            done = st.get("completed") or 0
            inl = st.get("completed_inline")
            ent = st.get("enter_calls")
            L.append(f"| {r['label']} | {r['tasks']} | {done:,} | "
                     f"{(100.0 * inl / done) if done and inl is not None else float('nan'):.1f} | "
                     f"{(ent / done) if done and ent is not None else float('nan'):.3f} | "
                     f"{st.get('peak_in_flight', '?')} |")
    problems = [r for r in rows if r["ops_per_s"] is None and r.get("detail")]
    if problems:
        L.append("")
        L.append("## not measured\n")
        done = set()
        for r in problems:
            k = (r["label"], r["status"], r["detail"])
            if k in done:
                continue
            done.add(k)
            L.append(f"- {r['label']}: {r['status']} — {r['detail']}")
    return "\n".join(L) + "\n"


def chart(table, path, info):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return f"matplotlib not importable ({type(e).__name__}); no chart written"
    rows = [r for r in table if r["ops_per_s"]]
    if not rows:
        return "nothing measured; no chart written"
    colors = {"ringlet": "#d62728", "sync": "#7f7f7f", "baseline": "#bcbd22",
              "caio": "#1f77b4", "aiofiles": "#2ca02c", "threads": "#9467bd",
              "anyio": "#ff7f0e", "aiofile": "#17becf"}
    labels = [f"{r['label']}  [{r['tasks']}]" for r in rows]
    vals = [r["ops_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.6))
    y = range(len(rows))
    ax.barh(list(y), vals, color=[colors.get(r["family"], "#333333") for r in rows])
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ops/s (median over rounds, log scale) — 4 KiB random reads, page cache")
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:,.0f}", va="center", fontsize=7)
    ax.set_xlim(right=max(vals) * 4)
    ax.set_title(f"{info['cpu']} × {info['cpus']}, Linux {info['kernel']}, "
                 f"Python {info['python'].split()[0]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"chart written to {path}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker_main(argv[1:])

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="32 MiB file, 2 rounds, 0.3 s per measurement")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    help="output directory (default: results/ next to this script)")
    ap.add_argument("--dir", default=None,
                    help="where to create the temp test file (default /var/tmp)")
    ap.add_argument("--size-mib", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per measurement (default 1.0, quick 0.3)")
    ap.add_argument("--only", default=None,
                    help="regex on contender label/key; sync and ringlet f.pread always run")
    a = ap.parse_args(argv)

    size_mib = a.size_mib or (32 if a.quick else 256)
    rounds = a.rounds or (2 if a.quick else 5)
    duration = a.duration or (0.3 if a.quick else 1.0)
    warmup = round(min(0.2, duration / 3), 3)
    contenders = CONTENDERS
    if a.only:
        rx = re.compile(a.only)
        contenders = [c for c in CONTENDERS
                      if rx.search(c[1]) or rx.search(c[0]) or c[1] in (SYNC_REF, RINGLET_REF)]

    libs = probe_libs()
    info = machine_info(libs)
    print(f"machine: Linux {info['kernel']} | {info['cpu']} × {info['cpus']} | "
          f"Python {info['python']}")
    print(f"ringlet: {info['ringlet_backend'] or 'not importable'}")
    print("versions: " + (", ".join(f"{k} {v}" for k, v in sorted(info["versions"].items())) or "—"))

    base = a.dir or ("/var/tmp" if os.path.isdir("/var/tmp") else None)
    tmpdir = tempfile.mkdtemp(prefix="ringlet-bench-", dir=base)
    try:
        path, t_make, t_warm = make_file(tmpdir, size_mib << 20)
        print(f"test file: {path} ({size_mib} MiB; written in {t_make:.2f} s, "
              f"warm read {size_mib / max(t_warm, 1e-9):,.0f} MiB/s)")
        cfg = {"file_mib": size_mib, "rounds": rounds, "duration": duration,
               "warmup": warmup, "block": BLOCK, "offsets": N_OFFSETS, "seed": SEED}

        rows = [{"key": k, "label": lab, "family": fam, "tasks": t, "needs": needs,
                 "rounds": []} for (k, lab, fam, t, needs) in contenders]
        missing = {}
        for r in rows:
            bad = [m for m in r["needs"] if not libs.get(m, {}).get("ok")]
            if bad:
                missing[id(r)] = {"status": "not installed",
                                  "detail": "; ".join(f"{m}: {libs.get(m, {}).get('detail', '?')}"
                                                      for m in bad)}
        timeout = 30 + 10 * (duration + warmup)
        n_meas = sum(1 for r in rows if id(r) not in missing) * rounds
        done = 0
        t0 = time.perf_counter()
        for rnd in range(rounds):
            # Alternate: every contender once per round, order rotated each round.
            k = (rnd * 7) % len(rows)
            for r in rows[k:] + rows[:k]:
                if id(r) in missing:
                    if rnd == 0:
                        r["rounds"].append(missing[id(r)])
                    continue
                res = run_one(r["key"], r["tasks"], duration, warmup, path, timeout)
                r["rounds"].append(res)
                done += 1
                shown = (f"{res['ops_per_s']:>12,.0f} ops/s" if res.get("status") == "ok"
                         else res.get("status"))
                print(f"  [{done:3d}/{n_meas}] round {rnd + 1}: {r['label']:<40} "
                      f"x{r['tasks']:<3} {shown}", file=sys.stderr, flush=True)
        print(f"({n_meas} measurements in {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    aggregate(rows)
    table = main_table(rows)
    md = markdown(info, cfg, table, rows)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"machine": info, "config": cfg, "table": table, "measurements": rows,
                   "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f, indent=1)
    print()
    print(md)
    print(chart(table, os.path.join(a.out, "reads.png"), info))
    print(f"results: {os.path.join(a.out, 'results.md')}, {os.path.join(a.out, 'results.json')}")

    wrong = [r for r in rows for x in r["rounds"] if x.get("status") == "WRONG DATA"]
    if wrong:
        print("ERROR: some contenders returned WRONG DATA: "
              + ", ".join(sorted({f"{r['label']} x{r['tasks']}" for r in wrong})), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
