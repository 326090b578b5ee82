"""ringlet.trace(): watch each operation exit twice.

The C engine stamps every traced operation with time.monotonic_ns() at five
moments and hands the record to ``engine.tracer`` once the operation is over:

    submitted  the calling thread enters C and fills a submission
    returned   io_uring_enter returned: the call is over (Timeline A ends);
               the operation either completed inline or is pending
    reaped     C took the kernel's completion off the ring (Timeline B starts)
    resolved   the asyncio future was given its result
    resumed    the awaiting task is about to run again

``trace()`` installs such a tracer for the duration of a ``with`` block and
keeps the records; ``Timeline`` lays them out as the essay's Timeline A (the
calling thread: submit -> return) and Timeline B (completion -> future
resolved -> task resumed), as a text table or a matplotlib figure.
"""

from __future__ import annotations

import base64
import html
import io
import threading
from typing import Any, Callable, Optional

from ._contract import STAMPS
from ._engine import get_engine

__all__ = ["trace", "Timeline"]


class trace:
    """Record every operation of the running loop's engine inside a block.

        async def main():
            with ringlet.trace() as t:
                await ringlet.read_file("data.bin")
            print(t.timeline())        # text table
            t.timeline().figure()      # matplotlib Figure: Timeline A and B

    It is a plain (synchronous) ``with``; ``async with`` works too.  Enter it
    inside a coroutine or a notebook cell, where a loop is running: the
    engine it traces is the running loop's (``ringlet.get_engine()``), and
    entering it with no running loop raises RuntimeError.  Pass ``engine=``
    to trace a given engine instead.

    A record is made when an operation is over (after its task resumed, or
    at once for one that completed inline), so an operation started inside
    the block but awaited after it is not recorded.  The tracer that was
    installed before (an enclosing trace()) is restored on exit and is given
    every record as well.  Tracing off costs one pointer test per operation.
    """

    def __init__(self, engine: Any = None, *, limit: Optional[int] = 100_000) -> None:
        self._engine = engine
        self.limit = limit
        self.records: list[dict[str, Any]] = []
        self.dropped = 0
        self._previous: Optional[Callable[[dict[str, Any]], Any]] = None
        self._active = False
        self.thread_names: dict[int, str] = {}

    def _record(self, record: dict[str, Any]) -> None:
        if self.limit is None or len(self.records) < self.limit:
            self.records.append(record)
        else:
            self.dropped += 1
        previous = self._previous
        if previous is not None:
            previous(record)

    def __enter__(self) -> "trace":
        if self._active:
            raise RuntimeError("this ringlet.trace() is already active")
        engine = self._engine if self._engine is not None else get_engine()
        self._engine = engine
        self._previous = engine.tracer
        engine.tracer = self._record
        self._active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._active = False
        engine = self._engine
        if engine is not None and not engine.closed and engine.tracer == self._record:
            engine.tracer = self._previous
        self._previous = None
        # Names of the threads seen, while they still exist.
        names = {t.ident: t.name for t in threading.enumerate()}
        for r in self.records:
            for key in ("thread", "reap_thread"):
                ident = r.get(key)
                if ident is not None and ident in names:
                    self.thread_names[ident] = names[ident]

    def start(self) -> "trace":
        """Begin tracing without a ``with`` block (a notebook may spread one
        traced operation over several cells); end it with stop()."""
        return self.__enter__()

    def stop(self) -> "trace":
        """End what start() began; returns self."""
        self.__exit__(None, None, None)
        return self

    async def __aenter__(self) -> "trace":
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)

    def timeline(self) -> "Timeline":
        """The records laid out in time, relative to the first submission."""
        return Timeline(self.records, self.thread_names)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        state = "active" if self._active else "done"
        return f"<ringlet.trace {state}: {len(self.records)} operations>"


def _us(ns: Optional[int], t0: int) -> Optional[float]:
    return None if ns is None else (ns - t0) / 1000.0


def _fmt_us(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.1f}"


