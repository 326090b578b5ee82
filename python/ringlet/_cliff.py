"""python -m ringlet cliff: which side of the async cliff does a workload live on?

The essay ends on a question: "is the orchestration worth its price for this
workload?"  This measures the answer on this machine and this path, for
random reads of a file, three ways:

    sync     one thread calls os.pread and waits for each read in turn
    ringlet  c tasks, each awaiting ringlet reads (io_uring, no thread waits)
    threads  c tasks, each awaiting loop.run_in_executor(pool, os.pread, ...)

across concurrency c (requests wanting service at once, 1 to 256) and read
sizes (4 KiB to 1 MiB), in two places the data can be:

    cached   the file is in the page cache: a read is a memory copy
    disk     O_DIRECT: every read goes to the device (the wait is real)

Every request is a closed loop: a caller asks again as soon as its previous
read is answered, and its latency runs from asking to being answered.  The
synchronous code serves its c callers one after another.  The bill per
operation is itemized: Python heap held per request in flight (tracemalloc,
including the data buffers), system calls per operation (/proc/self/io read
and write calls, plus io_uring_enter calls from the engine's stats) and
threads used (threading.active_count() delta; io_uring's kernel workers,
iou-wrk, in parentheses when there are any).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import mmap
import os
import platform
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ._engine import backend, get_engine

__all__ = ["Result", "figure", "measure", "main_cliff", "plot", "report", "summary", "verdicts"]

KiB = 1024
MiB = 1024 * KiB
APPROACHES = ("sync", "ringlet", "threads")
FULL = {"sizes": (4 * KiB, 64 * KiB, 1 * MiB), "concurrency": (1, 4, 16, 64, 256), "seconds": 0.3,
        "file": 128 * MiB}
QUICK = {"sizes": (4 * KiB, 1 * MiB), "concurrency": (1, 16, 256), "seconds": 0.15, "file": 64 * MiB}
_BILL_SECONDS = 0.03          # the tracemalloc pass (slower: kept short)
_N_OFFSETS = 8192             # precomputed random offsets, cycled


@dataclass
class Result:
    """One measured point."""

    where: str                # "cached" or "disk"
    size: int
    concurrency: int
    approach: str
    ops: int = 0
    seconds: float = 0.0
    latencies: list = field(default_factory=list, repr=False)   # seconds
    heap: float = 0.0         # bytes of Python heap held per request in flight
    syscalls: float = 0.0     # per operation
    threads: int = 0          # Python threads added
    kernel_workers: int = 0   # iou-wrk threads added

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        lat = sorted(self.latencies)
        if not lat:
            return math.nan
        return lat[min(len(lat) - 1, int(q * len(lat)))]


# ---- what the process did: system calls and threads ---------------------------------------

def _io_calls() -> int:
    """read- and write-type system calls made by this process so far (/proc/self/io)."""
    try:
        with open("/proc/self/io") as f:
            fields = dict(line.split(":") for line in f if ":" in line)
        return int(fields["syscr"]) + int(fields["syscw"])
    except (OSError, KeyError, ValueError):
        return 0


def _kernel_workers() -> int:
    """io_uring worker threads (iou-wrk-*) of this process right now."""
    n = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    n += f.read().startswith("iou-wrk")
            except OSError:
                pass
    except OSError:
        pass
    return n


# ---- the three ways to serve c callers ----------------------------------------------------

class _Target:
    """The file under test, opened both ways."""

    def __init__(self, path: str, region: int) -> None:
        self.path = path
        self.region = region
        self.fd = os.open(path, os.O_RDONLY)
        try:
            self.direct_fd: Optional[int] = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
            probe = mmap.mmap(-1, 4096)
            os.preadv(self.direct_fd, [probe], 0)
            probe.close()
            self.direct_error = ""
        except OSError as exc:  # e.g. a file system without O_DIRECT
            self.direct_fd = None
            self.direct_error = f"O_DIRECT not available on {path}: {exc.strerror}"
        self.afile: Any = None

    def offsets(self, size: int, seed: int) -> list[int]:
        blocks = max(self.region // size, 1)
        rnd = random.Random(seed)
        return [rnd.randrange(blocks) * size for _ in range(_N_OFFSETS)]

    def close(self) -> None:
        os.close(self.fd)
        if self.direct_fd is not None:
            os.close(self.direct_fd)


def _discard(value: float) -> None:
    pass


def _sync(target: _Target, where: str, size: int, offs: list[int], seconds: float,
          record: bool = True) -> tuple[int, list, float]:
    """One thread, one read after another.  Returns (ops, per-read seconds, elapsed)."""
    now = time.perf_counter
    durations: list = []
    append = durations.append if record else _discard
    # read(offset): os.pread, or os.preadv into an aligned buffer for O_DIRECT (a C partial: no Python frame)
    if where == "cached":
        read = functools.partial(os.pread, target.fd, size)
    else:
        read = functools.partial(os.preadv, target.direct_fd, [mmap.mmap(-1, size)])
    i = 0
    t0 = last = now()
    deadline = t0 + seconds
    while last < deadline:
        read(offs[i & (_N_OFFSETS - 1)])
        t = now()
        append(t - last)
        last = t
        i += 1
    return i, durations, last - t0


def _round_robin(durations: list, c: int) -> list:
    """Latencies of c callers served one after another by one thread: each
    waits for the c - 1 reads ahead of its own (a sliding sum of c)."""
    out = []
    window = 0.0
    for k, d in enumerate(durations):
        window += d
        if k >= c:
            window -= durations[k - c]
        out.append(window)
    return out


async def _concurrent(approach: str, target: _Target, where: str, size: int, c: int, offs: list[int],
                      seconds: float, pool: Optional[concurrent.futures.Executor],
                      record: bool = True) -> tuple[int, list, float]:
    """c tasks, each reading in a loop until the deadline."""
    loop = asyncio.get_running_loop()
    now = time.perf_counter
    latencies: list = []
    counter = [0]
    if approach == "ringlet":
        if where == "cached":
            pread = target.afile.pread

            def start(off: int, buf: Any) -> Any:
                return pread(size, off)
        else:
            readinto, dfd = get_engine().readinto, target.direct_fd

            def start(off: int, buf: Any) -> Any:
                return readinto(dfd, buf, off)
    else:
        run = loop.run_in_executor
        if where == "cached":
            fd, pread_ = target.fd, os.pread

            def start(off: int, buf: Any) -> Any:
                return run(pool, pread_, fd, size, off)
        else:
            dfd, preadv = target.direct_fd, os.preadv

            def start(off: int, buf: Any) -> Any:
                return run(pool, preadv, dfd, [buf], off)

    t0 = now()
    deadline = t0 + seconds

    async def caller(k: int) -> None:
        buf = mmap.mmap(-1, size) if where == "disk" else None
        append = latencies.append if record else _discard
        last = t0
        i = k * 97
        while last < deadline:
            await start(offs[i & (_N_OFFSETS - 1)], buf)
            t = now()
            append(t - last)
            last = t
            i += 1
        counter[0] += i - k * 97

    await asyncio.gather(*(caller(k) for k in range(c)))
    return counter[0], latencies, now() - t0


async def _measure_point(approach: str, target: _Target, where: str, size: int, c: int, seconds: float,
                         bill: bool) -> Result:
    res = Result(where, size, c, approach)
    offs = target.offsets(size, seed=size * 1000 + c)
    pool = concurrent.futures.ThreadPoolExecutor() if approach == "threads" else None
    try:
        async def once(secs: float, record: bool = True) -> tuple[int, list, float]:
            if approach == "sync":
                return _sync(target, where, size, offs, secs, record)
            return await _concurrent(approach, target, where, size, c, offs, secs, pool, record)

        engine = get_engine()
        threads_before, workers_before = threading.active_count(), _kernel_workers()
        calls_before, stats_before = _io_calls(), engine.stats()
        ops, lat, elapsed = await once(seconds)
        calls = _io_calls() - calls_before
        if approach == "ringlet":
            calls += engine.stats()["enter_calls"] - stats_before["enter_calls"]
        res.threads = threading.active_count() - threads_before
        res.kernel_workers = max(_kernel_workers() - workers_before, 0)
        res.ops, res.seconds = ops, elapsed
        res.latencies = _round_robin(lat, c) if approach == "sync" else lat
        res.syscalls = calls / ops if ops else 0.0
        if bill:  # the heap held while serving c callers: a short pass under tracemalloc
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                await once(_BILL_SECONDS, record=False)
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            res.heap = max(peak, 0) / (1 if approach == "sync" else c)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return res


def _points(config: dict, where_list: list[str]) -> list[tuple[str, int, int, str]]:
    pts = []
    for where in where_list:
        for size in config["sizes"]:
            for c in config["concurrency"]:
                for approach in APPROACHES:
                    pts.append((where, size, c, approach))
    return pts


class _Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.stream = stream if stream is not None else sys.stderr

    def step(self, label: str) -> None:
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r  [{bar}] {self.done:3d}/{self.total} {time.monotonic() - self.t0:5.1f}s  "
                          f"{label:<34.34}")
        self.stream.flush()
        self.done += 1

    def close(self) -> None:
        self.stream.write(f"\r  [{'#' * 30}] {self.total}/{self.total} "
                          f"{time.monotonic() - self.t0:5.1f}s  done{' ' * 30}\n")
        self.stream.flush()


def _make_file(directory: str, size: int) -> str:
    fd, path = tempfile.mkstemp(prefix="ringlet-cliff-", suffix=".bin", dir=directory)
    try:
        chunk = os.urandom(4 * MiB)
        left = size
        while left > 0:
            left -= os.write(fd, chunk[:min(left, len(chunk))])
        os.fsync(fd)  # O_DIRECT reads should not wait for this data's writeback
    finally:
        os.close(fd)
    return path


def _warm(path: str, region: int) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.tell() < region and f.read(4 * MiB):
            pass


async def measure(path: Optional[str] = None, *, quick: bool = False, progress: bool = True,
                  config: Optional[dict] = None, where: Optional[list] = None) -> tuple[list, dict]:
    """Measure every point; returns (results, facts about the run).  Needs a running loop."""
    config = dict(config or (QUICK if quick else FULL))
    directory = path or tempfile.gettempdir()
    made = None
    if os.path.isdir(directory):
        made = _make_file(directory, config["file"])
        file_path = made
    else:
        file_path = directory
    region = min(os.path.getsize(file_path), config["file"] if made else 256 * MiB)
    sizes = tuple(s for s in config["sizes"] if s <= region) or (4 * KiB,)
    config["sizes"] = sizes
    facts: dict[str, Any] = {"path": file_path if not made else os.path.dirname(made), "file_bytes": region,
                             "made_file": bool(made), "config": config, "notes": []}
    target = _Target(file_path, region)
    try:
        _warm(file_path, region)
        get_engine()  # the loop's engine, before any thread counting
        target.afile = await _open_async(file_path)
        where_list = list(where or ["cached", "disk"])
        if target.direct_fd is None and "disk" in where_list:
            where_list.remove("disk")
            facts["notes"].append(target.direct_error + "; the disk rows are left out")
        pts = _points(config, where_list)
        bar = _Progress(len(pts)) if progress else None
        results = []
        for (wh, size, c, approach) in pts:
            if bar:
                bar.step(f"{wh} {_size(size)} c={c} {approach}")
            results.append(await _measure_point(approach, target, wh, size, c, config["seconds"], bill=True))
        if bar:
            bar.close()
        await target.afile.close()
    finally:
        target.close()
        if made:
            os.unlink(made)
    return results, facts


async def _open_async(path: str) -> Any:
    from ._open import open as ropen
    return await ropen(path, "rb")


# ---- the report -------------------------------------------------------------------------

def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n // KiB} KiB"


def _dur(s: float) -> str:
    if math.isnan(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _bytes(n: float) -> str:
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    if n >= KiB:
        return f"{n / KiB:.1f} KiB"
    return f"{n:.0f} B"


def _groups(results: list) -> dict:
    groups: dict = {}
    for r in results:
        groups.setdefault((r.where, r.size, r.concurrency), {})[r.approach] = r
    return groups


TIE = 1.10  # a winner by less than 10% is a tie: single readings on a noisy machine


def verdicts(results: list) -> list[dict]:
    """Per (where, size, concurrency): the winner by ops/s, its margin over
    the runner-up, and whether that margin is clear (at least TIE)."""
    out = []
    for (where, size, c), by in _groups(results).items():
        ranked = sorted(by.values(), key=lambda r: r.ops_per_s, reverse=True)
        best, second = ranked[0], ranked[1] if len(ranked) > 1 else None
        margin = best.ops_per_s / second.ops_per_s if second and second.ops_per_s else math.inf
        out.append({"where": where, "size": size, "concurrency": c, "winner": best.approach,
                    "runner_up": second.approach if second else None, "margin": margin, "clear": margin >= TIE})
    return out


def _verdict_text(v: dict) -> str:
    if not v["clear"]:
        return f"-> a tie: {v['winner']} ahead of {v['runner_up']} by {100 * (v['margin'] - 1):.0f}%"
    return f"-> {v['winner']} wins, {v['margin']:.1f}x over {v['runner_up']}"


def report(results: list, facts: dict) -> str:
    lines = []
    cfg = facts["config"]
    lines.append(f"ringlet cliff: {platform.node()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
                 f"{backend()}")
    lines.append(f"file: {_bytes(facts['file_bytes'])} of random reads in {facts['path']}"
                 f"{' (a temporary file)' if facts['made_file'] else ''}; {cfg['seconds']:.2f} s per point")
    head = ("where", "size", "conc", "approach", "ops/s", "p50", "p99", "heap/req", "syscalls/op", "threads")
    rows = []
    verdict = {(v["where"], v["size"], v["concurrency"]): v for v in verdicts(results)}
    for key, by in _groups(results).items():
        first = True
        for approach in APPROACHES:
            r = by.get(approach)
            if r is None:
                continue
            threads = f"+{r.threads}" + (f" ({r.kernel_workers} iou-wrk)" if r.kernel_workers else "")
            rows.append((r.where if first else "", _size(r.size) if first else "", str(r.concurrency) if first else "",
                         approach, f"{r.ops_per_s:,.0f}", _dur(r.percentile(0.5)), _dur(r.percentile(0.99)),
                         _bytes(r.heap), f"{r.syscalls:.2f}", threads))
            first = False
        rows.append(("", "", "", _verdict_text(verdict[key]), "", "", "", "", "", ""))
    widths = [len(h) for h in head]
    for row in rows:
        if not row[3].startswith("->"):
            widths = [max(w, len(c)) for w, c in zip(widths, row)]
    left = {0, 1, 3}

    def fmt(row: tuple) -> str:
        if row[3].startswith("->"):
            return " " * (sum(widths[:3]) + 6) + row[3]
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines.append("")
    lines.append(fmt(head))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(r) for r in rows)
    lines.append("")
    lines.append("which side of the cliff:")
    lines.extend("  " + s for s in summary(results))
    lines.append("")
    lines.append("latency: from a caller asking until it is answered; sync serves its c callers one after another.")
    lines.append("heap/req: peak Python heap (tracemalloc) while serving, per request in flight (sync holds one;")
    lines.append("          ringlet and threads hold c: each with its buffer, task, future and state).")
    lines.append("syscalls/op: read/write calls (/proc/self/io) + io_uring_enter calls, per read; epoll_wait not counted.")
    lines.append("threads: threading.active_count() added while running (iou-wrk: io_uring kernel workers added).")
    lines.append("ringlet's p99 at high concurrency on cached reads: a read that completes inline does not yield to")
    lines.append("          the loop, so one task may run many reads before the others get their first turn.")
    lines.extend("note: " + n for n in facts.get("notes", []))
    return "\n".join(lines)


def summary(results: list) -> list[str]:
    """One sentence per (where, size): which side of the cliff it lives on."""
    by_ws: dict = {}
    for v in verdicts(results):
        by_ws.setdefault((v["where"], v["size"]), []).append(v)
    out = []
    for (where, size), vs in by_ws.items():
        vs.sort(key=lambda v: v["concurrency"])
        parts = [f"c={v['concurrency']}: " + (f"{v['winner']} {v['margin']:.1f}x" if v["clear"] else "tie")
                 for v in vs]
        sync = [v["concurrency"] for v in vs if v["clear"] and v["winner"] == "sync"]
        both = [v for v in vs if v["clear"] and v["winner"] != "sync"]
        if not sync and not both:
            pair = sorted({a for v in vs for a in (v["winner"], v["runner_up"])})
            side = (f"no clear side: {' and '.join(pair)} stay within 10% of each other "
                    "(the memory copy or the device sets the pace)")
        elif not both and len(sync) == len(vs):
            side = "the synchronous side: each read is too quick for the orchestration to pay for itself"
        elif not both:
            side = (f"the synchronous side: async never wins clearly (sync wins at c={', '.join(map(str, sync))}, "
                    "a tie elsewhere: concurrency does not buy speed here)")
        elif not sync:
            side = (f"the async side ({', '.join(sorted({v['winner'] for v in both}))}): the reads wait long "
                    "enough that serving them concurrently wins")
        else:
            first_async = min(v["concurrency"] for v in both)
            below = [c for c in sync if c < first_async]
            side = (f"the cliff runs through it: synchronous at c={', '.join(map(str, below or sync))}, "
                    f"async ({', '.join(sorted({v['winner'] for v in both}))}) from c={first_async}")
        out.append(f"{where} {_size(size)}: {side}  [{'; '.join(parts)}]")
    return out


def plot(results: list, facts: dict, filename: str) -> None:
    """Write a PNG of figure(results)."""
    figure(results).savefig(filename, dpi=100)


def figure(results: list) -> Any:
    """A matplotlib Figure: ops/s and p99 latency against concurrency, per place and size."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("python -m ringlet cliff --plot draws with matplotlib, which is not installed: "
                          "pip install matplotlib") from None
    wheres = list(dict.fromkeys(r.where for r in results))
    sizes = list(dict.fromkeys(r.size for r in results))
    fig = Figure(figsize=(3.4 * len(sizes) + 0.6, 2.7 * 2 * len(wheres)), layout="constrained")
    axes = fig.subplots(2 * len(wheres), len(sizes), squeeze=False)
    colors = {"sync": "#555555", "ringlet": "#3b6fb6", "threads": "#e08a3c"}
    for (w, where), (col, size) in ((w, c) for w in enumerate(wheres) for c in enumerate(sizes)):
        ax_ops, ax_lat = axes[2 * w][col], axes[2 * w + 1][col]
        for approach in APPROACHES:
            pts = sorted((r for r in results if (r.where, r.size, r.approach) == (where, size, approach)),
                         key=lambda r: r.concurrency)
            if not pts:
                continue
            cs = [r.concurrency for r in pts]
            ax_ops.plot(cs, [r.ops_per_s for r in pts], "o-", color=colors[approach], label=approach)
            ax_lat.plot(cs, [r.percentile(0.99) * 1e3 for r in pts], "o-", color=colors[approach], label=approach)
        ax_ops.set_title(f"{where}, {_size(size)} reads", fontsize=10)
        concurrency = sorted({r.concurrency for r in results})
        for ax in (ax_ops, ax_lat):
            ax.set_xscale("log", base=2)
            ax.set_xticks(concurrency, [str(c) for c in concurrency])
            ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        if w == len(wheres) - 1:
            ax_lat.set_xlabel("concurrent requests", fontsize=9)
        if col == 0:
            ax_ops.set_ylabel(f"{where}: reads/s\n(higher wins)", fontsize=9)
            ax_lat.set_ylabel(f"{where}: p99 latency, ms\n(lower wins)", fontsize=9)
            if w == 0:
                ax_ops.legend(fontsize=8)
    fig.suptitle(f"The async cliff on this machine ({os.cpu_count()} CPUs, Linux {platform.release()}):\n"
                 "random reads, synchronous vs ringlet vs a thread pool; cached = page cache, disk = O_DIRECT",
                 fontsize=10)
    return fig


def main_cliff(path: Optional[str] = None, quick: bool = False, plot_file: Optional[str] = None,
               out: Callable[[str], Any] = print) -> list:
    """The `python -m ringlet cliff` command."""
    if plot_file:  # fail before measuring, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("cliff --plot needs matplotlib: pip install matplotlib")
    if path is not None and not os.path.exists(path):
        raise SystemExit(f"cliff: {path} does not exist (give a directory or a file to read)")
    t0 = time.monotonic()
    results, facts = asyncio.run(measure(path, quick=quick))
    out(report(results, facts))
    if plot_file:
        plot(results, facts, plot_file)
        out(f"plot: {plot_file}")
    out(f"measured in {time.monotonic() - t0:.1f} s")
    return results
