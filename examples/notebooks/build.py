"""Writes the notebooks of this folder (without outputs) from the cells below.

    python examples/notebooks/build.py

Edit the cells here, not the .ipynb files: tests/examples/test_notebooks.py runs the
notebooks and checks that they match this script.
"""

from __future__ import annotations

import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))


def notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(cells):
        cell = new_markdown_cell(source.strip()) if kind == "md" else new_code_cell(source.strip())
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding gives the same file
        nb.cells.append(cell)
    return nb


EXITS_TWICE = [
    ("md", """
# The method that exits twice

ringlet grew from an essay on how async works. Its central picture: a non-blocking call
**returns once, at once**, with a placeholder (Timeline A, on the calling thread), and the
result arrives **later**, filling that placeholder (Timeline B). In between, the state of the
operation lives on the heap and *no thread waits*.

This notebook watches that happen with real io_uring operations. It runs on Jupyter's own
event loop: cells use top-level `await`, and `ringlet.get_engine()` is the engine of that loop.
"""),
    ("code", """
import asyncio, os, tempfile, threading
%matplotlib inline
import ringlet

loop = asyncio.get_running_loop()
engine = ringlet.get_engine()
threads_at_start = threading.active_count()
tmp = tempfile.mkdtemp(prefix="ringlet-nb-")
print(loop)
print("threads:", threads_at_start, [t.name for t in threading.enumerate()])
ringlet.engine_info()
"""),
    ("md", """
## Timeline A: the call returns, pending

A FIFO has no data until a writer writes, so a read of it cannot complete at once. We open
it `r+b` (so opening does not wait for a writer), start tracing, and submit one read.
`engine.read` fills an io_uring submission, enters the kernel once and **returns**:
the future it gives back is still empty.
"""),
    ("code", """
fifo = os.path.join(tmp, "fifo")
os.mkfifo(fifo)
f = await ringlet.open(fifo, "r+b")

t = ringlet.trace().start()            # a tracer on this loop's engine, until t.stop()
future = engine.read(f.fileno(), 64, -1)
print("the call returned:", future)
print("done?", future.done())
"""),
    ("md", """
## The cell that holds the state

Between the two timelines the operation is a *cell*: a `ringlet._ringlet.Op` object on the
heap, which owns the buffer the kernel will write into. It is the future's only callback (it
also carries a cancel to the kernel). The engine counts it as in flight. This cell runs on
the loop's thread while the read is pending, because nothing is waiting for it.
"""),
    ("code", """
op_cell = future._callbacks[0][0] if getattr(future, "_callbacks", None) else None
print("the cell:", op_cell)
print("threads now:", threading.active_count(), "(at start:", threads_at_start, ")")
ringlet.stats()   # in flight: 1
"""),
    ("md", """
## Timeline B: the writer comes later

50 ms from now a writer writes. The kernel completes the read and signals the ring's
eventfd. The loop wakes up and calls into C, which reaps the completion and resolves the
future. Then this cell's coroutine resumes after its `await`.
"""),
    ("code", """
loop.call_later(0.05, os.write, f.fileno(), b"hello from the writer")
data = await future
t.stop()
print(data)
timeline = t.timeline()
print(timeline)
"""),
    ("code", """
timeline.figure()
"""),
    ("md", """
The left panel is Timeline A: a few microseconds on the calling thread, and the call came back
*pending*. The middle panel shows the time the kernel held the read while no thread of this
process waited for it. The right panel is Timeline B: the completion was reaped, the future
was resolved, and the task resumed.

## When the data is already there: inline

A read of a file in the page cache usually completes *inside* the `io_uring_enter` that
submits it. C reaps it right away. The placeholder is already full when the call returns,
so awaiting it does not go back through the loop. The method exits once.
"""),
    ("code", """
path = os.path.join(tmp, "data.bin")
await ringlet.write_file(path, os.urandom(256 * 1024))
await ringlet.read_file(path)          # now it is in the page cache

with ringlet.trace() as t2:
    async with ringlet.open(path, "rb") as g:
        first = engine.read(g.fileno(), 4096, 0)
        print("the call returned:", first, "- done?", first.done())
        await first
        chunks = [await g.pread(4096, off) for off in range(0, 65536, 4096)]
print(t2.timeline())
"""),
    ("code", """
t2.timeline().figure()
"""),
    ("md", """
## The thread count stays flat

We keep 200 reads pending at once, each on its own pipe with no writer yet. Each is a cell
on the heap. The kernel holds all of them, and the number of threads does not change.
A thread pool would need a thread parked in `read()` for each one.
"""),
    ("code", """
pipes = [os.pipe() for _ in range(200)]
before, threads_before = ringlet.stats(), threading.active_count()
futures = [engine.read(r, 16, -1) for r, w in pipes]
during = ringlet.stats()
print("pending:", sum(not fut.done() for fut in futures), "| in flight:", during["in_flight"])
print("threads before:", threads_before, "| with 200 reads pending:", threading.active_count())
for r, w in pipes:
    os.write(w, b"ping")
results = await asyncio.gather(*futures)
print(len(results), "reads done, all", set(results), "| threads after:", threading.active_count())
for r, w in pipes:
    os.close(r); os.close(w)
ringlet.stats() - before
"""),
    ("md", """
The bar above shows how the completions came: **inline** (inside the submitting call) or
**deferred** (later, when the loop woke on the ring). The whole engine, as one object:
"""),
    ("code", """
await f.close()
ringlet.engine_info()
"""),
]


