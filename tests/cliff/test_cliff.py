"""python -m ringlet cliff: the async-cliff advisor."""

import os
import subprocess
import sys

import pytest

from ringlet._measure import cliff as _cliff

from conftest import child_env


def _result(where, size, c, approach, ops, seconds=1.0):
    r = _cliff.Result(where, size, c, approach, ops=ops, seconds=seconds)
    r.latencies = [0.001, 0.002, 0.003]
    return r


def test_verdicts_and_summary():
    results = []
    for c, (sync, ring, threads) in {1: (100, 50, 10), 16: (100, 400, 90), 256: (100, 500, 300)}.items():
        results += [_result("disk", 4096, c, "sync", sync), _result("disk", 4096, c, "ringlet", ring),
                    _result("disk", 4096, c, "threads", threads)]
    for c in (1, 16):
        results += [_result("cached", 1 << 20, c, "sync", 100), _result("cached", 1 << 20, c, "ringlet", 95),
                    _result("cached", 1 << 20, c, "threads", 40)]
    verdicts = {(v["where"], v["concurrency"]): v for v in _cliff.verdicts(results)}
    assert verdicts[("disk", 1)]["winner"] == "sync" and verdicts[("disk", 1)]["margin"] == 2.0
    assert verdicts[("disk", 256)]["winner"] == "ringlet"
    assert not verdicts[("cached", 1)]["clear"]
    lines = _cliff.summary(results)
    assert "cliff runs through it" in lines[0] and "from c=16" in lines[0]
    assert "no clear side" in lines[1]
    text = _cliff.report(results, {"config": {"seconds": 1.0}, "file_bytes": 1 << 20, "path": "/x",
                                   "made_file": False, "notes": []})
    assert "which side of the cliff" in text and "ringlet wins, 1.7x over threads" in text
    assert _cliff._round_robin([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 3.0, 5.0, 7.0]


@pytest.mark.timeout(180)
def test_cliff_quick_writes_table_and_png(tmp_path, require_io_uring):
    pytest.importorskip("matplotlib")
    png = tmp_path / "tmp.png"
    out = subprocess.run([sys.executable, "-m", "ringlet", "cliff", str(tmp_path), "--quick", "--plot", str(png)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=170, env=child_env())
    assert out.returncode == 0, out.stderr[-2000:]
    for word in ("ops/s", "p50", "p99", "heap/req", "syscalls/op", "threads", "which side of the cliff",
                 "sync", "ringlet", "threads", "cached 4 KiB", "cached 1 MiB"):
        assert word in out.stdout
    assert "] 36/36" in out.stderr or "done" in out.stderr  # the progress bar
    assert png.read_bytes().startswith(b"\x89PNG")
    assert not [p for p in os.listdir(tmp_path) if p.startswith("ringlet-cliff-")]  # its file is gone


def test_cliff_rejects_a_missing_path(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ringlet", "cliff", str(tmp_path / "nope"), "--quick"],
                         capture_output=True, text=True, timeout=60, env=child_env())
    assert out.returncode != 0 and "does not exist" in out.stderr


def test_import_ringlet_loads_no_measuring_code():
    """The measuring core, matplotlib and tracemalloc stay out of a plain `import ringlet`."""
    code = ("import sys, ringlet\n"
            "print(sorted(m for m in sys.modules if m.startswith(('ringlet._measure', 'matplotlib'))"
            " or m == 'tracemalloc'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
