"""Waiting on the loop instead of in a worker: descriptors that may block
for ever (pipes, FIFOs, sockets, character devices) are tried non-blocking
and then watched for readiness; FIFO opens without a reader are retried on
a timer.

Each file and direction has one queue (``Waiters``), served in order, and a
duplicate of the descriptor the loop watches, held until the last operation
waiting on that file is over (as the kernel holds the file: closing the
caller's descriptor does not disturb them).  ``O_NONBLOCK`` is set just
around each system call and restored right after (the flag belongs to the
open file description, which another process may share).  Cancelling is
leaving the queue.  One readiness callback serves at most the engine's
budget of operations: the loop calls again while the file stays ready, so a
long queue never makes one slow callback; and a file found ready once the
turn's inline budget is spent is served in the next turn, so a task that
reads a device that is always ready still lets the loop turn.  An interrupt
raised while a queue is served is kept for the engine's drain() to raise
(see ``_core``).
"""

from __future__ import annotations

import collections
import errno
import fcntl
import os
import select
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import _contract as contract
from ._calls import errno_of

if TYPE_CHECKING:
    import asyncio

    from ._core import EngineCore
    from ._op import Op

_RETRY_FIRST = 0.001  # a FIFO opened for writing without a reader: first delay before trying again
_RETRY_MAX = 0.02  # ... doubling up to this
_POLL_INTERVAL = 0.005  # a descriptor epoll cannot watch is tried this often


class Waiters:
    """Operations waiting for one file (a pipe, socket or device) to be
    ready in one direction, in order, and the duplicate descriptor the loop
    watches for them."""

    __slots__ = ("key", "fd", "ops", "timer")

    def __init__(self, key: tuple[int, int, str], fd: int) -> None:
        self.key = key  # (st_dev, st_ino, "read" or "write")
        self.fd = fd
        self.ops: collections.deque[Op] = collections.deque()
        self.timer: Optional[asyncio.Handle] = None  # a descriptor epoll cannot watch, or served next turn


