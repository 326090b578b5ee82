"""The cliff's picture: ops/s and p99 latency against concurrency (matplotlib)."""

from __future__ import annotations

import os
import platform
from typing import Any, List

from .cliff import APPROACHES, Result, _size


def figure(results: List[Result]) -> Any:
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


