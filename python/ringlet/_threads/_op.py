"""One operation of the thread engine: what it holds until it is over (the
caller's buffer, O_DIRECT memory, a descriptor an open returned), its
future, and its trace stamps."""

from __future__ import annotations

import errno
import os
import pickle
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import _contract as contract
from ._calls import oserror

if TYPE_CHECKING:
    import asyncio

    from ._core import EngineCore
    from ._memory import Bounce
    from ._ready import Waiters


class Op:
    """One operation: what it holds until it is over, and its future."""

    __slots__ = ("engine", "name", "fd", "future", "work", "convert", "value", "error", "filename", "filename2",
                 "holder", "view", "bounce", "done", "ran", "finished", "inline", "state", "retries", "handle",
                 "times", "traced", "key", "waiting", "holds_fd")

    def __init__(self, engine: EngineCore, name: str, fd: int = -1, filename: Any = None,
                 filename2: Any = None) -> None:
        self.engine = engine
        self.name = name
        self.fd = fd
        self.filename = filename
        self.filename2 = filename2
        self.future: asyncio.Future[Any] = None  # type: ignore[assignment]  # set by EngineCore._begin
        self.work: Optional[Callable[..., Any]] = None  # () in a worker; (fd) for a descriptor that may block
        self.convert: Optional[Callable[[Any], Any]] = None  # the work's value -> the result, on the loop thread
        self.value: Any = None
        self.error: Any = None  # an errno, or an exception that is not an OSError
        self.holder: Optional[pickle.PickleBuffer] = None  # the caller's buffer, exported
        self.view: Optional[memoryview] = None
        self.bounce: Optional[Bounce] = None  # O_DIRECT: the aligned memory the kernel uses
        self.done = 0  # bytes written so far (writes)
        self.ran = False  # the system call was made (a close that never ran is made when the op is dropped)
        self.finished = False
        self.inline = False
        # "pool", "retry", "read"/"write" (waiting for readiness), "closing"
        # (a close waiting for the operations on its descriptor), or "".
        self.state = ""
        self.retries = 0
        self.handle: Optional[asyncio.TimerHandle] = None  # the retry timer
        self.key: Any = None  # the pool's chain: writes to one file run in order
        self.waiting: Optional[Waiters] = None
        self.holds_fd = False  # counted in the engine's users of fd: a close waits for it
        self.traced = engine._tracer is not None
        self.times: Optional[dict[str, Any]] = {"submitted": time.monotonic_ns()} if self.traced else None

    def run(self) -> None:
        """In a worker: do the work, hand the outcome to the loop thread."""
        self.ran = True
        try:
            self.value = self.work()  # type: ignore[misc]
        except OSError as exc:
            self.error = exc.errno if exc.errno is not None else errno.EIO
        except BaseException as exc:  # noqa: BLE001 - goes to the future
            self.error = exc
        self.engine._post(self)

    def release(self) -> None:
        """Give back the caller's buffer and the bounce buffer (the operation is over)."""
        self.work = self.convert = None
        self.release_caller()
        if self.bounce is not None:
            self.bounce.close()
            self.bounce = None

    def release_caller(self) -> None:
        if self.view is not None:
            self.view.release()
            self.view = None
        if self.holder is not None:
            self.holder.release()
            self.holder = None

    def orphan(self) -> None:
        """Over, and nobody wants the outcome: close a descriptor nobody else will
        close (one an open returned, or one whose close was dropped unmade)."""
        if self.name == "open" and self.error is None and isinstance(self.value, int):
            _close_quietly(self.value)
            self.value = None
        elif self.name == "close" and not self.ran:
            self.ran = True
            _close_quietly(self.fd)
        self.release()

    def outcome(self) -> Any:
        """The exception for the future (error set), built with the op's filenames."""
        if isinstance(self.error, int):
            return oserror(self.error, self.filename, self.filename2)
        return self.error

    def trace_result(self) -> int:
        """The result as the io_uring engine records it: >= 0, or -errno."""
        if self.error is not None:
            return -self.error if isinstance(self.error, int) else -errno.EIO
        value = self.value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, (bytes, bytearray)):
            return len(value)
        return 0

    def on_future_done(self, future: asyncio.Future[Any]) -> None:
        """The future's done callback: a cancelled wait drops the operation."""
        engine = self.engine
        if engine._fork_generation != contract.fork_generation:
            return  # a forked child's copy: the loop's epoll instance is the parent's too
        if self.finished:
            if self.traced and self.times is not None:  # resolved: its task resumes right after this
                self.times["resumed"] = time.monotonic_ns()
                engine._emit(self)
            return
        engine._cancel(self)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
