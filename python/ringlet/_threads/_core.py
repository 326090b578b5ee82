"""The life of a thread-engine operation, from the call that starts it to
its resolved future: submitting (to the pool, or to readiness waiting),
finishing on the loop thread, cancelling, tracing, draining what workers
finished, shutting down; the engine's counters and properties.

Descriptors stay valid for the operations on them: a close waits until
the operations already started on its descriptor (in the pool) are over,
so its number cannot be reused under them (the kernel holds the file for
io_uring operations in the same way); operations started after the close
fail with EBADF, until the number names a new file (an open of the engine's,
or one handed over with _adopt, delivered before the close's completion).
A close is never dropped: not when its wait is cancelled, nor at shutdown,
where it is made at once.

The caller's code that runs while operations are finished (a future's
set_result, the tracer) may raise.  An Exception is reported to the loop's
exception handler, as a callback's would be.  The first BaseException
(KeyboardInterrupt) is kept and raised by drain() once its whole batch is
resolved, so it leaves the loop as any callback's would and no future is
left unresolved (as the io_uring engine does).
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
import weakref
from typing import Any, Callable, Optional

from .. import _contract as contract
from . import _args
from ._calls import RETRY, errno_of
from ._op import Op
from ._pool import WorkerPool, default_max_workers
from ._ready import Readiness


class EngineCore:
    """What every operation of ThreadEngine goes through."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cq_entries: int = 4096,
                 future_type: Optional[type] = None, max_workers: Optional[int] = None) -> None:
        self._loop_ref = weakref.ref(loop)
        self._future_type = future_type
        self._thread = threading.get_ident()
        self._fork_generation = contract.fork_generation
        self._tracer: Optional[contract.Tracer] = None
        self.pool: WorkerPool[Op] = WorkerPool(max_workers or default_max_workers())
        self.ready = Readiness(self)
        # The most one callback (drain, or a file's readiness) completes, as
        # the io_uring engine reaps at most its completion queue per drain.
        self._budget = max(1, cq_entries)
        self._lock = threading.Lock()  # guards _completed and the wake pipe
        self._completed: list[Op] = []
        # A pipe rather than an eventfd: if a caller closes fileno(), the
        # workers still write to a descriptor of their own, never a reused number.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._fd_users: dict[int, int] = {}  # fd -> operations in the pool that use its number
        self._closing: dict[int, list[Op]] = {}  # fd -> its closes not over yet (waiting for those, or in the pool)
        self._closed = False
        self._shutting_down = False
        self._interrupt: Optional[BaseException] = None  # kept for drain() to raise: see the module docstring
        self._submitted = 0
        self._completed_count = 0
        self._inline = 0
        self._deferred = 0
        self._turn_start = 0  # monotonic ns of this turn's first completion on the loop's thread; 0: none yet
        self._cancelled = 0
        self._overflowed = 0
        self._in_flight = 0
        self._peak = 0

    # -- properties --------------------------------------------------------

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The event loop (None once it is gone)."""
        return self._loop_ref()

    @property
    def setup_flags(self) -> str:
        """io_uring setup flags: none (this backend has no ring)."""
        return "none"

    @property
    def closed(self) -> bool:
        """True after shutdown()."""
        return self._closed

    @property
    def tracer(self) -> Optional[contract.Tracer]:
        """None, or a callable given one dict per finished operation (the keys
        of the C engine's records: contract.TRACE_KEYS).  What it raises goes
        to the loop's exception handler."""
        return self._tracer

    @tracer.setter
    def tracer(self, value: Optional[contract.Tracer]) -> None:
        if value is not None and not callable(value):
            raise TypeError(contract.TRACER_NOT_CALLABLE)
        self._tracer = value

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.pool.size}/{self.pool.max_workers} workers"
        return f"<ringlet ThreadEngine {state}, {self._in_flight} in flight>"

    # -- checks ------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError(contract.ENGINE_CLOSED)
        if self._fork_generation != contract.fork_generation:
            raise RuntimeError(contract.FORKED)
        if self._thread != threading.get_ident():
            raise RuntimeError(contract.WRONG_THREAD)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_ref()
        if loop is None:
            raise RuntimeError(contract.LOOP_GONE)
        return loop

    def _new_future(self) -> asyncio.Future[Any]:
        loop = self._loop()
        if self._future_type is not None:
            future: asyncio.Future[Any] = self._future_type(loop=loop)
            return future
        return loop.create_future()

    # -- the life of an operation ------------------------------------------

    def _begin(self, op: Op) -> None:
        op.future = self._new_future()
        self._submitted += 1
        self._count_in_flight()

    def _count_in_flight(self) -> None:
        """One more operation in flight (its end decrements _in_flight)."""
        self._in_flight += 1
        if self._in_flight > self._peak:
            self._peak = self._in_flight

    def _may_complete_now(self) -> bool:
        """Whether an operation that would complete on the loop's thread (a
        device or pipe that is ready) may do so in this turn of the loop.
        Awaiting a done future does not yield, so a task looping over such
        reads would starve the loop: after INLINE_BUDGET_NS of them in one
        turn they wait for the next (as the io_uring engine's cached reads)."""
        now = time.monotonic_ns()
        if not self._turn_start:
            self._loop().call_soon(self._turned)
            self._turn_start = now
            return True
        return now - self._turn_start <= contract.INLINE_BUDGET_NS

    def _turned(self) -> None:
        self._turn_start = 0

    def _returned(self, op: Op) -> asyncio.Future[Any]:
        """The end of the submitting call: stamp it, watch the future if pending."""
        times = op.times
        if times is not None:
            times["returned"] = time.monotonic_ns()
        if not op.finished:
            op.future.add_done_callback(op.on_future_done)
        elif op.traced and times is not None:  # completed inline: awaiting it will not suspend
            op.inline = True
            times["resumed"] = times["returned"]
            self._emit(op)
        return op.future

    def _to_pool(self, op: Op, work: Callable[[], Any], key: Any = None) -> asyncio.Future[Any]:
        """Start op in a worker.  An op on a descriptor (not its close) counts
        as a user of the number until it is over: see the module docstring."""
        uses_fd = op.fd >= 0 and op.name != "close"
        if uses_fd and op.fd in self._closing:
            return self._failed(op, OSError(errno.EBADF, os.strerror(errno.EBADF)))
        self._begin(op)
        op.work = work
        op.state = "pool"
        if self.pool.submit(op, key):
            self._overflowed += 1
        if uses_fd:
            op.holds_fd = True
            self._fd_users[op.fd] = self._fd_users.get(op.fd, 0) + 1
        return self._returned(op)

    def _close_in_pool(self, op: Op, close: Callable[[], Any]) -> asyncio.Future[Any]:
        """A close made by a worker, once the operations already in the pool
        on its descriptor are over (see _fd_done).  Until it is over, new
        operations on the descriptor fail with EBADF (see _to_pool)."""
        self._begin(op)
        op.work = close
        self._closing.setdefault(op.fd, []).append(op)
        if op.fd in self._fd_users:
            op.state = "closing"
        else:
            op.state = "pool"
            if self.pool.submit(op, ("close", op.fd)):
                self._overflowed += 1
        return self._returned(op)

    def _fd_done(self, fd: int) -> None:
        """An op counted in the users of fd is over; the last one lets the close go."""
        left = self._fd_users[fd] - 1
        if left:
            self._fd_users[fd] = left
            return
        del self._fd_users[fd]
        if self._shutting_down:
            return  # shutdown() makes the closes waiting here
        for op in self._closing.get(fd, ()):
            if op.state == "closing":
                op.state = "pool"
                self.pool.submit(op, ("close", fd))

    def _number_reused(self, fd: int) -> None:
        """fd names a file opened since its closes were started: the kernel
        gave the number out again, so the closes a worker has begun are over
        (their completions, posted by another worker, may reach drain() after
        the open's) and no longer turn operations on fd away with EBADF."""
        closes = self._closing.get(fd)
        if closes is None:
            return
        closes[:] = [close for close in closes if not close.ran]
        if not closes:
            del self._closing[fd]

    def _post(self, op: Op) -> None:
        """In a worker: queue the finished op for drain() and wake the loop."""
        with self._lock:
            wake = self._wake_w
            if wake >= 0:
                if not self._completed:
                    try:
                        os.write(wake, b"\1")
                    except OSError:  # full (the loop is behind), or closed by someone: drain finds it anyway
                        pass
                self._completed.append(op)
                return
        op.orphan()  # the engine is shut down: nobody will drain it

    def _finish(self, op: Op, inline: bool) -> None:
        """On the loop thread: the op is over; resolve its future unless abandoned."""
        if op.finished:
            return
        op.finished = True
        op.state = ""
        self._completed_count += 1
        if inline:
            self._inline += 1
        else:
            self._deferred += 1
        self._in_flight -= 1
        if op.holds_fd:
            op.holds_fd = False
            self._fd_done(op.fd)
        closes = self._closing.get(op.fd) if op.name == "close" else None
        if closes is not None and op in closes:
            closes.remove(op)
            if not closes:
                del self._closing[op.fd]
        if op.name == "open" and op.error is None and isinstance(op.value, int):
            self._number_reused(op.value)
        times = op.times
        if times is not None:
            times["reaped"] = time.monotonic_ns()
            times["reap_thread"] = threading.get_ident()
        if self._shutting_down or op.future.done():
            op.orphan()
            if op.traced:
                self._emit(op)
            return
        self._resolve(op)

    def _resolve(self, op: Op) -> None:
        """Give the finished op's outcome to its pending future.  set_result is
        the caller's (a future type of its own, say): if it raises a
        BaseException the future is set once more, so that none is left
        pending; what it raised is kept (see _note_error)."""
        if op.error is None and op.convert is not None:
            try:
                op.value = op.convert(op.value)
            except Exception as exc:  # noqa: BLE001 - MemoryError, say: goes to the future
                op.error = exc
            op.convert = None  # once, even if the future is set again below
        op.release()
        future = op.future
        for _attempt in range(2):
            try:
                if op.error is None:
                    future.set_result(op.value)
                else:
                    future.set_exception(op.outcome())
                break
            except BaseException as exc:  # noqa: BLE001 - kept or reported, never lost
                self._note_error(exc, "ringlet: setting a future's result raised")
                if isinstance(exc, Exception) or future.done():
                    break
        times = op.times
        if times is not None:
            times["resolved"] = time.monotonic_ns()

    def _note_error(self, exc: BaseException, message: str) -> None:
        """exc was raised by the caller's code while an operation finished: an
        Exception (or a second interrupt) goes to the loop's exception handler;
        the first BaseException is kept for drain() to raise, and the loop is
        woken for a drain (this may be a readiness or done callback)."""
        if isinstance(exc, Exception) or self._interrupt is not None:
            loop = self._loop_ref()
            if loop is not None:
                loop.call_exception_handler({"message": message, "exception": exc})
            return
        self._interrupt = exc
        with self._lock:
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"\1")
                except OSError:  # full: a drain is coming anyway
                    pass

    def _rescue(self, op: Op, exc: BaseException) -> None:
        """An exception escaped the finishing of op (an interrupt landing
        between two statements): keep it, and resolve op's future all the same."""
        self._note_error(exc, "ringlet: finishing an operation raised")
        if op.finished and not self._shutting_down and not op.future.done():
            self._resolve(op)

    def _done_now(self, op: Op, value: Any) -> asyncio.Future[Any]:
        """An op whose answer needs no system call (a read of 0 bytes is b"",
        as os.read(fd, 0), where a pipe would otherwise wait): a done future."""
        self._begin(op)
        op.value = value
        self._finish(op, inline=True)
        return self._returned(op)

    def _failed(self, op: Op, exc: OSError) -> asyncio.Future[Any]:
        """An op that failed before it started (fstat said EBADF, say): a done future."""
        self._begin(op)
        op.error = errno_of(exc)
        self._finish(op, inline=True)
        return self._returned(op)

    def _cancel(self, op: Op) -> None:
        """The future is done (cancelled) while the op is not: drop what can be
        dropped now.  A dropped op ends with ECANCELED, as a cancelled io_uring
        operation does (its trace record says -ECANCELED)."""
        self._cancelled += 1
        state = op.state
        if op.name == "close":
            return  # made all the same: a descriptor is never left open
        if state == "pool":
            if not self.pool.remove(op):
                return  # a worker is running it: its completion is dropped (an fd closed)
        elif state == "retry":
            self.ready.cancel_retry(op)
        elif state in ("read", "write"):
            self.ready.cancel(op)
        else:
            return
        op.error = errno.ECANCELED
        self._finish(op, inline=False)

    def _emit(self, op: Op) -> None:
        times = op.times
        tracer = self._tracer
        op.traced = False  # once
        if times is None or tracer is None:
            return
        record: dict[str, Any] = {"op": op.name, "fd": op.fd, "result": op.trace_result(), "inline": op.inline,
                                  "nowait": False}  # no non-blocking attempt here: every read goes to a worker
        for key in contract.STAMPS:
            record[key] = times.get(key)
        record["thread"] = self._thread
        record["reap_thread"] = times.get("reap_thread")
        try:
            tracer(record)
        except BaseException as exc:  # noqa: BLE001 - as the C engine: reported, or kept for drain()
            self._note_error(exc, "ringlet: the tracer raised")

    def drain(self) -> int:
        """drain() -> int: resolve the futures of the operations the workers
        have finished, at most the budget (the rest at the next call); the
        loop calls this when fileno() is readable.  Returns how many.
        A BaseException (KeyboardInterrupt) raised while futures were
        resolved is raised here once every one of the batch is resolved."""
        self._check()
        try:
            os.read(self._wake_r, 4096)
        except OSError:
            pass
        with self._lock:
            done = self._completed
            if len(done) <= self._budget:
                self._completed = []
            else:  # more than one callback's worth: the rest after the loop wakes again
                done, self._completed = done[:self._budget], done[self._budget:]
                try:
                    os.write(self._wake_w, b"\1")
                except OSError:
                    pass
        for op in done:
            try:
                self._reaped(op)
            except BaseException as exc:  # noqa: BLE001 - the rest of the batch is resolved first
                self._rescue(op, exc)
                if not op.finished and op.state == "pool":  # interrupted before it was handled: once more
                    try:
                        self._reaped(op)
                    except BaseException as again:  # noqa: BLE001
                        self._rescue(op, again)
        interrupt, self._interrupt = self._interrupt, None
        if interrupt is not None:
            raise interrupt
        return len(done)

    def _reaped(self, op: Op) -> None:
        if op.value is RETRY:  # a FIFO opened for writing, no reader yet
            op.value = None
            if self._shutting_down or op.future.done():
                self._finish(op, inline=False)
            else:
                self.ready.retry_later(op)
            return
        self._finish(op, inline=False)

    # -- the engine as a whole -----------------------------------------------

    def fileno(self) -> int:
        """fileno() -> int: the pipe the workers signal when they finish something (the loop watches it)."""
        if self._closed:
            raise ValueError(contract.ENGINE_CLOSED)
        return self._wake_r

    def stats(self) -> dict[str, int | float]:
        """stats() -> dict: the counters of the io_uring engine, with the same
        keys (enter_calls stays 0: no ring; overflowed counts work that
        waited for a busy worker)."""
        return {
            "submitted": self._submitted,
            "completed": self._completed_count,
            "completed_inline": self._inline,
            "completed_nowait": 0,  # no non-blocking attempt: every read goes to a worker
            "completed_nowait_sqpoll": 0,
            "files_nowait": 0,
            "files_chained": 0,  # write_file opens, writes and closes in turn
            "writes_quiet": 0,  # copy's writes each wake the loop
            "deferred": self._deferred,
            "cancelled": self._cancelled,
            "enter_calls": 0,
            "overflowed": self._overflowed,
            "in_flight": self._in_flight,
            "peak_in_flight": self._peak,
            "ops_per_enter": 0.0,
        }

    def shutdown(self, timeout: float = 1.0) -> int:
        """shutdown(timeout=1.0) -> int: drop what waits (in the queue, for a
        pipe, for a retry), wait up to timeout seconds for the calls workers
        are making, and close.  Futures are not resolved; a descriptor an open
        still returns is closed, and so is one whose close had not been made.
        Returns how many were left running."""
        timeout = _args.timeout(timeout)
        if self._closed or self._fork_generation != contract.fork_generation:
            return 0
        self._shutting_down = True
        self._tracer = None
        # The loop's registrations and timers belong to the loop thread: only it undoes them.
        owner = self._thread == threading.get_ident()
        for op in self.ready.drop_all(owner):
            self._finish(op, inline=False)
        dropped, running = self.pool.stop(timeout)
        for op in dropped:
            self._finish(op, inline=False)
        with self._lock:
            done, self._completed = self._completed, []
            wake_r, wake_w = self._wake_r, self._wake_w
            self._wake_r = self._wake_w = -1
        for op in done:
            if op.value is RETRY:
                op.value = None
            self._finish(op, inline=False)
        for closes in list(self._closing.values()):
            for op in list(closes):
                if op.state == "closing":  # never handed to a worker: orphaned, the close is made now
                    self._finish(op, inline=False)
        self._closed = True
        for fd in (wake_r, wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        return running