CLIFF = [
    ("md", """
# The async cliff

The essay ends on a question: *is the orchestration worth its price for this workload?*
Async buys you a freed thread during the wait, and pays for it with heap state, more system
calls and more machinery. When the waits are short, synchronous code wins. When there are
many long waits at once, async wins. The point where one gives way to the other is the cliff.

This notebook measures it on this machine. It compares synchronous `os.pread`, ringlet, and
a thread pool (`loop.run_in_executor`) for random reads of a file, across concurrency and read
size, both from the page cache and from the device (`O_DIRECT`). It is the same code as
`python -m ringlet cliff`, kept quick here.
"""),
    ("code", """
import asyncio, os, time, threading, tempfile
%matplotlib inline
import ringlet
from ringlet._measure import cliff as _cliff   # the code behind `python -m ringlet cliff`

ringlet.engine_info()
"""),
    ("md", """
## By hand first: 2,000 cached 4 KiB reads, three ways
"""),
    ("code", """
path = os.path.join(tempfile.mkdtemp(prefix="ringlet-cliff-nb-"), "data.bin")
with open(path, "wb") as out:
    out.write(os.urandom(16 * 1024 * 1024))
offsets = [(i * 7919 % 4096) * 4096 for i in range(2000)]
loop = asyncio.get_running_loop()
fd = os.open(path, os.O_RDONLY)

t0 = time.perf_counter()
for off in offsets:
    os.pread(fd, 4096, off)
t_sync = time.perf_counter() - t0

async with ringlet.open(path, "rb") as f:
    t0 = time.perf_counter()
    await asyncio.gather(*(f.pread(4096, off) for off in offsets))
    t_ring = time.perf_counter() - t0

t0 = time.perf_counter()
await asyncio.gather(*(loop.run_in_executor(None, os.pread, fd, 4096, off) for off in offsets))
t_pool = time.perf_counter() - t0
os.close(fd)
for name, secs in (("sync", t_sync), ("ringlet", t_ring), ("thread pool", t_pool)):
    print(f"{name:12s} {len(offsets) / secs:>12,.0f} reads/s")
"""),
    ("md", """
## The sweep

`measure` runs each approach as c callers in a closed loop (a caller asks again as soon as it
is answered). It records ops/s and latency, and itemizes the bill: heap per request in
flight, system calls per read, and threads added. The synchronous code serves its c callers
one after another.
"""),
    ("code", """
config = {"sizes": (4096, 1024 * 1024), "concurrency": (1, 16, 128), "seconds": 0.1, "file": 32 * 1024 * 1024}
results, facts = await _cliff.measure(config=config, progress=False)
print(_cliff.report(results, facts))
"""),
    ("code", """
_cliff.figure(results)
"""),
    ("md", """
## Where each wins
"""),
    ("code", """
for line in _cliff.summary(results):
    print(line)
wins = {}
for v in _cliff.verdicts(results):
    wins.setdefault(v["winner"] if v["clear"] else "tie", []).append(
        f'{v["where"]} {v["size"] // 1024} KiB c={v["concurrency"]}')
for who, where in sorted(wins.items()):
    print(f"{who:8s} {len(where):2d} points: {', '.join(where)}")
"""),
    ("md", """
How to read it:

* **Cached, small reads** are on the synchronous side. A page-cache read is a short memory
  copy. A synchronous loop does it with one system call and nothing on the heap, and any
  orchestration costs more than the wait it saves. ringlet stays well ahead of the thread
  pool because its reads complete *inline*, without a thread hand-off.
* **Reads that really wait** (`O_DIRECT`, the device) are on the async side once there is
  concurrency. ringlet keeps many reads in flight in the kernel with no extra threads. The
  synchronous code serves its callers one at a time, and the thread pool is limited to its
  handful of threads.
* **Large reads** are bounded by the memory copy or by the device's bandwidth. The three
  approaches end up close to each other.

Run `python -m ringlet cliff PATH --plot cliff.png` to measure your own path (PATH is a
directory on the device you care about).
"""),
]


