"""The reporting side of benchmarks/run.py: medians, goals, Markdown, charts."""

from __future__ import annotations

import os
import statistics

MiB = 1 << 20

# Families whose variants are collapsed to their best in the S1-S3 table.
BEST_OF = {"caio": "caio linux_uring"}
COLORS = {"ringlet": "#d62728", "sync": "#7f7f7f", "baseline": "#bcbd22", "caio": "#1f77b4",
          "aiofiles": "#2ca02c", "threads": "#9467bd", "anyio": "#ff7f0e", "aiofile": "#17becf",
          "fio": "#8c564b"}


def aggregate(rows):
    """Median over the rounds that succeeded of each figure."""
    for r in rows:
        oks = [x for x in r["rounds"] if x.get("status") == "ok"]
        if oks:
            r["status"] = "ok" if len(oks) == len(r["rounds"]) else f"ok ({len(oks)}/{len(r['rounds'])} rounds)"
            r["value"] = statistics.median(x["value"] for x in oks)
            for k in ("p50_us", "p99_us", "ns_per_op", "cpu_ns_per_op"):
                vals = [x[k] for x in oks if x.get(k) is not None]
                r[k] = statistics.median(vals) if vals else None
            vals = [x["value"] for x in oks]
            r["spread_pct"] = 100.0 * (max(vals) - min(vals)) / r["value"] if r["value"] else 0.0
        else:
            first = r["rounds"][0] if r["rounds"] else {"status": "not run"}
            r["status"] = first.get("status", "?")
            r["detail"] = first.get("detail", "")
            r["value"] = None
    return rows


def _find(rows, section, key, tasks=None, size=None):
    for r in rows:
        if r["section"] == section and r["key"] == key and (tasks is None or r["tasks"] == tasks) \
                and (size is None or r["size"] == size):
            return r
    return None


def _best(rows, section, family, tasks):
    cands = [r for r in rows if r["section"] == section and r["family"] == family and r["tasks"] == tasks]
    good = [r for r in cands if r["value"] is not None]
    if good:
        return max(good, key=lambda r: r["value"])
    return cands[0] if cands else None