class Timeline:
    """Operations in time.  ``str()`` is a text table; ``figure()`` draws it.

    Each row is one operation: its Timeline A (on the calling thread, from
    submission until the call returned: pending, or already completed
    inline) and its Timeline B (the completion reaped, the future resolved,
    the awaiting task resumed).  Times are µs after the first submission."""

    def __init__(self, records: list[dict[str, Any]], thread_names: Optional[dict[int, str]] = None) -> None:
        self.records = sorted(records, key=lambda r: (r.get("submitted") or 0))
        self.thread_names = dict(thread_names or {})
        if not self.thread_names:
            self.thread_names = {t.ident: t.name for t in threading.enumerate() if t.ident is not None}
        stamps = [r["submitted"] for r in self.records if r.get("submitted")]
        self.t0 = min(stamps) if stamps else 0

    def _thread(self, ident: Optional[int]) -> str:
        if ident is None:
            return "-"
        return self.thread_names.get(ident, str(ident))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per operation with times in µs after the first submission."""
        rows = []
        for i, r in enumerate(self.records):
            rel = {k: _us(r.get(k), self.t0) for k in STAMPS}
            result = r.get("result")
            if r.get("resumed") is None and r.get("resolved") is None:
                state = "cancelled"
            else:
                # nowait: the page cache gave the bytes at once, without the ring
                state = "nowait" if r.get("nowait") else "inline" if r.get("inline") else "pending"
            call = None if rel["returned"] is None or rel["submitted"] is None else rel["returned"] - rel["submitted"]
            rows.append({"n": i, "op": r.get("op"), "fd": r.get("fd"), "result": result, "state": state,
                         "thread": self._thread(r.get("thread")), "reap_thread": self._thread(r.get("reap_thread")),
                         "call_us": call, **rel})
        return rows

    _HEAD = ("#", "op", "fd", "result", "submitted", "on thread", "returned", "after µs",
             "reaped", "resolved", "resumed")

    def _table(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for row in self.rows():
            out.append((str(row["n"]), str(row["op"]), str(row["fd"]), str(row["result"]),
                        _fmt_us(row["submitted"]), row["thread"], row["state"], _fmt_us(row["call_us"]),
                        _fmt_us(row["reaped"]), _fmt_us(row["resolved"]), _fmt_us(row["resumed"])))
        return out

    def __str__(self) -> str:
        if not self.records:
            return "ringlet timeline: no operations recorded"
        body = self._table()
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(self._HEAD)]
        left = {1, 5, 6}

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        lines = ["ringlet timeline (µs after the first submission; 'returned' is how the call came back:"
                 " pending, or inline = already completed)", line(self._HEAD), line(tuple("-" * w for w in widths))]
        lines += [line(r) for r in body]
        inline = sum(1 for r in self.records if r.get("inline"))
        nowait = sum(1 for r in self.records if r.get("nowait"))
        lines.append(f"{len(self.records)} operations: {inline} completed inline ({nowait} of them without the ring),"
                     f" {len(self.records) - inline} not; "
                     f"threads that submitted: {', '.join(sorted({r[5] for r in body}))}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ringlet.Timeline of {len(self.records)} operations>"

    def __len__(self) -> int:
        return len(self.records)

    def figure(self, *, max_ops: int = 40) -> Any:
        """A matplotlib Figure with one row per operation and three panels:

        Timeline A, the calling thread: from submission until the call
        returned (inline: the completion was already reaped inside it);
        the gap: how long the kernel held the operation with no thread of
        this process waiting (returned -> reaped);
        Timeline B: after the completion was reaped, when the future was
        resolved and when the awaiting task resumed.  Needs matplotlib."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("ringlet Timeline.figure() draws with matplotlib, which is not installed: "
                              "pip install matplotlib") from None
        rows = self.rows()[:max_ops]
        n = max(len(rows), 1)
        fig = Figure(figsize=(11, 1.6 + 0.32 * n), layout="constrained")
        axa, axw, axb = fig.subplots(1, 3, sharey=True, gridspec_kw={"width_ratios": [1, 1.2, 1]})
        fig.suptitle("The method that exits twice: Timeline A (the call returns) and Timeline B "
                     "(the completion arrives)", fontsize=10)
        if not rows:
            axw.text(0.5, 0.5, "no operations recorded", ha="center", va="center", transform=axw.transAxes)
            return fig
        blue, grey, orange, green = "#3b6fb6", "#9a9a9a", "#e08a3c", "#4c9f70"
        ys = [n - 1 - i for i in range(len(rows))]

        def span(a: Optional[float], b: Optional[float]) -> Optional[float]:
            return None if a is None or b is None else max(b - a, 0.0)

        for y, r in zip(ys, rows):
            inline = r["state"] in ("inline", "nowait")
            call = span(r["submitted"], r["returned"])
            if call is not None:
                axa.barh(y, call, color=green if inline else blue, height=0.6)
                axa.text(call, y, f" {r['state']} {call:.1f}", va="center", fontsize=7)
            if inline and r["reaped"] is not None and r["submitted"] is not None:
                axa.plot([r["reaped"] - r["submitted"]], [y], "|", color="black", markersize=9)
            wait = span(r["returned"], r["reaped"])
            if inline or r["reaped"] is None:
                axw.text(0.02, y, "inline: no wait" if inline else r["state"], va="center", fontsize=7,
                         color=grey, transform=axw.get_yaxis_transform())
            elif wait is not None:
                axw.barh(y, max(wait, 0.1), color=grey, height=0.25)
                axw.text(max(wait, 0.1), y, f" {wait:,.0f}", va="center", fontsize=7)
            resolved = span(r["reaped"], r["resolved"])
            resumed = span(r["reaped"], r["resumed"])
            if resolved is not None:
                axb.barh(y, resolved, color=orange, height=0.6)
            if resumed is not None:
                start = resolved or 0.0
                axb.barh(y, max(resumed - start, 0.0), left=start, color=green, height=0.6)
                axb.text(resumed, y, f" {resumed:.1f}", va="center", fontsize=7)
        axa.set_yticks(ys)
        axa.set_yticklabels([f"#{r['n']} {r['op']} fd {r['fd']} ({r['thread']})" for r in rows], fontsize=7)
        axa.set_title("A: calling thread, submit -> return (µs)\nblue pending, green inline; | = reaped", fontsize=8)
        axw.set_title("meanwhile: the kernel holds it, no thread waits\n(returned -> reaped, µs, log)", fontsize=8)
        axb.set_title("B: after the completion was reaped (µs)\norange: future resolved, green: task resumed",
                      fontsize=8)
        if any(s is not None for s in (span(r["returned"], r["reaped"]) for r in rows if r["state"] == "pending")):
            axw.set_xscale("log")
        for ax in (axa, axw, axb):
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="x", labelsize=7)
            ax.margins(x=0.25)
        return fig

    def _png(self) -> Optional[bytes]:
        try:
            fig = self.figure()
        except ImportError:
            return None
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        return buf.getvalue()

    def _repr_png_(self) -> Optional[bytes]:
        return self._png()

    def _repr_html_(self) -> str:
        png = self._png()
        img = "" if png is None else (
            f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'/><br/>")
        return f"<div>{img}<pre style='font-size:80%'>{html.escape(str(self))}</pre></div>"