class Readiness:
    """The engine's operations that wait on the loop: for a file to be
    ready, or for the next try of a FIFO open."""

    def __init__(self, engine: EngineCore) -> None:
        self.engine = engine
        self.waiting: dict[tuple[int, int, str], Waiters] = {}
        self.retrying: set[Op] = set()

    # -- descriptors that may block for ever --------------------------------

    def start(self, op: Op, st: os.stat_result, direction: str, work: Callable[[int], Any]) -> asyncio.Future[Any]:
        """Do op on the loop thread, without blocking: at once, or when the file is ready."""
        engine = self.engine
        engine._begin(op)
        op.work = work
        fd = op.fd
        key = (st.st_dev, st.st_ino, direction)
        waiters = self.waiting.get(key)
        if waiters is None:
            try:
                mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
                if mode == (os.O_WRONLY if direction == "read" else os.O_RDONLY):
                    raise OSError(errno.EBADF, os.strerror(errno.EBADF))
                ready = direction == "write" or _ready_now(fd)
                next_turn = ready and not engine._may_complete_now()
                if ready and not next_turn and self._attempt(op, fd, inline=True):
                    return engine._returned(op)
                # Wait on a descriptor of our own, as the kernel holds the file.
                waiters = Waiters(key, os.dup(fd))
            except OSError as exc:
                op.error = exc.errno
                engine._finish(op, inline=True)
                return engine._returned(op)
            self.waiting[key] = waiters
            if next_turn:  # (the loop is alive: _begin made the op's future on it)
                waiters.timer = engine._loop().call_soon(self._on_next_turn, waiters, direction)
            else:
                self._watch(waiters, direction)
        op.state = direction
        op.waiting = waiters
        waiters.ops.append(op)
        return engine._returned(op)

    def _attempt(self, op: Op, fd: int, inline: bool) -> bool:
        """One non-blocking try on fd; True if the op is over (done or failed)."""
        try:
            blocking = os.get_blocking(fd)
            if blocking:
                os.set_blocking(fd, False)
            try:
                op.value = op.work(fd)  # type: ignore[misc]
            finally:
                if blocking:
                    try:
                        os.set_blocking(fd, True)
                    except OSError:
                        pass
        except BlockingIOError:
            return False
        except OSError as exc:
            op.error = errno_of(exc)
        except Exception as exc:  # noqa: BLE001 - goes to the future
            op.error = exc
        except BaseException as exc:  # noqa: BLE001 - an interrupt in the call: kept for drain(), op tried again
            self.engine._note_error(exc, "ringlet: interrupted while serving a file")
            return False
        self.engine._finish(op, inline)
        return True

    def _watch(self, waiters: Waiters, direction: str) -> None:
        loop = self.engine._loop_ref()
        if loop is None:
            return
        try:
            blocking = os.get_blocking(waiters.fd)
            if direction == "read":
                loop.add_reader(waiters.fd, self._on_ready, waiters)
            else:
                loop.add_writer(waiters.fd, self._on_ready, waiters)
            if blocking and not os.get_blocking(waiters.fd):
                # uvloop (libuv's uv_poll_init) made the file non-blocking for
                # good; the caller's descriptor shares that flag: put it back.
                os.set_blocking(waiters.fd, True)
        except (OSError, ValueError):
            # A descriptor epoll cannot watch (a device without poll support):
            # try it every few milliseconds instead.
            waiters.timer = loop.call_later(_POLL_INTERVAL, self._on_timer, waiters)

    def _on_next_turn(self, waiters: Waiters, direction: str) -> None:
        """Serve a file that was ready when the turn's budget was spent; watch it if any op is left."""
        if self.engine._fork_generation != contract.fork_generation:
            return
        waiters.timer = None
        self._on_ready(waiters)
        if waiters.ops and self.waiting.get(waiters.key) is waiters:
            self._watch(waiters, direction)

    def _on_timer(self, waiters: Waiters) -> None:
        if self.engine._fork_generation != contract.fork_generation:
            return
        waiters.timer = None
        self._on_ready(waiters)
        if waiters.ops and self.waiting.get(waiters.key) is waiters:
            loop = self.engine._loop_ref()
            if loop is not None:
                waiters.timer = loop.call_later(_POLL_INTERVAL, self._on_timer, waiters)

    def _unwatch(self, waiters: Waiters, owner: bool = True) -> None:
        """No operation waits on this file any more: stop watching, close our descriptor."""
        if self.waiting.get(waiters.key) is waiters:
            del self.waiting[waiters.key]
        loop = self.engine._loop_ref()
        if waiters.timer is not None:
            if owner:
                waiters.timer.cancel()
            waiters.timer = None
        elif owner and loop is not None and not loop.is_closed():
            try:
                if waiters.key[2] == "read":
                    loop.remove_reader(waiters.fd)
                else:
                    loop.remove_writer(waiters.fd)
            except (OSError, ValueError, RuntimeError):
                pass
        try:
            os.close(waiters.fd)
        except OSError:
            pass

    def _on_ready(self, waiters: Waiters) -> None:
        """The loop says the file is ready: serve its queue in order until it
        would block, at most the engine's budget of operations this time."""
        engine = self.engine
        if engine._closed or engine._fork_generation != contract.fork_generation:
            return
        ops = waiters.ops
        budget = engine._budget
        while ops:
            op = ops[0]
            if op.finished:
                ops.popleft()
                continue
            if budget == 0:
                return  # the rest when the loop calls again: the file is still ready
            budget -= 1
            try:
                over = self._attempt(op, waiters.fd, inline=False)
            except BaseException as exc:  # noqa: BLE001 - an interrupt between two statements
                engine._rescue(op, exc)
                over = op.finished
            if not over:
                return
            if ops and ops[0] is op:
                ops.popleft()
        if self.waiting.get(waiters.key) is waiters:
            self._unwatch(waiters)

    def cancel(self, op: Op) -> None:
        """op's wait was cancelled: it leaves its queue."""
        waiters = op.waiting
        if waiters is not None:
            try:
                waiters.ops.remove(op)
            except ValueError:
                pass
            if not waiters.ops:
                self._unwatch(waiters)

    # -- FIFO opens waiting for a reader --------------------------------------

    def retry_later(self, op: Op) -> None:
        """An open of a FIFO for writing found no reader: try again after a
        short, growing, cancellable delay."""
        loop = self.engine._loop_ref()
        assert loop is not None  # the loop is draining this op
        delay = min(_RETRY_FIRST * (2 ** op.retries), _RETRY_MAX)
        op.retries += 1
        op.state = "retry"
        self.retrying.add(op)
        op.handle = loop.call_later(delay, self._retry, op)

    def _retry(self, op: Op) -> None:
        engine = self.engine
        if engine._fork_generation != contract.fork_generation:
            return
        op.handle = None
        self.retrying.discard(op)
        if op.finished or engine._closed:
            return
        op.state = "pool"
        engine.pool.submit(op)

    def cancel_retry(self, op: Op) -> None:
        if op.handle is not None:
            op.handle.cancel()
            op.handle = None
        self.retrying.discard(op)

    # -- shutdown -----------------------------------------------------------

    def drop_all(self, owner: bool) -> list[Op]:
        """Stop every wait (the loop's registrations and timers only from its
        own thread: owner); return the operations that were waiting."""
        dropped: list[Op] = []
        for waiters in list(self.waiting.values()):
            self._unwatch(waiters, owner)
            dropped.extend(waiters.ops)
        for op in self.retrying:
            if owner and op.handle is not None:
                op.handle.cancel()
            dropped.append(op)
        self.retrying.clear()
        return dropped


def _ready_now(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
