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
read is answered.  The synchronous code serves its c callers one after
another.  Each point follows the harness rules of core.py: the file is
re-warmed before every cached point, every approach reads the same offsets
after the same warm-up.  The bill per operation is itemized: Python heap held
per request in flight (tracemalloc, including the data buffers), system calls
per operation (/proc/self/io read and write calls, plus io_uring_enter calls
from the engine's stats) and threads used (threading.active_count() delta;
io_uring's kernel workers, iou-wrk, in parentheses when there are any).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import platform
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, TextIO, Tuple

from .._engine import backend, get_engine
from . import core

__all__ = ["Result", "figure", "measure", "main_cliff", "plot", "report", "summary", "verdicts"]

KiB = core.KiB
MiB = core.MiB
APPROACHES = ("sync", "ringlet", "threads")
# rounds: each point is measured that many times, the approaches taking turns
# in a rotated order; the round with the median ops/s is reported.
FULL: Dict[str, Any] = {"sizes": (4 * KiB, 64 * KiB, 1 * MiB), "concurrency": (1, 4, 16, 64, 256),
                        "seconds": 0.3, "rounds": 3, "file": 128 * MiB}
QUICK: Dict[str, Any] = {"sizes": (4 * KiB, 1 * MiB), "concurrency": (1, 16, 256), "seconds": 0.15,
                         "rounds": 1, "file": 64 * MiB}
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
    latencies: List[float] = field(default_factory=list, repr=False)   # seconds
    heap: float = 0.0         # bytes of Python heap held per request in flight
    syscalls: float = 0.0     # per operation
    threads: int = 0          # Python threads added
    kernel_workers: int = 0   # iou-wrk threads added

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return core.percentile(self.latencies, q)


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


# ---- one point: c callers served one way ------------------------------------------------

class _Target:
    """The file under test, opened plainly and (where the file system allows) with O_DIRECT."""

    def __init__(self, path: str, region: int) -> None:
        self.path = path
        self.region = region
        self.fd = os.open(path, os.O_RDONLY)
        self.direct_error = core.direct_refusal(path) or ""
        self.direct_fd: Optional[int] = None
        if not self.direct_error:
            self.direct_fd = os.open(path, os.O_RDONLY | os.O_DIRECT)

    def close(self) -> None:
        os.close(self.fd)
        if self.direct_fd is not None:
            os.close(self.direct_fd)


def _round_robin(durations: List[float], c: int) -> List[float]:
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


RunOnce = Callable[[float, float, bool], Awaitable[core.Timing]]


async def _runner(approach: str, target: _Target, where: str, size: int, c: int, offs: List[int],
                  pool: Optional[concurrent.futures.Executor]) -> Tuple[RunOnce, Callable[[], Awaitable[None]]]:
    """run(seconds, warmup, record) for this approach, and its clean-up."""
    disk = where == "disk"
    if approach == "sync":
        fd = target.direct_fd if disk else target.fd
        assert fd is not None
        read = core.sync_reader(fd, size, direct=disk)

        async def run_sync(seconds: float, warmup: float, record: bool) -> core.Timing:
            core.sync_loop(read, offs, warmup, record=False)
            return core.sync_loop(read, offs, seconds, record)

        async def nothing() -> None:
            pass
        return run_sync, nothing
    # On the disk every approach reads into a page-aligned buffer of its
    # own, reused (O_DIRECT needs one): ringlet through f.preadinto.
    key = {"ringlet": "ringlet_direct_into", "threads": "threads_direct"}[approach] if disk else approach
    readers, cleanup = await core.readers_for(key, target.path, target.fd, c, size, pool, target.direct_fd)

    async def run_tasks(seconds: float, warmup: float, record: bool) -> core.Timing:
        return await core.task_loops(readers, offs, seconds, warmup, record)
    return run_tasks, cleanup


async def _measure_point(approach: str, target: _Target, where: str, size: int, c: int, seconds: float,
                         bill: bool) -> Result:
    res = Result(where, size, c, approach)
    offs = core.offsets(target.region, size, seed=size * 1000 + c, count=_N_OFFSETS)
    if where == "cached":
        core.warm(target.path, target.region)  # before every contender: idle memory is paged out here
    pool = concurrent.futures.ThreadPoolExecutor() if approach == "threads" else None
    try:
        engine = get_engine()
        threads_before, workers_before = threading.active_count(), _kernel_workers()
        run, cleanup = await _runner(approach, target, where, size, c, offs, pool)
        try:
            calls_before, stats_before = _io_calls(), engine.stats()
            timing = await run(seconds, seconds / 3, True)
            calls = _io_calls() - calls_before
            if approach == "ringlet":
                calls += int(engine.stats().get("enter_calls", 0) - stats_before.get("enter_calls", 0))
            res.threads = threading.active_count() - threads_before
            res.kernel_workers = max(_kernel_workers() - workers_before, 0)
            res.ops, res.seconds = timing.ops, timing.elapsed_ns / 1e9
            lat = [ns / 1e9 for ns in timing.latencies]
            res.latencies = _round_robin(lat, c) if approach == "sync" else lat
            res.syscalls = calls / timing.ops if timing.ops else 0.0
            if bill:  # the heap held while serving c callers: a short pass under tracemalloc
                tracemalloc.start()
                try:
                    base = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    await run(_BILL_SECONDS, _BILL_SECONDS / 6, False)
                    peak = tracemalloc.get_traced_memory()[1] - base
                finally:
                    tracemalloc.stop()
                res.heap = max(peak, 0) / (1 if approach == "sync" else c)
        finally:
            await cleanup()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return res


def _points(config: Dict[str, Any], where_list: List[str]) -> List[Tuple[str, int, int]]:
    return [(where, size, c) for where in where_list for size in config["sizes"] for c in config["concurrency"]]


def _median_round(rounds: List[Result]) -> Result:
    """The round with the median ops/s (the heap was billed in the first)."""
    median = sorted(rounds, key=lambda r: r.ops_per_s)[len(rounds) // 2]
    median.heap = rounds[0].heap
    return median


class _Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int, stream: Optional[TextIO] = None) -> None:
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
    os.close(fd)
    try:
        core.write_random(path, size)  # fsynced: O_DIRECT reads should not wait for its writeback
    except BaseException:
        os.unlink(path)
        raise
    return path


async def measure(path: Optional[str] = None, *, quick: bool = False, progress: bool = True,
                  config: Optional[Dict[str, Any]] = None,
                  where: Optional[List[str]] = None) -> Tuple[List[Result], Dict[str, Any]]:
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
    facts: Dict[str, Any] = {"path": file_path if not made else os.path.dirname(made), "file_bytes": region,
                             "made_file": bool(made), "config": config, "notes": []}
    try:
        target = _Target(file_path, region)
        try:
            get_engine()  # the loop's engine, before any thread counting
            where_list = list(where or ["cached", "disk"])
            if target.direct_fd is None and "disk" in where_list:
                where_list.remove("disk")
                facts["notes"].append(target.direct_error + "; the disk rows are left out")
            rounds = config.get("rounds", 1)
            points = _points(config, where_list)
            bar = _Progress(len(points) * len(APPROACHES) * rounds) if progress else None
            results: List[Result] = []
            for (wh, size, c) in points:
                taken: Dict[str, List[Result]] = {a: [] for a in APPROACHES}
                for r in range(rounds):
                    for approach in APPROACHES[r % 3:] + APPROACHES[:r % 3]:
                        if bar:
                            bar.step(f"{wh} {_size(size)} c={c} {approach} ({r + 1}/{rounds})")
                        taken[approach].append(await _measure_point(approach, target, wh, size, c,
                                                                    config["seconds"], bill=(r == 0)))
                results.extend(_median_round(taken[a]) for a in APPROACHES)
            if bar:
                bar.close()
        finally:
            target.close()
    finally:
        if made:
            os.unlink(made)
    return results, facts


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


def _groups(results: List[Result]) -> Dict[Tuple[str, int, int], Dict[str, Result]]:
    groups: Dict[Tuple[str, int, int], Dict[str, Result]] = {}
    for r in results:
        groups.setdefault((r.where, r.size, r.concurrency), {})[r.approach] = r
    return groups


TIE = 1.10  # a winner by less than 10% is a tie: readings on a noisy machine


def verdicts(results: List[Result]) -> List[Dict[str, Any]]:
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


def _verdict_text(v: Dict[str, Any]) -> str:
    if not v["clear"]:
        return f"-> a tie: {v['winner']} ahead of {v['runner_up']} by {100 * (v['margin'] - 1):.0f}%"
    return f"-> {v['winner']} wins, {v['margin']:.1f}x over {v['runner_up']}"


def report(results: List[Result], facts: Dict[str, Any]) -> str:
    lines = []
    cfg = facts["config"]
    lines.append(f"ringlet cliff: {platform.node()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
                 f"{backend()}")
    lines.append(f"file: {_bytes(facts['file_bytes'])} of random reads in {facts['path']}"
                 f"{' (a temporary file)' if facts['made_file'] else ''}; {cfg['seconds']:.2f} s per point, "
                 f"the median of {cfg.get('rounds', 1)} round(s)")
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

    def fmt(row: Tuple[str, ...]) -> str:
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
    lines.append("ringlet on cached reads: served inline from the page cache; a task yields once the loop turn's")
    lines.append("          budget is spent (2 ms of reads under 64 KiB, else 1 ms), so the others wait about one turn.")
    lines.append("          Each is one preadv2(RWF_NOWAIT), the read that refuses to wait for the device, which the")
    lines.append("          kernel charges more than os.pread's pread64 (an iovec to import): small reads feel it most.")
    lines.extend("note: " + n for n in facts.get("notes", []))
    return "\n".join(lines)


def summary(results: List[Result]) -> List[str]:
    """One sentence per (where, size): which side of the cliff it lives on."""
    by_ws: Dict[Tuple[str, int], List[Dict[str, Any]]] = {}
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


def plot(results: List[Result], facts: Dict[str, Any], filename: str) -> None:
    """Write a PNG of figure(results)."""
    figure(results).savefig(filename, dpi=100)


def figure(results: List[Result]) -> Any:
    """A matplotlib Figure: ops/s and p99 latency against concurrency, per place and size."""
    from .plot import figure as draw  # matplotlib is imported only here
    return draw(results)


def main_cliff(path: Optional[str] = None, quick: bool = False, plot_file: Optional[str] = None,
               out: Callable[[str], Any] = print) -> List[Result]:
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
