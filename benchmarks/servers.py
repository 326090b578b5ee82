#!/usr/bin/env python3
"""Web servers serving files, stock FileResponse and StaticFiles against ringlet's (issue 12, point 5).

    python benchmarks/servers.py [--duration S] [--rounds N] [--out FILE] [--only REGEX]

Serves a 4 KiB and a 1 MiB file with uvicorn + Starlette (the stock
starlette.responses.FileResponse, which FastAPI re-exports, and
ringlet.integrations.starlette.FileResponse; the folder mounted as
starlette.staticfiles.StaticFiles and as ringlet.integrations.starlette's)
and with aiohttp's own server
(web.run_app: aiohttp.web.FileResponse and ringlet.integrations.aiohttp's;
the folder as aiohttp's web.static route and as ringlet's static),
each server in its own process on 127.0.0.1, and drives it with wrk at 64
connections for --duration seconds (default 5) after a one-second warm-up.
Every case runs --rounds times (default 1), the cases of a round in rotated
order; the median is reported.

Reported per case: requests/s and p99 latency (wrk --latency); the server
process's CPU time per request during the run (/proc/PID/stat, all its
threads: a figure that other load on the machine disturbs far less than
requests/s, given beside the goals); and threads
added: the server process's threads (/proc/PID/task) at their most during
warm-up and run, less those it had before the first request; among them,
io_uring's kernel workers (iou-wrk-*, where the kernel runs the openat and
statx it cannot complete at once; no Python runs there) are also counted
apart.  The stock classes' are worker threads of a pool (anyio's, the
loop's executor).  Then, per
framework and size, ringlet's requests/s over the stock class's, against the
goals of issue 12 (met / missed: a report, never a failure).

Needs: wrk (Debian package `wrk`: installed with apt-get when this runs as
root and it is missing, else the run is skipped with a message), and in this
Python: uvicorn and starlette for the Starlette cases, aiohttp for the aiohttp
ones (a framework that is missing is skipped, saying so).  Nothing listens
beyond the loopback interface.

Writes FILE (default benchmarks/results/servers.md) and prints the same table.
Exits 0 whatever the figures; non-zero only if a server served wrong bytes.

Internally, ``servers.py --serve KIND --port P --dir D`` is one server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

HOST = "127.0.0.1"
CONNECTIONS = 64
WRK_THREADS = 2
WARMUP_S = 1
FILES = {"4KiB": 4096, "1MiB": 1 << 20}
SERVERS = {"starlette": "uvicorn + Starlette", "staticfiles": "uvicorn + Starlette StaticFiles", "aiohttp": "aiohttp",
           "aiostatic": "aiohttp web.static"}
# Server kinds: framework-implementation.
KINDS = tuple(f"{framework}-{implementation}" for framework in SERVERS for implementation in ("stock", "ringlet"))
# ringlet's requests/s over the stock class's, per (framework, file): issue 12's goals (none for static folders).
GOALS = {("starlette", "4KiB"): 1.5, ("starlette", "1MiB"): 1.2, ("aiohttp", "4KiB"): 1.3, ("aiohttp", "1MiB"): 1.0}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "servers.md"


# -- the servers (run in a subprocess: --serve) -------------------------------------


def _serve(kind: str, port: int, folder: Path) -> None:
    framework, implementation = kind.split("-")
    if framework in ("starlette", "staticfiles"):
        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse as StockStarlette
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles as StockStaticFiles

        if implementation == "ringlet":
            from ringlet.integrations.starlette import FileResponse as RingletStarlette
            from ringlet.integrations.starlette import StaticFiles as RingletStaticFiles
            starlette_cls: Any = RingletStarlette
            static_cls: Any = RingletStaticFiles
        else:
            starlette_cls, static_cls = StockStarlette, StockStaticFiles

        async def starlette_file(request: Request) -> Any:
            return starlette_cls(folder / request.path_params["name"])

        if framework == "staticfiles":
            route: Any = Mount("/", static_cls(directory=folder))
        else:
            route = Route("/{name}", starlette_file)
        uvicorn.run(Starlette(routes=[route]), host=HOST, port=port, log_level="warning", access_log=False)
    else:
        from aiohttp import web

        if implementation == "ringlet":
            from ringlet.integrations.aiohttp import FileResponse as RingletAiohttp
            from ringlet.integrations.aiohttp import static as ringlet_static
            aiohttp_cls: Any = RingletAiohttp
            static_route: Any = ringlet_static
        else:
            aiohttp_cls, static_route = web.FileResponse, web.static

        async def aiohttp_file(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse = aiohttp_cls(folder / request.match_info["name"])
            return response

        aiohttp_app = web.Application()
        if framework == "aiostatic":
            aiohttp_app.add_routes([static_route("/", folder)])
        else:
            aiohttp_app.router.add_get("/{name}", aiohttp_file)
        web.run_app(aiohttp_app, host=HOST, port=port, access_log=None, print=None)


# -- the driver ----------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    file: str
    requests_per_s: float
    p99_ms: float
    threads_added: int
    uring_workers_added: int
    cpu_us_per_request: float
    errors: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _threads(pid: int) -> Tuple[int, int]:
    """(threads of the process, of which io_uring's kernel workers).  The
    kernel runs the io_uring operations that cannot complete at once (an
    openat, a statx) on its io-wq workers, which /proc lists among the
    process's tasks as iou-wrk-*: no Python runs on them, but they are
    threads, and counted apart."""
    total = workers = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as comm:
                name = comm.read()
        except OSError:  # gone meanwhile
            continue
        total += 1
        workers += name.startswith(("iou-wrk", "iou-sqp"))
    return total, workers


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: bytes = response.read()
        return data


def _wait_listening(server: "subprocess.Popen[bytes]", port: int) -> None:
    """Until the server accepts connections (no request made: its threads are
    then counted before any request could start a worker thread)."""
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            error = server.stderr.read().decode() if server.stderr else ""
            raise RuntimeError(f"server exited with {server.returncode}: {error}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on {HOST}:{port} after 30 s") from None
            time.sleep(0.1)


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _cpu_seconds(pid: int) -> float:
    """CPU time the process has used, all its threads (io_uring's kernel
    workers included: they belong to it), user and system."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _wrk(url: str, duration: int) -> Tuple[float, float, int, int]:
    """(requests/s, p99 latency in ms, socket errors + non-2xx, requests) of one wrk run."""
    out = subprocess.run(["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if rate is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    done = re.search(r"(\d+) requests in", out)
    return (float(rate.group(1)), _seconds(*p99.groups()) * 1000, errors + (int(non2xx.group(1)) if non2xx else 0),
            int(done.group(1)) if done else 0)


def _run_case(kind: str, file: str, folder: Path, duration: int) -> Result:
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port), "--dir", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://{HOST}:{port}/{file}"
        _wait_listening(server, port)
        base = _threads(server.pid)
        peak = list(base)
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.05):
                now = _threads(server.pid)
                peak[0], peak[1] = max(peak[0], now[0]), max(peak[1], now[1])

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            body = _fetch(url)
            if body != (folder / file).read_bytes():
                raise SystemExit(f"WRONG DATA from {kind} for {file}: {len(body)} bytes")
            _wrk(url, WARMUP_S)
            cpu_before = _cpu_seconds(server.pid)
            rate, p99, errors, requests = _wrk(url, duration)
            cpu_us = (_cpu_seconds(server.pid) - cpu_before) / max(requests, 1) * 1e6
        finally:
            stop.set()
            watcher.join()
        return Result(kind, file, rate, p99, peak[0] - base[0], peak[1] - base[1], cpu_us, errors)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _install_wrk() -> bool:
    if shutil.which("wrk"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing the Debian package (apt-get install -y wrk)", flush=True)
        done = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, text=True)
        if done.returncode == 0 and shutil.which("wrk"):
            return True
        print(done.stderr.strip()[-500:])
    return False


def _available(kinds: List[str]) -> Tuple[List[str], List[str]]:
    """The kinds whose framework imports here, and why the others are skipped."""
    missing: Dict[str, str] = {}
    for framework, modules in (("starlette", ("uvicorn", "starlette")), ("staticfiles", ("uvicorn", "starlette")),
                               ("aiohttp", ("aiohttp",)), ("aiostatic", ("aiohttp",))):
        for module in modules:
            try:
                __import__(module)
            except ImportError:
                missing[framework] = f"{framework}: skipped, {module} is not installed (pip install {module})"
                break
    return [k for k in kinds if k.split("-")[0] not in missing], sorted(set(missing.values()))


def _table(results: List[Result], notes: List[str], duration: int, rounds: int, load: Tuple[float, float]) -> str:
    lines = [
        "# Web servers serving files: stock FileResponse and StaticFiles vs ringlet's",
        "",
        f"wrk, {CONNECTIONS} connections, {WRK_THREADS} threads, {duration} s per case after a {WARMUP_S} s warm-up, "
        f"median of {rounds} round(s); server and wrk on {HOST}, {os.cpu_count()} CPUs shared; "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after.  "
        f"Python {sys.version.split()[0]}; {_versions()}.  uvicorn runs with its defaults (uvloop and "
        f"httptools where installed, else asyncio and h11); aiohttp's web.run_app on asyncio's loop.",
        "",
        "| server | class | file | requests/s | p99 latency | server CPU per request | threads added "
        "| of which io_uring workers | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        framework, implementation = r.kind.split("-")
        lines.append(f"| {SERVERS[framework]} | {implementation} | {r.file} | {r.requests_per_s:,.0f} | {r.p99_ms:.1f} ms "
                     f"| {r.cpu_us_per_request:,.0f} us | {r.threads_added} | {r.uring_workers_added} | {r.errors} |")
    lines += ["", "| server | file | ringlet / stock requests/s | goal | | stock / ringlet server CPU per request |",
              "|---|---|---:|---:|---|---:|"]
    by_key = {(r.kind, r.file): r for r in results}
    for framework in SERVERS:
        for file in FILES:
            stock, ours = by_key.get((f"{framework}-stock", file)), by_key.get((f"{framework}-ringlet", file))
            if stock is None or ours is None:
                continue
            ratio = ours.requests_per_s / stock.requests_per_s
            cpu = stock.cpu_us_per_request / ours.cpu_us_per_request if ours.cpu_us_per_request else float("nan")
            goal = GOALS.get((framework, file))
            verdict = f"{goal:.1f}x | {'met' if ratio >= goal else 'missed'}" if goal else "none set |"
            lines.append(f"| {framework} | {file} | {ratio:.2f}x | {verdict} | {cpu:.2f}x |")
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"


def _versions() -> str:
    from importlib import metadata

    found = []
    for name in ("uvicorn", "starlette", "aiohttp", "uvloop", "httptools"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per case (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the median is reported (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the report (default {DEFAULT_OUT})")
    parser.add_argument("--only", default="", help="run only the cases (kind/file) matching this regex")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, args.dir)
        return 0

    if not _install_wrk():
        print("skipped: wrk is not installed (Debian: apt-get install wrk)")
        return 0
    kinds, notes = _available(list(KINDS))
    for note in notes:
        print(note)
    cases = [(k, f) for k in kinds for f in FILES if re.search(args.only, f"{k}/{f}")]
    samples: Dict[Tuple[str, str], List[Result]] = {case: [] for case in cases}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ringlet-servers-") as tmp:
        folder = Path(tmp)
        for name, size in FILES.items():
            (folder / name).write_bytes(os.urandom(size))
        for round_ in range(args.rounds):
            shift = round_ % max(len(cases), 1)
            for kind, file in cases[shift:] + cases[:shift]:
                result = _run_case(kind, file, folder, args.duration)
                samples[(kind, file)].append(result)
                print(f"round {round_ + 1}: {kind:19} {file:5} {result.requests_per_s:9,.0f} req/s  "
                      f"p99 {result.p99_ms:7.1f} ms  cpu {result.cpu_us_per_request:6.0f} us/req  "
                      f"threads +{result.threads_added} "
                      f"(io_uring workers +{result.uring_workers_added})  errors {result.errors}",
                      flush=True)
    results = [_median(samples[case]) for case in cases]
    report = _table(results, notes, args.duration, args.rounds, (load_before, os.getloadavg()[0]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print()
    print(report)
    print(f"written to {args.out}")
    return 0


def _median(runs: List[Result]) -> Result:
    """The run with the median requests/s (its own latency and threads)."""
    ordered = sorted(runs, key=lambda r: r.requests_per_s)
    return ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 == 0 else ordered[len(ordered) // 2]


if __name__ == "__main__":
    sys.exit(main())
