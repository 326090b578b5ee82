#!/usr/bin/env python3
"""Side-by-side benchmark of ringlet and its peers: issue 3, points 3, 4 and 5.

    python benchmarks/run.py [--quick] [--out DIR] [--dir TMPDIR] [--sections LIST]
                             [--only REGEX] [--rounds N] [--duration S] [--mem-ops N]

Sections (all by default; --sections reads,direct,copy,copy_fresh,files,sweep,memory):

  reads   S1-S3: 4 KiB random reads of a page-cached file (256 MiB, --quick
          32 MiB): a sync os.pread loop, ringlet f.pread with 1 and 64 tasks,
          f.pread_many of 64 reads per await, caio linux_uring (SQPOLL on,
          off, deferred: its best counts), aiofile, aiofiles, anyio,
          run_in_executor, to_thread.
  direct  S4: O_DIRECT 4 KiB random reads of the same file: ringlet
          open(direct=True) with 64 tasks, fio io_uring at iodepth 64, and a
          sync O_DIRECT loop (os.preadv into an mmap buffer).  Skipped, with
          the reason, where the file system refuses O_DIRECT.
  copy    S5: copy_file of 256 MiB and 1 GiB (--quick 64 MiB) page-cached
          files vs shutil.copyfile and an aiofiles copy in 1 MiB chunks, MB/s;
          the destination is deleted after every copy.
  copy_fresh  S5 again, the source rewritten and fsynced right before each
          copy (a pipeline copying what it just wrote).
  files   S6: read_file of 10,000 files of 4 KiB with 64 tasks vs a sync
          open/read/close loop and aiofiles with 64 tasks, files/s.
  sweep   point 4: ringlet cached 4 KiB reads with 1 to 4096 tasks; O_DIRECT
          reads with 1 to 4096 in flight beside fio at the same iodepth; read
          sizes 4 KiB to 16 MiB, one task, beside the sync loop.
  memory  point 5: 100,000 engine.read futures pending on a pipe at once, then
          fed; bytes per in-flight operation beyond the data (tracemalloc).

Method: every measurement runs in a FRESH subprocess (and a fresh event
loop) and follows the harness rules of ringlet's measuring core
(ringlet/_measure/core.py, shared with `python -m ringlet cliff`): the page
cache is re-warmed right before every contender's round, every contender gets
the same set-up; within a section, every contender runs once per round, in an order
rotated each round, and the MEDIAN over rounds is reported (5 rounds, --quick
2; sweeps 3, --quick 1).  Reads are timed for a fixed count sized to last
--duration after a warm-up; every contender reads the same offsets and its
first reads are checked against os.pread.  Each scenario's goal (issue 3) is
judged from the measured ratios: "goal met?" is a report, never a test.

Writes DIR/results.md, DIR/results.json, and (with matplotlib) DIR/reads.png,
DIR/sweep.png and DIR/scenarios.png.  The exit status is non-zero only when a
contender returned WRONG DATA: a slow machine fails nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _workers as W  # noqa: E402
from ringlet._measure import core as M  # noqa: E402

MiB = 1 << 20
SECTIONS = ("reads", "direct", "copy", "copy_fresh", "files", "sweep", "memory")

# S1-S3 contenders: (key, label, family, tasks, modules it needs).
CONTENDERS = [
    ("sync",           "sync os.pread loop",                        "sync",     1,  []),
    ("sync_many",      "sync os.pread loop, 64 reads per step",     "sync",     1,  []),
    ("baseline",       "baseline: create_future+call_soon",         "baseline", 1,  []),
    ("baseline",       "baseline: create_future+call_soon",         "baseline", 64, []),
    ("ringlet",        "ringlet f.pread",                           "ringlet",  1,  ["ringlet"]),
    ("ringlet",        "ringlet f.pread",                           "ringlet",  64, ["ringlet"]),
    ("ringlet_many",   "ringlet f.pread_many (64 reads per await)", "ringlet",  1,  ["ringlet"]),
    ("ringlet_engine", "ringlet engine.read (low level)",           "ringlet",  1,  ["ringlet"]),
    ("ringlet_engine", "ringlet engine.read (low level)",           "ringlet",  64, ["ringlet"]),
    ("ringlet_uvloop", "ringlet f.pread on uvloop",                 "ringlet",  1,  ["ringlet", "uvloop"]),
    ("ringlet_uvloop", "ringlet f.pread on uvloop",                 "ringlet",  64, ["ringlet", "uvloop"]),
    ("caio",           "caio linux_uring sqpoll=off",               "caio",     1,  ["caio.linux_uring_asyncio"]),
    ("caio",           "caio linux_uring sqpoll=off",               "caio",     64, ["caio.linux_uring_asyncio"]),
    ("caio_deferred",  "caio linux_uring sqpoll=off deferred",      "caio",     64, ["caio.linux_uring_asyncio"]),
    ("caio_sqpoll",    "caio linux_uring sqpoll=on",                "caio",     1,  ["caio.linux_uring_asyncio"]),
    ("caio_sqpoll",    "caio linux_uring sqpoll=on",                "caio",     64, ["caio.linux_uring_asyncio"]),
    ("aiofile",        "aiofile AIOFile.read_bytes (caio default)", "aiofile",  1,  ["aiofile"]),
    ("aiofile",        "aiofile AIOFile.read_bytes (caio default)", "aiofile",  64, ["aiofile"]),
    ("aiofiles",       "aiofiles seek+read",                        "aiofiles", 1,  ["aiofiles"]),
    ("aiofiles",       "aiofiles seek+read",                        "aiofiles", 64, ["aiofiles"]),
    ("executor",       "loop.run_in_executor(None, os.pread)",      "threads",  64, []),
    ("to_thread",      "asyncio.to_thread(os.pread)",               "threads",  64, []),
    ("anyio",          "anyio.open_file seek+read",                 "anyio",    1,  ["anyio"]),
    ("anyio",          "anyio.open_file seek+read",                 "anyio",    64, ["anyio"]),
]
ALWAYS = ("sync", "sync_many", "ringlet", "ringlet_many")  # kept by --only

SWEEP_TASKS = (1, 4, 16, 64, 256, 1024, 4096)
SWEEP_TASKS_QUICK = (1, 16, 256, 4096)
SWEEP_SIZES = tuple(4096 << (2 * i) for i in range(7))        # 4 KiB .. 16 MiB, x4
SWEEP_SIZES_QUICK = (4096, 65536, 1 << 20, 16 << 20)
SWEEP_DIRECT = (1, 4, 16, 64, 256, 1024, 4096)
SWEEP_DIRECT_QUICK = (1, 16, 256)


# ==========================================================================
# Specs: one row of results per spec, measured once per round.
# ==========================================================================

def spec(section, key, label, family, *, tasks=1, size=W.BLOCK, needs=(), unit="ops/s", **params):
    sid = f"{section}/{key}/{tasks}/{size}" + "".join(f"/{v}" for v in params.values() if isinstance(v, int))
    return {"id": sid, "section": section, "key": key, "label": label, "family": family,
            "tasks": tasks, "size": size, "needs": list(needs), "unit": unit, "params": params,
            "rounds": []}


def build_specs(sections, cfg, a):
    S = []
    path, dpath = cfg.get("path"), cfg.get("path")
    if "reads" in sections:
        rx = re.compile(a.only) if a.only else None
        for key, label, fam, tasks, needs in CONTENDERS:
            if rx and not (rx.search(label) or rx.search(key) or key in ALWAYS):
                continue
            S.append(spec("reads", key, label, fam, tasks=tasks, needs=needs, kind="reads", path=path))
    if "direct" in sections and cfg.get("direct_ok"):
        S.append(spec("direct", "ringlet_direct", "ringlet open(direct=True) f.pread", "ringlet",
                      tasks=64, needs=["ringlet"], kind="reads", path=dpath))
        S.append(spec("direct", "fio", "fio io_uring O_DIRECT, iodepth 64", "fio", tasks=64,
                      kind="fio", path=dpath))
        S.append(spec("direct", "sync_direct", "sync O_DIRECT loop (os.preadv, mmap buffer)", "sync",
                      kind="reads", path=dpath))
    for section in ("copy", "copy_fresh"):
        if section not in sections:
            continue
        fresh = section == "copy_fresh"
        for src in cfg["copy_srcs"]:
            size = os.path.getsize(src)
            common = dict(unit="MB/s", size=size, kind="copy", src=src, dst=src + ".copy", fresh=fresh)
            S.append(spec(section, "ringlet", "ringlet copy_file", "ringlet", needs=["ringlet"], **common))
            S.append(spec(section, "shutil", "shutil.copyfile", "sync", **common))
            S.append(spec(section, "aiofiles", "aiofiles chunked copy (1 MiB chunks)", "aiofiles",
                          needs=["aiofiles"], **common))
    if "files" in sections:
        common = dict(unit="files/s", kind="files", dir=cfg["files_dir"], nfiles=cfg["nfiles"])
        S.append(spec("files", "ringlet", "ringlet read_file", "ringlet", tasks=64, needs=["ringlet"], **common))
        S.append(spec("files", "sync", "sync open/read/close loop", "sync", tasks=1, **common))
        S.append(spec("files", "aiofiles", "aiofiles open+read", "aiofiles", tasks=64, needs=["aiofiles"], **common))
    if "sweep" in sections:
        for t in cfg["sweep_tasks"]:
            S.append(spec("sweep_tasks", "ringlet", "ringlet f.pread, cached", "ringlet", tasks=t,
                          needs=["ringlet"], kind="reads", path=path))
        for sz in cfg["sweep_sizes"]:
            S.append(spec("sweep_sizes", "ringlet", "ringlet f.pread, 1 task", "ringlet", size=sz,
                          needs=["ringlet"], kind="reads", path=path))
            S.append(spec("sweep_sizes", "sync", "sync os.pread loop", "sync", size=sz, kind="reads", path=path))
        if cfg.get("direct_ok"):
            for t in cfg["sweep_direct"]:
                S.append(spec("sweep_direct", "ringlet_direct", "ringlet open(direct=True) f.pread", "ringlet",
                              tasks=t, needs=["ringlet"], kind="reads", path=dpath))
                S.append(spec("sweep_direct", "fio", "fio io_uring O_DIRECT", "fio", tasks=t, kind="fio",
                              path=dpath))
    return S


# ==========================================================================
# Running.
# ==========================================================================

def _last_result(stdout: str):
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return None


def run_worker(params: dict, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(params)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "detail": f"no result after {timeout:.0f} s (hang?)"}
    res = _last_result(p.stdout)
    if res is None:
        tail = (p.stderr or "").strip().splitlines()[-3:]
        return {"status": "crashed", "detail": f"rc={p.returncode}: " + " | ".join(tail)}
    return res


def run_spec(s: dict, cfg: dict) -> dict:
    p = dict(s["params"])
    if p["kind"] == "fio":
        return W.run_fio(p["path"], s["tasks"], cfg["fio_runtime"], s["size"], timeout=60 + 3 * cfg["fio_runtime"])
    if p["kind"] == "reads":
        p.update(key=s["key"], tasks=s["tasks"], size=s["size"], duration=cfg["duration"], warmup=cfg["warmup"])
        timeout = 30 + 10 * (cfg["duration"] + cfg["warmup"])
    elif p["kind"] == "copy":
        p.update(key=s["key"])
        timeout = 60 + s["size"] / (20 * MiB)
    else:  # files
        p.update(key=s["key"], tasks=s["tasks"], duration=cfg["duration"])
        timeout = 120 + 10 * cfg["duration"]
    return run_worker(p, timeout)


def _shown(s, res):
    if res.get("status") != "ok":
        return f"{res.get('status')}: {res.get('detail', '')}"[:70]
    return f"{res['value']:>14,.0f} {s['unit']}"


def run_sections(specs, libs, rounds_of, cfg):
    """Every section's specs once per round, the order rotated each round."""
    by_section: dict = {}
    for s in specs:
        by_section.setdefault(s["section"], []).append(s)
    missing = {}
    for s in specs:
        bad = [m for m in s["needs"] if not libs.get(m, {}).get("ok")]
        if bad:
            missing[s["id"]] = {"status": "not installed",
                                "detail": "; ".join(f"{m}: {libs.get(m, {}).get('detail', '?')}" for m in bad)}
    for section, group in by_section.items():
        rounds = rounds_of(section)
        n_meas = sum(1 for s in group if s["id"] not in missing) * rounds
        done = 0
        t0 = time.perf_counter()
        print(f"-- {section}: {len(group)} contenders x {rounds} rounds", file=sys.stderr, flush=True)
        for rnd in range(rounds):
            k = (rnd * 7) % len(group)
            for s in group[k:] + group[:k]:
                if s["id"] in missing:
                    if rnd == 0:
                        s["rounds"].append(missing[s["id"]])
                    continue
                res = run_spec(s, cfg)
                s["rounds"].append(res)
                done += 1
                print(f"  [{done:3d}/{n_meas}] round {rnd + 1}: {s['label'][:44]:<44} x{s['tasks']:<4} "
                      f"{_size(s['size']):>7} {_shown(s, res)}", file=sys.stderr, flush=True)
        print(f"   ({section}: {n_meas} measurements in {time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)


def _size(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


# ==========================================================================
# Probe (in a child: a broken import cannot take the harness down), machine.
# ==========================================================================

PROBE = r"""
import importlib, json, sys
from importlib import metadata
mods = json.loads(sys.argv[1])
out = {}
for m in mods:
    try:
        importlib.import_module(m)
        try:
            ver = metadata.version(m.split(".")[0])
        except Exception:
            ver = "?"
        out[m] = {"ok": True, "version": ver}
    except Exception as e:
        out[m] = {"ok": False, "detail": f"{type(e).__name__}: {e}"}
try:
    import ringlet
    out["ringlet.backend"] = ringlet.backend()
    out["ringlet.file"] = ringlet.__file__
except Exception as e:
    out["ringlet.backend"] = None
print("RESULT " + json.dumps(out))
"""


def probe_libs():
    mods = sorted({m for c in CONTENDERS for m in c[4]} | {"aiofiles", "matplotlib"})
    try:
        p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(mods)],
                           capture_output=True, text=True, timeout=120)
        res = _last_result(p.stdout)
    except subprocess.TimeoutExpired:
        res = None
    if res is None:
        res = {m: {"ok": False, "detail": "import probe crashed"} for m in mods}
    return res


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
    fio = shutil.which("fio")
    fio_ver = None
    if fio:
        try:
            fio_ver = subprocess.run([fio, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / (1 << 20):.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        commit = subprocess.run(["git", "-C", here, "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {
        "kernel": platform.release(),
        "commit": commit,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": mem,
        "python": sys.version.split()[0] + " (" + sys.executable + ")",
        "ringlet_backend": libs.get("ringlet.backend"),
        "ringlet_file": libs.get("ringlet.file"),
        "fio": fio_ver or "fio not installed",
        "versions": {m: v.get("version") for m, v in libs.items() if isinstance(v, dict) and v.get("ok")},
        "loadavg_start": os.getloadavg(),
    }


# ==========================================================================
# Test files.
# ==========================================================================

def make_small_files(directory: str, nfiles: int, size: int = 4096) -> float:
    t = time.perf_counter()
    os.makedirs(directory, exist_ok=True)
    for p in W.file_paths(directory, nfiles):
        with open(p, "wb") as f:
            f.write(os.urandom(size))
    os.sync()
    return time.perf_counter() - t


# ==========================================================================
# main
# ==========================================================================

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return W.worker_main(argv[1])

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller files, 2 rounds (sweeps 1), 0.3 s per measurement, fewer sweep points")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    help="output directory (default: results/ next to this script)")
    ap.add_argument("--dir", default=None, help="where to create the temp test files (default /var/tmp)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS))
    ap.add_argument("--size-mib", type=int, default=None, help="the read test file (256, quick 32)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per section (5, quick 2)")
    ap.add_argument("--sweep-rounds", type=int, default=None, help="rounds per sweep (3, quick 1)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per measurement (1.0, quick 0.3)")
    ap.add_argument("--fio-runtime", type=float, default=None, help="fio --runtime seconds (3, quick 1)")
    ap.add_argument("--mem-ops", type=int, default=100_000, help="reads in flight at once (point 5)")
    ap.add_argument("--only", default=None,
                    help="reads section: regex on contender label/key; sync, ringlet and pread_many always run")
    a = ap.parse_args(argv)

    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    for s in sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}")
    q = a.quick
    size_mib = a.size_mib or (32 if q else 256)
    cfg = {
        "quick": q,
        "sections": sections,
        "file_mib": size_mib,
        "rounds": a.rounds or (2 if q else 5),
        "sweep_rounds": a.sweep_rounds or (1 if q else 3),
        "duration": a.duration or (0.3 if q else 1.0),
        "fio_runtime": a.fio_runtime or (1 if q else 3),
        "copy_mib": [64] if q else [256, 1024],
        "nfiles": 10_000,
        "mem_ops": a.mem_ops,
        "sweep_tasks": list(SWEEP_TASKS_QUICK if q else SWEEP_TASKS),
        "sweep_sizes": list(SWEEP_SIZES_QUICK if q else SWEEP_SIZES),
        "sweep_direct": list(SWEEP_DIRECT_QUICK if q else SWEEP_DIRECT),
        "block": W.BLOCK, "offsets": W.N_OFFSETS, "seed": W.SEED, "batch": W.BATCH,
    }
    cfg["warmup"] = round(min(0.2, cfg["duration"] / 3), 3)

    libs = probe_libs()
    info = machine_info(libs)
    print(f"machine: Linux {info['kernel']} | {info['cpu']} x {info['cpus']} | {info['memory']} | "
          f"Python {info['python']} | load average {info['loadavg_start'][0]:.2f}")
    print(f"ringlet: {info['ringlet_backend'] or 'not importable'} ({info['ringlet_file']})")
    print("versions: " + (", ".join(f"{k} {v}" for k, v in sorted(info["versions"].items())) or "—")
          + f"; {info['fio']}")

    base = a.dir or ("/var/tmp" if os.path.isdir("/var/tmp") else None)
    tmpdir = tempfile.mkdtemp(prefix="ringlet-bench-", dir=base)
    t_all = time.perf_counter()
    memory = None
    specs: list = []
    try:
        if {"reads", "direct", "sweep"} & set(sections):
            cfg["path"] = os.path.join(tmpdir, "reads.dat")
            t = M.make_file(cfg["path"], size_mib * MiB)
            print(f"test file: {cfg['path']} ({size_mib} MiB, made and cached in {t:.1f} s)")
            reason = M.direct_refusal(cfg["path"])
            cfg["direct_ok"] = reason is None
            cfg["direct_skip"] = reason
            if reason and ({"direct", "sweep"} & set(sections)):
                print(f"S4 and the O_DIRECT sweep are skipped: {reason}")
        if {"copy", "copy_fresh"} & set(sections):
            cfg["copy_srcs"] = []
            for mib in cfg["copy_mib"]:
                src = os.path.join(tmpdir, f"copy-{mib}.dat")
                t = M.make_file(src, mib * MiB)
                cfg["copy_srcs"].append(src)
                print(f"copy source: {src} ({mib} MiB, made and cached in {t:.1f} s)")
        if "files" in sections:
            cfg["files_dir"] = os.path.join(tmpdir, "files")
            t = make_small_files(cfg["files_dir"], cfg["nfiles"])
            print(f"small files: {cfg['nfiles']:,} x 4 KiB in {cfg['files_dir']} (made in {t:.1f} s)")

        specs = build_specs(sections, cfg, a)
        run_sections(specs, libs, lambda s: cfg["sweep_rounds"] if s.startswith("sweep") else cfg["rounds"], cfg)
        if "memory" in sections:
            print(f"-- memory: {cfg['mem_ops']:,} reads in flight at once", file=sys.stderr, flush=True)
            if libs.get("ringlet", {}).get("ok"):
                memory = run_worker({"kind": "memory", "n": cfg["mem_ops"], "size": 8},
                                    timeout=120 + cfg["mem_ops"] / 1000)
            else:
                memory = {"status": "not installed", "detail": libs.get("ringlet", {}).get("detail", "")}
            print(f"   {memory.get('status')}: {memory.get('value', 0):.0f} B per op beyond the data",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    cfg["total_s"] = time.perf_counter() - t_all

    import _report as R
    R.aggregate(specs)
    report = R.build(info, cfg, specs, memory)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(report["markdown"])
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"machine": info, "config": cfg, "goals": report["goals"], "findings": report["findings"],
                   "memory": memory, "measurements": specs,
                   "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f, indent=1, default=str)
    print()
    print(report["markdown"])
    for msg in R.charts(specs, report, info, a.out):
        print(msg)
    print(f"results: {os.path.join(a.out, 'results.md')}, {os.path.join(a.out, 'results.json')} "
          f"({cfg['total_s']:.0f} s in all)")

    wrong = [s for s in specs for x in s["rounds"] if x.get("status") == "WRONG DATA"]
    if memory and memory.get("status") == "WRONG DATA":
        wrong.append({"label": "100,000 reads in flight", "tasks": cfg["mem_ops"]})
    if wrong:
        print("ERROR: some contenders returned WRONG DATA: "
              + ", ".join(sorted({f"{s['label']} x{s['tasks']}" for s in wrong})), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
