"""The measuring core shared by ``python -m ringlet cliff`` and ``benchmarks/``.

Nothing in the runtime package imports this: it is loaded only when the cliff
command runs or a benchmark imports it.

    core   files to read (made, re-warmed, freshly rewritten), the random
           offsets every contender shares, the read loops (one synchronous
           thread; c tasks on ringlet or a thread pool) and one timed copy
    cliff  the `cliff` command: measure sync vs ringlet vs threads, report
    plot   the cliff's picture (matplotlib, imported only for --plot)
"""
