"""The fallback backend: ringlet's contract on worker threads, where io_uring is refused.

``ThreadEngine`` has the interface of the C engine (``_ringlet.Engine``):
every method returns an asyncio future of the engine's loop, errors are the
same ``OSError`` subclasses (``errno``, ``strerror``, ``filename``,
``filename2``) and bad arguments the same ``TypeError``/``ValueError``.
``_engine.py`` picks it when io_uring cannot be used (see ``ringlet.backend()``).

How an operation waits depends on the descriptor (``os.fstat`` per operation):

* **Regular files, directories, block devices, paths** (open, statx, rename,
  fsync, ...): a worker thread of the engine's own pool makes the system
  call.  The pool is bounded (``max_workers``, default as
  ``concurrent.futures``); work beyond that queues (``stats()["overflowed"]``
  counts it).  Such calls always finish, so no worker is held for long, and
  a cancelled wait only drops the result (an open that still succeeds has its
  descriptor closed).  A job cancelled while queued leaves the queue at once.
  Writes to one file run one after the other, in the order they were made
  (io_uring's io-wq does the same).  A close waits for the operations
  already handed to workers on its descriptor (io_uring holds the file for
  them), so their bytes never land in a file that reuses the number; later
  ones fail with EBADF.  A close is never dropped, even if its wait is
  cancelled or the engine shuts down first.  Buffers for reads are made on
  the loop thread (large ones as anonymous maps), so that workers allocate
  nothing.
* **FIFOs, pipes, sockets, character devices** can block for ever, so no
  worker ever waits on them.  The read or write is tried at once, non-blocking,
  on the loop thread; if it would block, the loop waits for readiness
  (``loop.add_reader``/``add_writer``) on a duplicate of the descriptor held
  until the last operation waiting on that file is over (as the kernel holds
  the file: closing the caller's descriptor does not disturb them), with one
  queue per file and direction, served in order.  ``O_NONBLOCK`` is set just
  around each system call and restored right after (the flag belongs to the
  open file description, which another process may share: it sees the flag
  only during that call).  Cancelling is leaving the queue.  As with
  io_uring, the offset is ignored on pipes and sockets.
* **Opens** add ``O_NONBLOCK`` and clear it afterwards (unless the caller
  asked for it), so opening a FIFO never blocks a worker: for reading it
  succeeds at once (a read then waits until a writer has written or gone);
  for writing the kernel says ENXIO while there is no reader, and the open is
  tried again after a short, growing, cancellable delay (1 ms up to 20 ms)
  until a reader appears.

Workers hand finished operations to the loop through a pipe that the loop
watches (``fileno()``), as it watches the ring's eventfd; ``drain()`` then
resolves their futures on the loop thread.  One callback of the loop (a
drain, or one file's readiness) resolves at most ``cq_entries`` operations,
as the io_uring engine reaps at most its completion queue: the rest come at
the next turn, so a long queue never makes a slow callback.  A cancelled
operation that never ran is traced with -ECANCELED, as io_uring reports it.
So this engine has the life cycle of the io_uring one: one per loop,
``shutdown()`` when the loop drops its reader, and RuntimeError when used
from another thread or after ``fork()``.

What differs: ``stats()["enter_calls"]`` stays 0 (no ring), and operations on
regular files never complete inline (each is a trip to a worker).

The rooms of this package:

* ``_engine.py``  ``ThreadEngine``: the operations, each checked and started
* ``_core.py``    the life of an operation: submit, finish, cancel, trace,
  drain, shutdown; descriptors kept valid until their operations are over
* ``_op.py``      one operation and what it holds
* ``_pool.py``    the worker pool
* ``_ready.py``   readiness waiting on the loop (pipes, FIFOs, devices) and
  the retry timers of FIFO opens
* ``_args.py``    argument checks, as the C engine makes them
* ``_calls.py``   the system calls (and libc's renameat2, linkat)
* ``_memory.py``  read buffers and O_DIRECT bounce memory
"""

from ._engine import OPCODES, ThreadEngine
from ._pool import WorkerPool, default_max_workers

__all__ = ["ThreadEngine", "WorkerPool", "OPCODES", "default_max_workers"]
