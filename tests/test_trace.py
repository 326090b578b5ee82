"""ringlet.trace(), Timeline, ringlet.stats(), ringlet.engine_info(), `python -m ringlet info`."""

import asyncio
import os
import subprocess
import sys
import threading

import pytest

STAMPS = ("submitted", "returned", "reaped", "resolved", "resumed")


def test_trace_pending_then_inline(ringlet, require_io_uring, run, make_file, fifo):
    path, data = make_file(8192)

    async def main():
        engine = ringlet.get_engine()
        assert engine.tracer is None
        with ringlet.trace() as t:
            assert engine.tracer is not None
            async with ringlet.open(fifo, "r+b") as f:
                asyncio.get_running_loop().call_later(0.03, os.write, f.fileno(), b"late")
                got = await engine.read(f.fileno(), 16)  # f.read() waits for readiness, then reads inline
            assert await ringlet.read_file(path) == data
        assert engine.tracer is None
        return got, t

    got, t = run(main())
    assert got == b"late"
    reads = [r for r in t.records if r["op"] == "read"]
    pending = [r for r in reads if not r["inline"]]
    inline = [r for r in reads if r["inline"]]
    assert pending and inline
    p = pending[0]
    assert p["result"] == 4
    assert p["thread"] == threading.get_ident()
    assert p["submitted"] <= p["returned"] <= p["reaped"] <= p["resolved"] <= p["resumed"]
    assert p["reaped"] - p["returned"] > 10_000_000  # the writer came 30 ms later
    for r in inline:
        assert r["submitted"] <= r["reaped"] <= r["returned"]
        assert r["resumed"] is not None
    assert {"read", "open", "close"} <= {r["op"] for r in t.records}

    timeline = t.timeline()
    text = str(timeline)
    assert "pending" in text and "inline" in text and "MainThread" in text
    rows = timeline.rows()
    assert rows[0]["submitted"] == 0.0
    assert all(r["submitted"] >= 0 for r in rows)
    assert len(timeline) == len(t.records)


def test_trace_restores_and_chains_previous_tracer(ringlet, require_io_uring, run, make_file):
    path, _ = make_file(100)
    outer = []

    async def main():
        engine = ringlet.get_engine()
        engine.tracer = outer.append
        try:
            with ringlet.trace() as inner:
                await ringlet.read_file(path)
            assert engine.tracer == outer.append
            async with ringlet.trace() as second:  # async with works too
                await ringlet.read_file(path)
            return inner, second
        finally:
            engine.tracer = None

    inner, second = run(main())
    assert inner.records and second.records
    assert outer == inner.records + second.records  # the enclosing tracer saw everything


def test_trace_start_stop_and_limit(ringlet, require_io_uring, run, make_file):
    path, _ = make_file(100)

    async def main():
        t = ringlet.trace(limit=2).start()
        for _ in range(3):
            await ringlet.read_file(path)
        t.stop()
        assert ringlet.get_engine().tracer is None
        return t

    t = run(main())
    assert len(t.records) == 2 and t.dropped > 0
    assert "done" in repr(t)


def test_trace_needs_a_running_loop(ringlet):
    with pytest.raises(RuntimeError):
        with ringlet.trace():
            pass


def test_timeline_figure(ringlet, require_io_uring, run, fifo, make_file):
    pytest.importorskip("matplotlib")
    path, _ = make_file(5000)

    async def main():
        with ringlet.trace() as t:
            async with ringlet.open(fifo, "r+b") as f:
                asyncio.get_running_loop().call_later(0.01, os.write, f.fileno(), b"x")
                await f.read(1)
            await ringlet.read_file(path)
        return t

    timeline = run(main()).timeline()
    fig = timeline.figure()
    assert len(fig.axes) == 3
    png = timeline._repr_png_()
    assert png.startswith(b"\x89PNG")
    html = timeline._repr_html_()
    assert "data:image/png;base64," in html and "pending" in html
    empty = ringlet.Timeline([])
    assert "no operations" in str(empty)
    empty.figure()


def test_timeline_figure_without_matplotlib(ringlet, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    timeline = ringlet.Timeline([])
    with pytest.raises(ImportError, match="pip install matplotlib"):
        timeline.figure()
    assert timeline._repr_png_() is None
    assert "<pre" in timeline._repr_html_()


def test_stats_object(ringlet, require_io_uring, run, make_file):
    path, _ = make_file(100)

    async def main():
        before = ringlet.stats()
        await ringlet.read_file(path)
        after = ringlet.stats()
        return before, after, ringlet.get_engine().stats()

    before, after, plain = run(main())
    assert type(plain) is dict  # Engine.stats() stays a plain dict
    assert isinstance(after, ringlet.Stats) and isinstance(after, dict)
    assert set(after) == set(plain)
    diff = after - before
    assert isinstance(diff, ringlet.Stats)
    assert diff["submitted"] >= 1 and diff["completed"] == diff["completed_inline"] + diff["deferred"]
    assert repr(after).startswith("<ringlet.Stats submitted=")
    html = after._repr_html_()
    assert "<table" in html and "inline" in html and "deferred" in html and "io_uring_enter" in html
    assert 0.0 <= after.inline_fraction <= 1.0
    assert "no completions yet" in ringlet.Stats()._repr_html_()


def test_stats_needs_a_running_loop(ringlet):
    with pytest.raises(RuntimeError):
        ringlet.stats()


def test_engine_info(ringlet, require_io_uring, run):
    async def main():
        return ringlet.engine_info()

    view = run(main())
    assert isinstance(view.stats, ringlet.Stats)
    assert view.setup_flags and view.setup_flags in view.why
    assert "READ" in view.opcodes and view.features
    text = str(view)
    for word in ("kernel:", "backend:", "why:", "opcodes:", "stats:"):
        assert word in text
    html = view._repr_html_()
    assert "<table" in html and "io_uring" in html
    assert "ringlet.EngineView" in repr(view)

    offline = ringlet.engine_info()  # no running loop: what the kernel offers
    assert offline.stats is None and offline.opcodes
    assert "no engine" in offline._repr_html_()


def test_info_command(ringlet, require_io_uring):
    out = subprocess.run([sys.executable, "-m", "ringlet", "info"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for word in ("kernel:", "backend:", "why:", "features:", "opcodes:", "OPENAT", "READ"):
        assert word in out.stdout