TOUR = [
    ("md", """
# A tour of ringlet

Real asynchronous file I/O for asyncio on io_uring, on real files. Everything here runs on
Jupyter's own event loop with top-level `await`.
"""),
    ("code", """
import asyncio, os, tempfile, threading
import ringlet

print(ringlet.backend())
tmp = tempfile.mkdtemp(prefix="ringlet-tour-")
hello = os.path.join(tmp, "hello.bin")
"""),
    ("md", """
## Whole files
"""),
    ("code", """
n = await ringlet.write_file(hello, b"hello, io_uring\\n")       # bytes written
data = await ringlet.read_file(hello)                            # bytes
copied = await ringlet.copy_file(hello, os.path.join(tmp, "copy.bin"))  # bytes copied
n, data, copied
"""),
    ("md", """
## A file object, like built-in `open()` (binary modes)

`ringlet.open` takes the modes of built-in `open()`. Each method is a coroutine, and each call
is one or more io_uring operations.
"""),
    ("code", """
async with ringlet.open(hello, "rb") as f:
    head = await f.read(5)             # from the file position
    tail = await f.pread(8, 7)         # positional, the position stays
    rest = await f.read()              # to the end
print(head, tail, rest)

async with ringlet.open(os.path.join(tmp, "log.bin"), "wb") as w:
    await w.write(b"first line\\n")
    await w.pwrite(b"FIRST", 0)        # positional write
    await w.fsync()                    # to the device
print(await ringlet.read_file(os.path.join(tmp, "log.bin")))

f = await ringlet.open(hello, "rb")    # without `async with`
buf = bytearray(5)
print(await f.readinto(buf), buf)
await f.close()
f
"""),
    ("md", """
## Many at once

`asyncio.gather` keeps many operations in flight. The kernel does the waiting and no
threads are added.
"""),
    ("code", """
paths = [os.path.join(tmp, f"part{i}.bin") for i in range(64)]
threads = threading.active_count()
await asyncio.gather(*(ringlet.write_file(p, os.urandom(64 * 1024)) for p in paths))
blobs = await asyncio.gather(*(ringlet.read_file(p) for p in paths))
print(len(blobs), "files,", sum(map(len, blobs)), "bytes; threads", threads, "->", threading.active_count())
"""),
    ("md", """
## Errors are the ones built-in `open()` and `os` raise

They are the same exception classes, with `errno` and `filename` set.
"""),
    ("code", """
import errno

async def show(what, start):
    # start() returns an awaitable; print the error that calling or awaiting it raises
    try:
        await start()
    except Exception as exc:
        code = errno.errorcode.get(getattr(exc, "errno", None) or 0, "")
        print(f"{what:34s} {type(exc).__name__}: {exc} {code}")
    else:
        print(f"{what:34s} no error")

await show("read a missing file", lambda: ringlet.read_file(os.path.join(tmp, "missing.bin")))
await show("open a directory", lambda: ringlet.open(tmp, "rb"))
await show("exclusive create of existing file", lambda: ringlet.open(hello, "xb"))
await show("a file inside a file", lambda: ringlet.write_file(os.path.join(hello, "x"), b""))
await show("an invalid mode", lambda: ringlet.open(hello, "rwb"))
"""),
    ("code", """
async def misuse():
    async with ringlet.open(hello, "rb") as f:
        await f.readinto(b"immutable bytes")     # a read-only buffer
await show("readinto a bytes object", misuse)

async def write_to_reader():
    async with ringlet.open(hello, "rb") as f:
        await f.write(b"nope")
await show("write to a file opened 'rb'", write_to_reader)

async def closed_file():
    f = await ringlet.open(hello, "rb")
    await f.close()
    await f.read(1)
await show("read after close", closed_file)

try:  # the same errors as built-in open()
    open(os.path.join(tmp, "missing.bin"), "rb")
except OSError as exc:
    print(f"{'built-in open, for comparison':34s} {type(exc).__name__}: {exc}")
"""),
    ("md", """
## Cancelling

A cancelled task gets its `CancelledError` at once. The kernel's side is cancelled too, and
the memory it may still write stays alive until its completion arrives.
"""),
    ("code", """
fifo = os.path.join(tmp, "fifo")
os.mkfifo(fifo)
async def wait_for_a_writer():
    async with ringlet.open(fifo, "r+b") as p:   # r+: opening does not wait for a writer
        return await p.read(10)                  # no writer ever comes
task = asyncio.ensure_future(wait_for_a_writer())
await asyncio.sleep(0.01)
print("waiting; in flight:", ringlet.stats()["in_flight"])
task.cancel()
try:
    await task
except asyncio.CancelledError:
    print("cancelled; in flight right after:", ringlet.stats()["in_flight"])
for _ in range(100):                              # the kernel confirms the cancel shortly
    if ringlet.stats()["in_flight"] == 0:
        break
    await asyncio.sleep(0.01)
print("in flight once the kernel let go:", ringlet.stats()["in_flight"])
"""),
    ("md", """
## What the engine did
"""),
    ("code", """
ringlet.stats()
"""),
    ("code", """
with ringlet.trace() as t:
    await ringlet.copy_file(hello, os.path.join(tmp, "copy2.bin"))
print(t.timeline())
"""),
    ("code", """
ringlet.engine_info()
"""),
]


NOTEBOOKS = {
    "the_method_that_exits_twice.ipynb": EXITS_TWICE,
    "the_async_cliff.ipynb": CLIFF,
    "tour.ipynb": TOUR,
}


def build() -> dict[str, str]:
    """{file name: notebook JSON text}."""
    return {name: nbformat.writes(notebook(cells)) + "\n" for name, cells in NOTEBOOKS.items()}


def main() -> None:
    for name, text in build().items():
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as out:
            out.write(text)
        print("wrote", name, file=sys.stderr)


if __name__ == "__main__":
    main()
