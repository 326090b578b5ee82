"""What the engine is doing, for people: ringlet.stats() and ringlet.engine_info().

The C Engine stays lean (``Engine.stats()`` returns a plain dict); this module
wraps what it reports in objects that print well in a terminal (``__repr__``)
and in a notebook (``_repr_html_``).
"""

from __future__ import annotations

import html
import platform
from typing import Any, Optional

from . import _ringlet
from ._contract import STATS_KEYS, Opcode, opcode_name
from ._engine import backend, get_engine, probe
from ._kernels import describe, lacking

__all__ = ["Stats", "EngineView", "stats", "engine_info", "feature_names", "opcode_name", "FLAG_CHOICES"]

# The setup flags an engine tries, in order; the first one the kernel accepts is used.
FLAG_CHOICES = _ringlet.SETUP_FLAG_CHOICES

# IORING_FEAT_* bits, in bit order (include/uapi/linux/io_uring.h).
_FEATURE_NAMES = (
    "SINGLE_MMAP NODROP SUBMIT_STABLE RW_CUR_POS CUR_PERSONALITY FAST_POLL POLL_32BITS SQPOLL_NONFIXED "
    "EXT_ARG NATIVE_WORKERS RSRC_TAGS CQE_SKIP LINKED_FILE REG_REG_RING RECVSEND_BUNDLE MIN_TIMEOUT "
    "RW_ATTR NO_IOWAIT"
).split()

def feature_names(bits: int) -> list[str]:
    """IORING_FEAT_* names of the bits set in ``bits``."""
    names = []
    for i in range(bits.bit_length()):
        if bits >> i & 1:
            names.append(_FEATURE_NAMES[i] if i < len(_FEATURE_NAMES) else f"bit{i}")
    return names


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else f"{value:,}"


# key -> (label, what it means); shown in the order of STATS_KEYS.
_LABELS = {
    "submitted": ("submitted", "operations handed to the ring"),
    "completed": ("completed", "completions reaped in C"),
    "completed_inline": ("completed inline", "finished inside the submitting io_uring_enter"),
    "completed_nowait": ("completed without the ring", "of those, served at once from the page cache (RWF_NOWAIT)"),
    "completed_nowait_sqpoll": ("copied on another core", "of those, pread_many reads copied by io_uring's SQPOLL thread"),
    "files_nowait": ("files read without the ring", "read_file: open, reads and close on the loop thread, none waiting"),
    "files_chained": ("files written in one kernel chain", "write_file: open, write and close linked, run by one kernel worker"),
    "writes_quiet": ("copy writes reaped quietly", "copy: writes on a ring that wakes nobody, reaped behind one that does"),
    "deferred": ("deferred", "finished later: the loop woke on the ring"),
    "cancelled": ("cancelled", "cancel requests sent to the kernel"),
    "enter_calls": ("io_uring_enter calls", "system calls into the ring"),
    "ops_per_enter": ("ops per enter", "submissions per system call"),
    "in_flight": ("in flight", "cells the kernel owns right now"),
    "peak_in_flight": ("peak in flight", "most cells owned at once, per ring, added up"),
    "overflowed": ("overflowed", "submissions that waited for room in the SQ"),
}
_ROWS = tuple((key, *_LABELS[key]) for key in STATS_KEYS)

_COUNTERS = ("submitted", "completed", "completed_inline", "completed_nowait", "completed_nowait_sqpoll", "files_nowait", "files_chained",
             "writes_quiet", "deferred", "cancelled", "enter_calls", "overflowed")


class Stats(dict[str, Any]):
    """The engine's counters (a dict), printed for people.

    ``after - before`` gives the counters of what happened in between (in
    flight and peak are those of ``after``)."""

    @property
    def inline_fraction(self) -> float:
        """Share of completions that arrived inside the submitting call (0..1)."""
        done = self.get("completed_inline", 0) + self.get("deferred", 0)
        return self.get("completed_inline", 0) / done if done else 0.0

    def __sub__(self, other: dict[str, Any]) -> "Stats":
        if not isinstance(other, dict):
            return NotImplemented
        diff = Stats(self)
        for key in _COUNTERS:
            if key in self and key in other:
                diff[key] = self[key] - other[key]
        enters = diff.get("enter_calls", 0)
        diff["ops_per_enter"] = diff.get("submitted", 0) / enters if enters else 0.0
        return diff

    def __repr__(self) -> str:
        g = self.get
        return (f"<ringlet.Stats submitted={g('submitted', 0)} completed={g('completed', 0)} "
                f"(inline {g('completed_inline', 0)}, deferred {g('deferred', 0)}) "
                f"cancelled={g('cancelled', 0)} in_flight={g('in_flight', 0)} peak={g('peak_in_flight', 0)} "
                f"enter_calls={g('enter_calls', 0)} ({g('ops_per_enter', 0.0):.2f} ops/enter) "
                f"overflowed={g('overflowed', 0)}>")

    def _bar_html(self) -> str:
        inline, deferred = self.get("completed_inline", 0), self.get("deferred", 0)
        if inline + deferred == 0:
            return "<div style='color:#888'>no completions yet</div>"
        pct = 100.0 * inline / (inline + deferred)
        return (
            "<div style='display:flex;width:220px;height:10px;border:1px solid #999;margin:2px 0'>"
            f"<div title='inline {inline}' style='width:{pct:.1f}%;background:#4c9f70'></div>"
            f"<div title='deferred {deferred}' style='width:{100 - pct:.1f}%;background:#e08a3c'></div></div>"
            f"<div style='font-size:85%'><span style='color:#4c9f70'>&#9632;</span> inline {pct:.0f}% "
            f"&nbsp;<span style='color:#e08a3c'>&#9632;</span> deferred {100 - pct:.0f}%</div>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='text-align:left'>{label}</td><td style='text-align:right'><b>{_fmt(self[key])}</b>"
            f"</td><td style='text-align:left;color:#666'>{html.escape(doc)}</td></tr>"
            for key, label, doc in _ROWS if key in self
        )
        return (f"<div><b>ringlet engine stats</b>{self._bar_html()}"
                f"<table style='border-collapse:collapse'>{rows}</table></div>")