def _size(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def _copy_table(L, rows, section, title):
    c = [r for r in rows if r["section"] == section]
    if not c:
        return
    L.append(f"\n## S5: {title} (MB/s = 10⁶ bytes/s)\n")
    L.append("| contender | size | MB/s (median) | vs ringlet | spread |")
    L.append("|---|---:|---:|---:|---:|")
    for r in sorted(c, key=lambda r: r["size"]):
        mine = _find(rows, section, "ringlet", size=r["size"])
        if r["value"] is None:
            L.append(f"| {r['label']} | {_size(r['size'])} | {r['status']}: {r.get('detail', '')} | | |")
        else:
            L.append(f"| {r['label']} | {_size(r['size'])} | {fmt(r['value'])} | "
                     f"{fmt_ratio(ratio(r['value'], mine and mine.get('value')))} | ±{r['spread_pct'] / 2:.0f}% |")
    if section == "copy":
        L.append("\nThe source is written, fsynced and re-read into the page cache right before each copy; each "
                 "copy's destination is new (deleted after the copy, outside the timing). Time: until the copy "
                 "call returns (no fsync).")
    else:
        L.append("\nThe source is rewritten with new random bytes and fsynced right before each copy (outside "
                 "the timing); otherwise as above.")


def fmt(v, unit=""):
    if v is None:
        return "—"
    s = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
    return f"{s} {unit}".strip()


def ratio(a, b):
    return a / b if a and b else None


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


# ==========================================================================
# Goals: issue 3, point 3.
# ==========================================================================

def goals(rows, cfg):
    """One entry per goal: ringlet's row, the reference row, the ratio needed."""
    G = []

    def add(sid, scenario, mine, ref_label, ref, need, short):
        val, rval = (mine or {}).get("value"), (ref or {}).get("value")
        x = ratio(val, rval)
        if x is None:
            why = []
            for who, row in (("ringlet", mine), (ref_label, ref)):
                if row is None:
                    why.append(f"{who}: not run")
                elif row.get("value") is None:
                    why.append(f"{who}: {row.get('status')}")
            met = "n/a (" + "; ".join(why) + ")"
        else:
            met = "yes" if x >= need else "no"
        G.append({"id": sid, "scenario": scenario, "ringlet_label": (mine or {}).get("label"),
                  "ringlet": val, "unit": (mine or ref or {}).get("unit", ""), "ref_label": ref_label,
                  "ref": rval, "ratio": x, "need": need, "met": met, "short": short})

    s1, s2 = _find(rows, "reads", "ringlet", 1), _find(rows, "reads", "ringlet", 64)
    sync = _find(rows, "reads", "sync", 1)
    c1, c64 = _best(rows, "reads", "caio", 1), _best(rows, "reads", "caio", 64)

    def caio_label(c, t):
        variant = c["label"][len("caio linux_uring"):].strip() if c and c.get("value") else "?"
        return f"caio linux_uring, best of SQPOLL on/off/deferred ({variant}), {t} task{'s' if t > 1 else ''}"
    if s1 or sync:
        add("S1", "one task awaiting f.pread", s1, caio_label(c1, 1), c1, 1.5, "f.pread x1 vs caio best")
        add("S1", "one task awaiting f.pread", s1, "sync os.pread loop", sync, 0.5, "f.pread x1 vs sync loop")
    if s2 or sync:
        add("S2", "64 tasks awaiting f.pread", s2, caio_label(c64, 64), c64, 1.4, "f.pread x64 vs caio best")
        add("S2", "64 tasks awaiting f.pread", s2, "sync os.pread loop", sync, 0.45, "f.pread x64 vs sync loop")
        add("S2", "64 tasks awaiting f.pread", s2, "aiofiles seek+read, 64 tasks",
            _find(rows, "reads", "aiofiles", 64), 15, "f.pread x64 vs aiofiles x64")
    s3 = _find(rows, "reads", "ringlet_many", 1)
    if s3:
        add("S3", "pread_many of 64 reads per await", s3, "sync os.pread loop, 64 reads per step",
            _find(rows, "reads", "sync_many", 1), 1.0, "pread_many vs sync loop")
    if "direct" in cfg["sections"]:
        if cfg.get("direct_ok"):
            s4 = _find(rows, "direct", "ringlet_direct")
            add("S4", "O_DIRECT reads, 64 tasks", s4, "fio io_uring, iodepth 64", _find(rows, "direct", "fio"), 0.85, "O_DIRECT x64 vs fio qd64")
            add("S4", "O_DIRECT reads, 64 tasks", s4, "sync O_DIRECT loop", _find(rows, "direct", "sync_direct"), 5, "O_DIRECT x64 vs sync O_DIRECT")
        else:
            G.append({"id": "S4", "scenario": "O_DIRECT reads, 64 tasks", "ringlet": None, "ref": None,
                      "ratio": None, "need": None, "unit": "ops/s", "ref_label": "fio, sync O_DIRECT loop",
                      "met": f"skipped: {cfg.get('direct_skip')}"})
    for size in sorted({r["size"] for r in rows if r["section"] == "copy"}):
        mine = _find(rows, "copy", "ringlet", size=size)
        add("S5", f"copy_file of {_size(size)}", mine, "shutil.copyfile", _find(rows, "copy", "shutil", size=size), 0.9,
            f"copy {_size(size)} vs shutil")
        add("S5", f"copy_file of {_size(size)}", mine, "aiofiles chunked copy (1 MiB)",
            _find(rows, "copy", "aiofiles", size=size), 3, f"copy {_size(size)} vs aiofiles")
    for size in sorted({r["size"] for r in rows if r["section"] == "copy_fresh"}):
        add("S5", f"copy_file of {_size(size)} just written", _find(rows, "copy_fresh", "ringlet", size=size),
            "shutil.copyfile, same source just written", _find(rows, "copy_fresh", "shutil", size=size), 1.0,
            f"fresh copy {_size(size)} vs shutil")
    if any(r["section"] == "files" for r in rows):
        mine = _find(rows, "files", "ringlet")
        n = f"{cfg['nfiles']:,}"
        add("S6", f"read_file of {n} files of 4 KiB, 64 tasks", mine, "sync open/read/close loop",
            _find(rows, "files", "sync"), 0.7, "read_file x64 vs sync loop")
        add("S6", f"read_file of {n} files of 4 KiB, 64 tasks", mine, "aiofiles, 64 tasks",
            _find(rows, "files", "aiofiles"), 10, "read_file x64 vs aiofiles x64")
    return G


# ==========================================================================
# Findings: point 4 in words.
# ==========================================================================

def findings(rows, cfg):
    F = {}
    pts = [r for r in rows if r["section"] == "sweep_tasks" and r.get("ns_per_op")]
    if len(pts) >= 2:
        pts.sort(key=lambda r: r["tasks"])
        first, last = pts[0], pts[-1]
        x = last["ns_per_op"] / first["ns_per_op"]
        worst = max(pts, key=lambda r: r["ns_per_op"])
        verdict = ("falls" if x <= 0.85 else "stays flat" if x <= 1.2 else "grows")
        F["tasks"] = (f"Cached 4 KiB reads: the cost per op {verdict} as tasks grow: "
                      f"{first['ns_per_op']:,.0f} ns/op with {_tasks(first['tasks'])}, "
                      f"{last['ns_per_op']:,.0f} ns/op with {_tasks(last['tasks'])} ({x:.2f}×); the highest is "
                      f"{worst['ns_per_op']:,.0f} ns/op at {_tasks(worst['tasks'])}. "
                      "(Cached reads complete inline, so the kernel sees one in flight whatever the task count.)")
        F["tasks_verdict"] = verdict
    dp = sorted([r for r in rows if r["section"] == "sweep_direct" and r["key"] == "ringlet_direct"
                 and r.get("cpu_ns_per_op")], key=lambda r: r["tasks"])
    if len(dp) >= 2:
        first, last = dp[0], dp[-1]
        x = last["cpu_ns_per_op"] / first["cpu_ns_per_op"]
        verdict = ("falls" if x <= 0.85 else "stays flat" if x <= 1.2 else "grows")
        vs = []
        for r in dp:
            f = _find(rows, "sweep_direct", "fio", tasks=r["tasks"])
            if f and f.get("value") and r.get("value"):
                vs.append(f"{r['tasks']:,}: {r['value'] / f['value']:.2f}×")
        F["direct"] = (f"O_DIRECT reads (really in flight): ringlet's CPU time per op {verdict} as the number in "
                       f"flight grows: {first['cpu_ns_per_op']:,.0f} ns at {first['tasks']}, "
                       f"{last['cpu_ns_per_op']:,.0f} ns at {last['tasks']:,} ({x:.2f}×). ops/s vs fio at the same "
                       "depth: " + (", ".join(vs) or "—") + ".")
        F["direct_verdict"] = verdict
    sz = sorted({r["size"] for r in rows if r["section"] == "sweep_sizes"})
    if sz:
        big = sz[-1]
        mine, ref = _find(rows, "sweep_sizes", "ringlet", size=big), _find(rows, "sweep_sizes", "sync", size=big)
        x = ratio(mine and mine.get("value"), ref and ref.get("value"))
        if x is not None:
            mb = mine["value"] * big / 1e6
            F["sizes"] = (f"Large reads: at {_size(big)} one ringlet task reads {mb:,.0f} MB/s, "
                          f"{x:.2f}× the sync loop's {ref['value'] * big / 1e6:,.0f} MB/s: it "
                          + ("reaches" if x >= 0.9 else "does not reach") + " the sync loop's bandwidth "
                          "(within 10%). " + "; ".join(
                              f"{_size(s)}: {ratio(_v(rows, 'ringlet', s), _v(rows, 'sync', s)) or 0:.2f}×"
                              for s in sz) + ".")
            F["sizes_reach"] = x >= 0.9
    return F


def _tasks(n):
    return f"{n:,} task" + ("s" if n != 1 else "")


def _v(rows, key, size):
    r = _find(rows, "sweep_sizes", key, size=size)
    return r and r.get("value")


# ==========================================================================
# Markdown.
# ==========================================================================

def _row_table(L, rows, unit_col, with_lat=True, ref=None, ref_name="ringlet", extra=None):
    head = f"| contender | tasks | {unit_col} (median) |"
    sep = "|---|---:|---:|"
    if with_lat:
        head += " p50 µs | p99 µs |"
        sep += "---:|---:|"
    head += f" vs {ref_name} | spread |"
    sep += "---:|---:|"
    L.append(head)
    L.append(sep)
    for r in rows:
        if r.get("value") is None:
            L.append(f"| {r['label']} | {r['tasks']} | {r['status']}: {r.get('detail', '')} |"
                     + (" | |" if with_lat else "") + " | |")
            continue
        note = "" if r["status"] == "ok" else f" ({r['status']})"
        line = f"| {r['label']}{note} | {r['tasks']} | {fmt(r['value'])} |"
        if with_lat:
            line += f" {fmt(r.get('p50_us'))} | {fmt(r.get('p99_us'))} |"
        line += f" {fmt_ratio(ratio(r['value'], ref))} | ±{r['spread_pct'] / 2:.0f}% |"
        L.append(line)


def reads_table(rows):
    """The S1-S3 rows, BEST_OF families collapsed to their best per task count."""
    out, seen = [], set()
    reads = [r for r in rows if r["section"] == "reads"]
    for r in reads:
        fam = r["family"]
        if fam in BEST_OF:
            if (fam, r["tasks"]) in seen:
                continue
            seen.add((fam, r["tasks"]))
            best = _best(rows, "reads", fam, r["tasks"])
            if best.get("value") is not None:
                variant = best["label"][len(BEST_OF[fam]):].strip()
                out.append(dict(best, label=f"{BEST_OF[fam]} (best: {variant})"))
            else:
                out.append(dict(best, label=BEST_OF[fam]))
        else:
            out.append(r)
    return out


def build(info, cfg, rows, memory):
    G = goals(rows, cfg)
    F = findings(rows, cfg)
    L = []
    L.append("# ringlet benchmarks: issue 3, points 3, 4 and 5\n")
    L.append(f"- machine: Linux `{info['kernel']}`; CPU: {info['cpu']} × {info['cpus']}; memory {info['memory']}")
    L.append(f"- python: {info['python']}")
    L.append(f"- ringlet backend: {info['ringlet_backend'] or 'ringlet not importable'}; "
             f"source tree: {info.get('commit') or '?'}; imported from {info.get('ringlet_file')}")
    vers = ", ".join(f"{k} {v}" for k, v in sorted(info["versions"].items()))
    L.append(f"- versions: {vers or '—'}; {info['fio']}")
    la0, la1 = info["loadavg_start"], info.get("loadavg_end") or info["loadavg_start"]
    L.append(f"- load average (1 min) at start {la0[0]:.2f}, at end {la1[0]:.2f}; whole run {cfg.get('total_s', 0):.0f} s")
    L.append(f"- method: each measurement in a fresh process and event loop; {cfg['rounds']} rounds per scenario "
             f"({cfg['sweep_rounds']} per sweep point), the order rotated each round; the median over rounds. "
             f"Reads: {cfg['duration']} s timed after a {cfg['warmup']} s warm-up, 4 KiB at random 4 KiB-aligned "
             f"offsets of a {cfg['file_mib']} MiB page-cached file unless said. fio: --runtime={cfg['fio_runtime']:g}.")
    L.append("")
    L.append("## Goals (issue 3, point 3): ratios from this run\n")
    L.append("| | scenario | ringlet | compared with | its figure | ratio | goal | goal met? |")
    L.append("|---|---|---:|---|---:|---:|---:|---|")
    for g in G:
        unit = g.get("unit", "")
        L.append(f"| {g['id']} | {g['scenario']} | {fmt(g['ringlet'], unit)} | {g['ref_label']} | "
                 f"{fmt(g['ref'], unit)} | {fmt_ratio(g['ratio'])} | "
                 f"{'—' if g['need'] is None else '≥ ' + format(g['need'], 'g') + '×'} | {g['met']} |")
    met = sum(1 for g in G if g["met"] == "yes")
    L.append("")
    L.append(f"{met} of {len(G)} goals met in this run. A ratio is ringlet's median ÷ the other's median, "
             "both from the same run. \"goal met?\" reports; nothing fails on it.")

    sync = _find(rows, "reads", "sync", 1)
    t = reads_table(rows)
    if t:
        L.append("\n## S1–S3: 4 KiB random reads of a page-cached file\n")
        head = "| contender | tasks | ops/s (median) | p50 µs | p99 µs | CPU ns/op | vs ringlet (same tasks) | vs sync | spread |"
        L.append(head)
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        ref = {r["tasks"]: r["value"] for r in rows if r["section"] == "reads" and r["key"] == "ringlet"}
        for r in t:
            if r["value"] is None:
                L.append(f"| {r['label']} | {r['tasks']} | {r['status']} | | | | | | |")
                continue
            note = "" if r["status"] == "ok" else f" ({r['status']})"
            L.append(f"| {r['label']}{note} | {r['tasks']} | {fmt(r['value'])} | {fmt(r.get('p50_us'))} | "
                     f"{fmt(r.get('p99_us'))} | {fmt(r.get('cpu_ns_per_op'))} | "
                     f"{fmt_ratio(ratio(r['value'], ref.get(r['tasks'])))} | "
                     f"{fmt_ratio(ratio(r['value'], sync and sync['value']))} | ±{r['spread_pct'] / 2:.0f}% |")
        L.append("")
        L.append("pread_many counts 64 reads per await; its latency is per await (64 reads). With 64 tasks, "
                 "latency includes waiting behind the other 63. CPU ns/op: the process's CPU time (all threads) "
                 "÷ ops. spread = (max − min) / 2 over rounds, in % of the median.")

    if "direct" in cfg["sections"]:
        L.append("\n## S4: O_DIRECT 4 KiB random reads, same file\n")
        if not cfg.get("direct_ok"):
            L.append(f"Skipped: {cfg.get('direct_skip')}")
        else:
            d = [r for r in rows if r["section"] == "direct"]
            mine = _find(rows, "direct", "ringlet_direct")
            _row_table(L, d, "ops/s", ref=mine and mine.get("value"))
            fio = _find(rows, "direct", "fio")
            cmd = next((x.get("cmd") for x in (fio or {}).get("rounds", []) if x.get("cmd")), None)
            if cmd:
                L.append(f"\nfio: `{cmd}`")

    for section, title in (("copy", "copying a page-cached file"),
                           ("copy_fresh", "copying a file right after writing (and syncing) it")):
        _copy_table(L, rows, section, title)

    fl = [r for r in rows if r["section"] == "files"]
    if fl:
        L.append(f"\n## S6: reading {cfg['nfiles']:,} files of 4 KiB, each whole\n")
        mine = _find(rows, "files", "ringlet")
        _row_table(L, fl, "files/s", with_lat=False, ref=mine and mine.get("value"))

    if any(r["section"].startswith("sweep") for r in rows):
        L.append("\n## Scaling (issue 3, point 4)\n")
        for k in ("tasks", "direct", "sizes"):
            if k in F:
                L.append(f"- {F[k]}")
        st = sorted([r for r in rows if r["section"] == "sweep_tasks"], key=lambda r: r["tasks"])
        if st:
            L.append("\n### Cached 4 KiB reads, ringlet f.pread, by number of tasks\n")
            L.append("| tasks | ops/s | ns/op (wall) | CPU ns/op | p50 µs | p99 µs |")
            L.append("|---:|---:|---:|---:|---:|---:|")
            for r in st:
                L.append(f"| {r['tasks']:,} | {fmt(r['value'])} | {fmt(r.get('ns_per_op'))} | "
                         f"{fmt(r.get('cpu_ns_per_op'))} | {fmt(r.get('p50_us'))} | {fmt(r.get('p99_us'))} |"
                         if r["value"] else f"| {r['tasks']:,} | {r['status']} | | | | |")
            if sync and sync.get("value"):
                L.append(f"\n(the sync os.pread loop: {1e9 / sync['value']:,.0f} ns/op)")
        sd = sorted([r for r in rows if r["section"] == "sweep_direct"], key=lambda r: (r["tasks"], r["key"]))
        if sd:
            L.append("\n### O_DIRECT 4 KiB reads by number in flight: ringlet tasks vs fio iodepth\n")
            L.append("| in flight | ringlet ops/s | ringlet CPU ns/op | ringlet p99 µs | fio ops/s | fio CPU ns/op | "
                     "fio p99 µs | ringlet ÷ fio |")
            L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
            for t_ in sorted({r["tasks"] for r in sd}):
                m, f = _find(rows, "sweep_direct", "ringlet_direct", tasks=t_), _find(rows, "sweep_direct", "fio", tasks=t_)
                m, f = m or {}, f or {}
                L.append(f"| {t_:,} | {fmt(m.get('value')) if m.get('value') else m.get('status', '—')} | "
                         f"{fmt(m.get('cpu_ns_per_op'))} | {fmt(m.get('p99_us'))} | "
                         f"{fmt(f.get('value')) if f.get('value') else f.get('status', '—')} | "
                         f"{fmt(f.get('cpu_ns_per_op'))} | {fmt(f.get('p99_us'))} | "
                         f"{fmt_ratio(ratio(m.get('value'), f.get('value')))} |")
        ss = sorted({r["size"] for r in rows if r["section"] == "sweep_sizes"})
        if ss:
            L.append("\n### Read size, one task, page-cached: MB/s\n")
            L.append("| size | ringlet MB/s | sync MB/s | ringlet ÷ sync | ringlet p50 µs | sync p50 µs |")
            L.append("|---:|---:|---:|---:|---:|---:|")
            for s in ss:
                m, y = _find(rows, "sweep_sizes", "ringlet", size=s) or {}, _find(rows, "sweep_sizes", "sync", size=s) or {}
                mv = m.get("value") and m["value"] * s / 1e6
                yv = y.get("value") and y["value"] * s / 1e6
                L.append(f"| {_size(s)} | {fmt(mv)} | {fmt(yv)} | {fmt_ratio(ratio(mv, yv))} | "
                         f"{fmt(m.get('p50_us'))} | {fmt(y.get('p50_us'))} |")

    if memory is not None:
        L.append("\n## Memory (issue 3, point 5): reads in flight at once\n")
        L.extend(memory_lines(memory, cfg))

    variants = [r for r in rows if r["section"] == "reads" and r["family"] in BEST_OF]
    if variants:
        L.append("\n## caio: all variants (its best per task count counts above)\n")
        L.append("| variant | tasks | ops/s (median) | p50 µs | p99 µs |")
        L.append("|---|---:|---:|---:|---:|")
        for r in variants:
            if r["value"] is None:
                L.append(f"| {r['label']} | {r['tasks']} | {r['status']} | | |")
            else:
                L.append(f"| {r['label']} | {r['tasks']} | {fmt(r['value'])} | {fmt(r['p50_us'])} | {fmt(r['p99_us'])} |")
    stats = [(r, x["engine_stats"]) for r in rows for x in r["rounds"][-1:]
             if isinstance(x.get("engine_stats"), dict) and r["section"] in ("reads", "direct")]
    if stats:
        L.append("\n## ringlet engine.stats() after the last round (whole worker: checks + warm-up + timed run)\n")
        L.append("| contender | tasks | completed | inline % | enter_calls / op | peak_in_flight |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for r, st in stats:
            done = st.get("completed") or 0
            inl, ent = st.get("completed_inline"), st.get("enter_calls")
            L.append(f"| {r['label']} | {r['tasks']} | {done:,} | "
                     f"{(100.0 * inl / done) if done and inl is not None else float('nan'):.1f} | "
                     f"{(ent / done) if done and ent is not None else float('nan'):.3f} | "
                     f"{st.get('peak_in_flight', '?')} |")
    problems = [r for r in rows if r["value"] is None and r.get("detail")]
    if problems:
        L.append("\n## not measured\n")
        seen = set()
        for r in problems:
            k = (r["label"], r["status"], r["detail"])
            if k not in seen:
                seen.add(k)
                L.append(f"- {r['label']}: {r['status']} — {r['detail']}")
    return {"markdown": "\n".join(L) + "\n", "goals": G, "findings": F}


def memory_lines(m, cfg):
    L = []
    if m.get("status") not in ("ok", "WRONG DATA"):
        return [f"Not measured: {m.get('status')} — {m.get('detail', '')}"]
    n, tr, pl = m["n"], m["traced"], m["plain"]
    ok = "yes" if m["status"] == "ok" else "NO"
    L.append(f"{n:,} `engine.read(pipe, {m['size']})` futures are created at once on one pipe (1 MiB capacity), "
             f"all pending; then the pipe is fed {n:,} records of {m['size']} bytes, each carrying its number, and "
             "every read must return exactly one whole record, each number exactly once.\n")
    L.append("| | |")
    L.append("|---|---:|")
    L.append(f"| reads pending after submitting | {pl['pending_after_submit']:,} (engine in_flight {pl['in_flight']:,}) |")
    L.append(f"| all completed correctly | {ok} (peak_in_flight {pl.get('peak_in_flight', '?'):,}) |")
    L.append(f"| time to submit {n:,} / to complete them once fed | {pl['submit_s'] * 1e3:,.0f} ms / "
             f"{pl['complete_s'] * 1e3:,.0f} ms |")
    L.append(f"| Python heap per op in flight (tracemalloc) | {tr['bytes_per_op']:,.0f} B |")
    L.append(f"| of which the data (the bytes object the kernel fills) | {tr['data_bytes_per_op']:,.0f} B |")
    goal_ok = "yes" if tr["beyond_data_per_op"] <= 512 else "no"
    L.append(f"| **beyond the data** | **{tr['beyond_data_per_op']:,.0f} B** (goal ≤ 512 B: {goal_ok}) |")
    L.append(f"| process RSS growth per op (no tracemalloc; includes the data and allocator rounding) | "
             f"{pl['rss_per_op']:,.0f} B |")
    if pl.get("kernel_io_kiocb_delta") is not None:
        L.append(f"| kernel: io_kiocb slab objects added (system-wide, 256 B each) | {pl['kernel_io_kiocb_delta']:,} |")
    L.append("")
    L.append("Python allocations per op, by size (tracemalloc snapshot, allocations made ≥ n/2 times):\n")
    L.append("| bytes | count | what |")
    L.append("|---:|---:|---|")
    for b in tr["breakdown"]:
        L.append(f"| {b['size']} | {b['count']:,} | {b['what']} |")
    L.append("\nHow: a fresh process; one warm-up read; the list for the futures is allocated before the "
             "baseline; tracemalloc.start(), then the reads are submitted and tracemalloc's current traced "
             f"memory less the baseline is divided by {n:,}. tracemalloc sees Python's allocators (PyObject_Malloc, "
             "PyMem_*): the Op, the future and its context, the data. The kernel's own request memory "
             "(io_kiocb, poll entries) is not Python's and is shown apart where /proc/slabinfo is readable. "
             "A second pass without tracemalloc gives the timings and RSS.")
    return L


# ==========================================================================
# Charts.
# ==========================================================================

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _title(info):
    return (f"{info['cpu']} × {info['cpus']}, Linux {info['kernel']}, Python {info['python'].split()[0]}; "
            "medians over rounds, one run")


def charts(rows, report, info, outdir):
    try:
        plt = _plt()
    except Exception as e:  # noqa: BLE001
        return [f"matplotlib not importable ({type(e).__name__}); no charts written"]
    msgs = []
    for name, fn in (("reads.png", chart_reads), ("sweep.png", chart_sweep), ("scenarios.png", chart_goals)):
        path = os.path.join(outdir, name)
        try:
            if fn(plt, rows, report, info, path):
                msgs.append(f"chart written to {path}")
        except Exception as e:  # noqa: BLE001 - a chart must not lose the results
            msgs.append(f"{name}: not written ({type(e).__name__}: {e})")
    return msgs


def chart_reads(plt, rows, report, info, path):
    t = [r for r in reads_table(rows) if r.get("value")]
    if not t:
        return False
    labels = [f"{r['label']}  [{r['tasks']}]" for r in t]
    vals = [r["value"] for r in t]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(t) + 1.6))
    y = list(range(len(t)))
    ax.barh(y, vals, color=[COLORS.get(r["family"], "#333333") for r in t])
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ops/s (median over rounds, log scale) — 4 KiB random reads, page cache  [tasks]")
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:,.0f}", va="center", fontsize=7)
    ax.set_xlim(right=max(vals) * 4)
    ax.set_title(_title(info), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def chart_sweep(plt, rows, report, info, path):
    st = sorted([r for r in rows if r["section"] == "sweep_tasks" and r.get("value")], key=lambda r: r["tasks"])
    sd = [r for r in rows if r["section"] == "sweep_direct" and r.get("value")]
    ss = [r for r in rows if r["section"] == "sweep_sizes" and r.get("value")]
    panels = [p for p in (st, sd, ss) if p]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    axes = list(axes[0])
    if st:
        ax = axes.pop(0)
        xs = [r["tasks"] for r in st]
        ax.plot(xs, [r["ns_per_op"] for r in st], "o-", color=COLORS["ringlet"], label="ringlet: wall ns/op")
        ax.plot(xs, [r["cpu_ns_per_op"] for r in st], "s--", color=COLORS["ringlet"], alpha=0.5,
                label="ringlet: CPU ns/op")
        sync = _find(rows, "reads", "sync", 1)
        if sync and sync.get("value"):
            ax.axhline(1e9 / sync["value"], color=COLORS["sync"], ls=":", label="sync os.pread loop")
        _panel(ax, xs, [f"{x:,}" for x in xs], "tasks awaiting f.pread", "ns per op",
               "cached 4 KiB reads: cost per op")
    if sd:
        ax = axes.pop(0)
        for key, lab in (("ringlet_direct", "ringlet direct=True (tasks)"), ("fio", "fio io_uring (iodepth)")):
            pts = sorted([r for r in sd if r["key"] == key], key=lambda r: r["tasks"])
            ax.plot([r["tasks"] for r in pts], [r["value"] for r in pts], "o-",
                    color=COLORS["ringlet" if key != "fio" else "fio"], label=lab)
        xs = sorted({r["tasks"] for r in sd})
        _panel(ax, xs, [f"{x:,}" for x in xs], "reads in flight", "ops/s", "O_DIRECT 4 KiB random reads")
    if ss:
        ax = axes.pop(0)
        for key, lab in (("ringlet", "ringlet f.pread, 1 task"), ("sync", "sync os.pread loop")):
            pts = sorted([r for r in ss if r["key"] == key], key=lambda r: r["size"])
            ax.plot([r["size"] for r in pts], [r["value"] * r["size"] / 1e6 for r in pts], "o-",
                    color=COLORS["ringlet" if key == "ringlet" else "sync"], label=lab)
        sizes = sorted({r["size"] for r in ss})
        _panel(ax, sizes, [_size(s).replace(" ", "") for s in sizes], "read size (random offsets, page cache)",
               "MB/s", "bandwidth by read size")
    fig.suptitle(_title(info), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _panel(ax, xs, labels, xlabel, ylabel, title):
    """A log x axis with a tick at each measured point, y from 0."""
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=8)
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def chart_goals(plt, rows, report, info, path):
    G = [g for g in report["goals"] if g.get("ratio") is not None and g.get("need")]
    if not G:
        return False
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(G) + 1.6))
    y = list(range(len(G)))
    vals = [g["ratio"] / g["need"] for g in G]
    ax.barh(y, vals, color=["#2ca02c" if v >= 1 else "#d62728" for v in vals])
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{g['id']}: {g['short']} (goal ≥ {g['need']:g}×)" for g in G], fontsize=8)
    ax.invert_yaxis()
    for yi, g, v in zip(y, G, vals):
        ax.text(v, yi, f" {g['ratio']:.2f}×", va="center", fontsize=8)
    ax.set_xlim(0, max(vals + [1.0]) * 1.2)
    ax.set_xlabel("measured ratio ÷ goal ratio (≥ 1: goal met)")
    ax.set_title(_title(info), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