def stats() -> Stats:
    """Counters of the running loop's engine, as a ringlet.Stats (a dict).

    Call it inside a coroutine (or a notebook cell: Jupyter has a running
    loop); without a running loop it raises RuntimeError."""
    return Stats(get_engine().stats())


class EngineView:
    """Backend, kernel, io_uring setup and counters of one engine (or, with
    no running loop, of what this kernel offers)."""

    def __init__(self, engine: Any = None) -> None:
        self.backend = backend()
        self.kernel = f"{platform.system()} {platform.release()} ({platform.machine()})"
        details = probe()
        self.error: Optional[int] = details.get("error")
        self.features: list[str] = feature_names(details.get("features", 0))
        self.opcodes: list[str] = [opcode_name(op) for op in details.get("opcodes", ())]
        # The opcodes ringlet would use that io_uring lacks here (that work is
        # done outside the ring): an io_uring engine's own answer, else the probe's.
        self.missing: list[Opcode] = []
        if self.error is None:
            has = engine.supports if isinstance(engine, _ringlet.Engine) else frozenset(details["opcodes"]).__contains__
            self.missing = lacking(has)
        self.engine = engine
        if engine is not None:
            self.setup_flags: Optional[str] = engine.setup_flags
            self.stats: Optional[Stats] = Stats(engine.stats())
            self.tracing = engine.tracer is not None
        else:
            self.setup_flags = details.get("setup_flags")
            self.stats = None
            self.tracing = False

    @property
    def why(self) -> str:
        """Why this backend and these setup flags."""
        if self.error is not None:
            return "io_uring_setup was refused: " + self.backend
        if not self.backend.startswith("io_uring"):
            return self.backend  # the thread backend says why itself ("threads: forced by ...")
        flags = self.setup_flags or "none"
        choices = list(FLAG_CHOICES)
        passed_over = ""
        if not probe().get("defer_signals_at_once", True):
            passed_over = (f"; {choices.pop(0)} passed over: this kernel signals its eventfd for a woken pipe "
                           "or FIFO read milliseconds late")
        tried = choices[: choices.index(flags) + 1] if flags in choices else choices
        refused = [f for f in tried if f != flags]
        return (f"setup flags tried in the order {', '.join(FLAG_CHOICES)}{passed_over}; the kernel accepted {flags}"
                + (f" after refusing {', '.join(refused)}" if refused else "" if passed_over else " (the first choice)"))

    @property
    def missing_text(self) -> str:
        """What io_uring lacks here of what ringlet would use, said for people."""
        if not self.missing:
            return "none of the opcodes ringlet uses"
        return f"{describe(self.missing)}: done outside the ring"

    def lines(self) -> list[str]:
        out = [f"kernel:      {self.kernel}", f"backend:     {self.backend}", f"why:         {self.why}"]
        if self.error is None:
            out.append(f"features:    {' '.join(self.features)}")
            out.append(f"opcodes:     {len(self.opcodes)} supported")
            for i in range(0, len(self.opcodes), 8):
                out.append("             " + " ".join(self.opcodes[i:i + 8]))
            out.append(f"missing:     {self.missing_text}")
        if self.stats is not None:
            out.append(f"stats:       {self.stats!r}")
            out.append(f"tracing:     {'on' if self.tracing else 'off'}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        where = "no running loop" if self.engine is None else f"flags={self.setup_flags}"
        return f"<ringlet.EngineView {self.backend!r} {where} {len(self.opcodes)} opcodes>"

    def _repr_html_(self) -> str:
        def row(k: str, v: str) -> str:
            return f"<tr><td style='text-align:left'><b>{k}</b></td><td style='text-align:left'>{v}</td></tr>"

        rows = [row("kernel", html.escape(self.kernel)), row("backend", html.escape(self.backend)),
                row("why", html.escape(self.why))]
        if self.error is None:
            rows.append(row("features", html.escape(" ".join(self.features))))
            rows.append(row(f"opcodes ({len(self.opcodes)})",
                            f"<span style='font-size:85%'>{html.escape(' '.join(self.opcodes))}</span>"))
            rows.append(row("missing", html.escape(self.missing_text)))
        if self.stats is not None:
            rows.append(row("tracing", "on" if self.tracing else "off"))
            rows.append(row("stats", self.stats._repr_html_()))
        else:
            rows.append(row("stats", "no engine: call ringlet.engine_info() inside a running loop"))
        return f"<div><b>ringlet engine</b><table style='border-collapse:collapse'>{''.join(rows)}</table></div>"


def engine_info() -> EngineView:
    """The running loop's engine, described (backend, kernel, setup flags,
    features, opcodes, stats).  Without a running loop (or without io_uring)
    it describes what this kernel offers, with no stats."""
    try:
        engine = get_engine()
    except (RuntimeError, OSError):
        engine = None
    return EngineView(engine)
