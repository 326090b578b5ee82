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
  (io_uring's io-wq does the same).  Buffers for reads are made on the loop
  thread (large ones as anonymous maps), so that workers allocate nothing.
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
resolves their futures on the loop thread.  So this engine has the life cycle
of the io_uring one: one per loop, ``shutdown()`` when the loop drops its
reader, and RuntimeError when used from another thread or after ``fork()``.

What differs: ``stats()["enter_calls"]`` stays 0 (no ring), and operations on
regular files never complete inline (each is a trip to a worker).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import mmap
import operator
import os
import pickle
import select
import stat
import threading
import time
import weakref
from typing import Any, Callable, Optional

__all__ = ["ThreadEngine", "WorkerPool", "OPCODES", "default_max_workers"]

_MAX_RW = 0x7FFFF000  # the most the kernel moves in one read or write
_MAX_DIRECT = 0x7FD00000  # O_DIRECT: the most read at once, and the pieces of a long write
_COPY_MAX_SLOTS = 16  # as the C engine's copy (RL_COPY_MAX_SLOTS)
_SMALL_READ = 256 * 1024  # larger read buffers are anonymous maps: no zero-filling, no malloc arena
_IDLE_SECONDS = 5.0  # a worker with nothing to do for this long exits
_RETRY_FIRST = 0.001  # a FIFO opened for writing without a reader: first delay before trying again
_RETRY_MAX = 0.02  # ... doubling up to this
_POLL_INTERVAL = 0.005  # a descriptor epoll cannot watch is tried this often
_AT_FDCWD = -100

# The IORING_OP_* whose work this backend does, for supports().
OPCODES = frozenset({
    3,   # FSYNC
    14,  # ASYNC_CANCEL (a cancelled wait is dropped)
    18,  # OPENAT
    19,  # CLOSE
    21,  # STATX
    22,  # READ
    23,  # WRITE
    35,  # RENAMEAT
    36,  # UNLINKAT
    37,  # MKDIRAT
    38,  # SYMLINKAT
    39,  # LINKAT
    55,  # FTRUNCATE
})

_UNSET: Any = object()  # "argument not given" (None given means None, as in C)
_RETRY: Any = object()  # a worker's answer: open this FIFO again later

_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def default_max_workers() -> int:
    """The pool size when none is given: as concurrent.futures' default."""
    return min(32, (os.cpu_count() or 1) + 4)


# ---------------------------------------------------------------------------
# arguments, checked as the C engine checks them
# ---------------------------------------------------------------------------


def _int32(obj: Any, what: str) -> int:
    value = operator.index(obj)
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise OverflowError(f"{what} is out of range")
    return value


def _c_int(obj: Any) -> int:
    """The "i" format of PyArg_ParseTuple."""
    value = operator.index(obj)
    if value > 0x7FFFFFFF:
        raise OverflowError("signed integer is greater than maximum")
    if value < -0x80000000:
        raise OverflowError("signed integer is less than minimum")
    return value


def _uint32(obj: Any, what: str) -> int:
    """An int from 0 to 2**32 - 1 (the C engine's parse_unsigned)."""
    if not isinstance(obj, int):
        raise TypeError(f"{what} must be an int, not {type(obj).__name__}")
    if obj < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if obj > 0xFFFFFFFF:
        raise OverflowError(f"{what} must be at most {0xFFFFFFFF}")
    return obj


def _size(obj: Any) -> int:
    """PyLong_AsSsize_t."""
    if not isinstance(obj, int):
        raise TypeError("an integer is required")
    if not -0x8000000000000000 <= obj <= 0x7FFFFFFFFFFFFFFF:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return obj


def _offset(obj: Any) -> int:
    """An offset: -1 means the file position, other negatives are refused."""
    value = operator.index(obj)
    if not -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
        raise OverflowError("int too big to convert")
    if value < -1:
        raise ValueError("negative offset")
    return value


def _timeout(obj: Any) -> float:
    """The "d" format of PyArg_ParseTuple, and no NaN."""
    if hasattr(type(obj), "__float__"):
        value = float(obj)
    elif hasattr(type(obj), "__index__"):
        value = float(operator.index(obj))
    else:
        raise TypeError(f"must be real number, not {type(obj).__name__}")
    if value != value:
        raise ValueError("timeout must be a number")
    return value


def _align(obj: Any) -> int:
    """The align argument (PyLong_AsUnsignedLong); too big becomes 2 MiB, refused later."""
    if not isinstance(obj, int):
        raise TypeError("an integer is required")
    if obj < 0:
        raise OverflowError("can't convert negative value to unsigned int")
    if obj > 0xFFFFFFFFFFFFFFFF:
        raise OverflowError("Python int too large to convert to C unsigned long")
    return 1 << 21 if obj > 1 << 20 else obj


def _direct_offset(fd: int, offset: int, length: int, align: int, write: bool) -> "tuple[int, bool]":
    """The offset a read or write uses, checked as the C engine checks it:
    (offset, whether the file position moves past the bytes moved)."""
    moves = False
    if offset < 0 and align:
        # O_DIRECT goes through a bounce buffer at an explicit offset: the
        # file position, which the operation then moves itself.
        try:
            appending = write and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
            if not appending:
                offset, moves = os.lseek(fd, 0, os.SEEK_CUR), True
        except OSError:
            pass  # a stream (or a bad descriptor: the call says so)
    if offset >= 0 and offset + length > 0x7FFFFFFFFFFFFFFF - (2 << 20 if align else 0):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # what pread(2)/pwrite(2) say of it
    if align:
        if align < 512 or align > 1 << 20 or align & (align - 1):
            raise ValueError("align must be a power of two from 512 to 1 MiB")
        if offset < 0:
            raise ValueError("O_DIRECT I/O needs a file with offsets (not a stream or append mode)")
        if write and (offset % align or length % align):
            raise ValueError(f"an O_DIRECT write needs offset and length multiples of {align}")
    return offset, moves


def _path(obj: Any) -> bytes:
    if not isinstance(obj, bytes):
        raise TypeError(f"path must be bytes, not {type(obj).__name__}")
    if b"\0" in obj:
        raise ValueError("embedded null byte")
    return obj


def _hold_buffer(obj: Any, writable: bool, method: str) -> "tuple[pickle.PickleBuffer, memoryview]":
    """Export obj's buffer for as long as the operation may touch it (it
    cannot be resized or released meanwhile), as a flat byte view."""
    try:
        holder = pickle.PickleBuffer(obj)
    except (TypeError, BufferError):
        holder = None
    if holder is not None:
        view = memoryview(holder)
        if view.c_contiguous and not (writable and view.readonly):
            if view.ndim != 1 or view.format != "B":
                view = view.cast("B")
            return holder, view
        view.release()
        holder.release()
    kind = "read-write bytes-like object" if writable else "a bytes-like object"
    raise TypeError(f"{method}() argument must be {kind}, not '{type(obj).__name__}'")


def _oserror(err: int, filename: Any = None, filename2: Any = None) -> OSError:
    """OSError(errno, strerror, filename[, filename2]): picks the subclass, as C does."""
    if filename2 is None:
        return OSError(err, os.strerror(err), filename)
    return OSError(err, os.strerror(err), filename, None, filename2)


def _kind_of(mode: int) -> str:
    """"file" (a worker may wait on it), "stream" (pipe, FIFO, socket: no
    offsets) or "char" (character device)."""
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "stream"
    if stat.S_ISCHR(mode):
        return "char"
    return "file"


# ---------------------------------------------------------------------------
# memory for reads
# ---------------------------------------------------------------------------


def _read_buffer(size: int) -> Any:
    """A buffer to read size bytes into, made on the loop thread."""
    if size <= _SMALL_READ:
        return bytearray(size)
    try:
        return mmap.mmap(-1, size)  # pages appear as the kernel writes them
    except OSError:
        raise MemoryError(f"cannot map {size} bytes for a read") from None


def _take(buffer: Any, n: int) -> bytes:
    """The first n bytes of a read buffer, as bytes; the buffer is done with."""
    if isinstance(buffer, bytearray):
        return bytes(buffer) if n == len(buffer) else bytes(memoryview(buffer)[:n])
    with memoryview(buffer) as view, view[:n] as part:
        data = bytes(part)
    buffer.close()
    return data


class _Bounce:
    """O_DIRECT: memory aligned to align, covering the aligned range around
    [offset, offset + length), where the kernel reads or writes."""

    __slots__ = ("mm", "view", "start", "skip", "length", "moves")

    def __init__(self, offset: int, length: int, align: int, moves: bool) -> None:
        start = offset - offset % align
        end = -(-(offset + length) // align) * align
        size = max(end - start, align)
        extra = align if align > mmap.PAGESIZE else 0  # an anonymous map is page-aligned
        try:
            self.mm = mmap.mmap(-1, size + extra)
        except OSError:
            raise MemoryError(f"cannot map {size} bytes for O_DIRECT") from None
        at = -_address(self.mm) % align if extra else 0
        self.view = memoryview(self.mm)[at:at + size]
        self.start, self.skip, self.length = start, offset - start, length
        self.moves = moves  # offset -1 was given: move the file position past what was read

    def read(self, fd: int) -> int:
        """In a worker: one aligned read; how many of the bytes asked for came."""
        n = os.preadv(fd, [self.view], self.start)
        n = max(0, min(n - self.skip, self.length))
        if self.moves:
            os.lseek(fd, self.start + self.skip + n, os.SEEK_SET)
        return n

    def write(self, op: "_Op", fd: int) -> int:
        """In a worker: all of it at the aligned offset."""
        n = _write_all(op, fd, self.start, _MAX_DIRECT)
        if self.moves:
            os.lseek(fd, self.start + n, os.SEEK_SET)
        return n

    def read_into(self, fd: int, buffer: memoryview) -> int:
        n = self.read(fd)
        with self.view[self.skip:self.skip + n] as part:
            buffer[:n] = part
        return n

    def copy_out(self, n: int) -> bytes:
        with self.view[self.skip:self.skip + n] as part:
            return bytes(part)

    def close(self) -> None:
        self.view.release()
        self.mm.close()


def _address(buffer: Any) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


# ---------------------------------------------------------------------------
# the system calls (in a worker, or non-blocking on the loop thread)
# ---------------------------------------------------------------------------


def _read(fd: int, size: int, offset: int) -> bytes:
    return os.read(fd, size) if offset < 0 else os.pread(fd, size, offset)


def _readinto(fd: int, buffer: Any, offset: int) -> int:
    """One read into buffer (at most _MAX_RW bytes of it)."""
    with memoryview(buffer) as view:
        with (view[:_MAX_RW] if len(view) > _MAX_RW else view[:]) as part:
            return os.readv(fd, [part]) if offset < 0 else os.preadv(fd, [part], offset)


def _write_all(op: "_Op", fd: int, offset: int, piece: int = _MAX_RW) -> int:
    """Write op.view from op.done on; a short write is continued.  In a
    non-blocking call, BlockingIOError leaves op.done where it got to."""
    view = op.view
    total = len(view)  # type: ignore[arg-type]
    while op.done < total:
        with view[op.done:op.done + piece] as part:  # type: ignore[index]
            if offset < 0:
                n = os.write(fd, part)
            else:
                try:
                    n = os.pwrite(fd, part, offset + op.done)
                except OSError as exc:
                    if exc.errno != errno.ESPIPE:
                        raise
                    n = os.write(fd, part)
        if n == 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        op.done += n
    return total


def _at_offset(kind: str, offset: int, call: Callable[[int, int], Any]) -> Callable[[int], Any]:
    """call(fd, offset) on a pipe, socket or device: pipes and sockets have no
    offset (io_uring ignores it there too); a device without one says ESPIPE."""
    if kind == "stream" or offset < 0:
        return lambda fd: call(fd, -1)

    def at(fd: int) -> Any:
        try:
            return call(fd, offset)
        except OSError as exc:
            if exc.errno != errno.ESPIPE:
                raise
            return call(fd, -1)

    return at


def _pread_all(fd: int, buffers: "list[Any]", offsets: "list[int]") -> "list[int]":
    counts, error = [], None
    for buffer, offset in zip(buffers, offsets):
        try:
            counts.append(_readinto(fd, buffer, offset))
        except OSError as exc:
            counts.append(0)
            error = error or exc
    if error is not None:
        raise error
    return counts


def _open_now(path: bytes, flags: int, mode: int) -> Any:
    """In a worker: open, never blocking on a FIFO (see the module docstring)."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK, mode)
    except OSError as exc:
        # A FIFO opened for writing while nobody reads it: ENXIO.  Try again
        # later, unless the caller asked for O_NONBLOCK itself.
        if exc.errno == errno.ENXIO and not flags & os.O_NONBLOCK and flags & os.O_ACCMODE != os.O_RDONLY:
            try:
                if stat.S_ISFIFO(os.stat(path).st_mode):
                    return _RETRY
            except OSError:
                pass
        raise
    if not flags & os.O_NONBLOCK:
        try:
            os.set_blocking(fd, True)
        except OSError:
            os.close(fd)
            raise
    return fd


_libc_handle: Any = None


def _libc() -> Any:
    global _libc_handle
    if _libc_handle is None:
        import ctypes
        import ctypes.util

        _libc_handle = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc_handle


def _check_libc(ret: int) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _renameat2(src: bytes, dst: bytes, flags: int) -> None:
    """renameat2(2) with flags, which the os module does not offer."""
    import ctypes

    func = getattr(_libc(), "renameat2", None)
    if func is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    _check_libc(func(_AT_FDCWD, src, _AT_FDCWD, dst, ctypes.c_uint(flags)))


def _link_following(src: bytes, dst: bytes) -> None:
    """linkat(2) with AT_SYMLINK_FOLLOW (os.link calls link(2), which does not follow)."""
    at_symlink_follow = 0x400
    _check_libc(_libc().linkat(_AT_FDCWD, src, _AT_FDCWD, dst, at_symlink_follow))


# ---------------------------------------------------------------------------
# the worker pool
# ---------------------------------------------------------------------------


class WorkerPool:
    """At most max_workers daemon threads running jobs in order.  Threads are
    started on demand and exit after _IDLE_SECONDS without work, or at
    stop().  Only work that always finishes is given to it.

    Jobs submitted with the same key run one after the other, in the order
    they were submitted (as io_uring's io-wq does with writes to one file):
    the first waits in the queue, the others in its chain."""

    def __init__(self, max_workers: int, name: str = "ringlet-worker") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._queue: "collections.deque[_Op]" = collections.deque()
        self._chains: "dict[Any, collections.deque[_Op]]" = {}  # key -> jobs waiting for the one ahead
        self._threads: "set[threading.Thread]" = set()
        self._idle = 0  # threads waiting for work
        self._stopping = False
        self._count = 0
        self.busy = 0  # threads running a job right now

    @property
    def size(self) -> int:
        """Threads alive right now."""
        return len(self._threads)

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker."""
        with self._cv:
            return len(self._queue) + sum(len(chain) for chain in self._chains.values())

    def threads(self) -> "list[threading.Thread]":
        with self._cv:
            return list(self._threads)

    def submit(self, job: "_Op", key: Any = None) -> bool:
        """Queue job; True if it has to wait for a busy worker (overflow)."""
        with self._cv:
            if self._stopping:
                raise RuntimeError("ringlet: this engine is closed")
            job.key = key
            if key is not None:
                chain = self._chains.get(key)
                if chain is not None:  # one with this key is queued or running: after it
                    chain.append(job)
                    return False
                self._chains[key] = collections.deque()
            self._queue.append(job)
            waits = False
            if len(self._queue) > self._idle:
                if len(self._threads) < self.max_workers:
                    self._count += 1
                    thread = threading.Thread(target=self._work, name=f"{self._name}-{self._count}", daemon=True)
                    self._threads.add(thread)
                    thread.start()
                else:
                    waits = True
            self._cv.notify()
            return waits

    def remove(self, job: "_Op") -> bool:
        """Take a job that has not started out of the queue; False if it has."""
        with self._cv:
            chain = self._chains.get(job.key) if job.key is not None else None
            if chain is not None and job in chain:
                chain.remove(job)
                return True
            try:
                self._queue.remove(job)
            except ValueError:
                return False
            if chain is not None:
                self._next_in_chain(job.key, chain)
            return True

    def _next_in_chain(self, key: Any, chain: "collections.deque[_Op]") -> None:
        """The job ahead with this key is over: queue the next one, first in line."""
        if chain:
            self._queue.appendleft(chain.popleft())
            self._cv.notify()
        else:
            del self._chains[key]

    def _work(self) -> None:
        me = threading.current_thread()
        cv = self._cv
        while True:
            with cv:
                while not self._queue and not self._stopping:
                    self._idle += 1
                    try:
                        woken = cv.wait(_IDLE_SECONDS)
                    finally:
                        self._idle -= 1
                    if not woken and not self._queue:
                        self._threads.discard(me)
                        return
                if not self._queue:  # stopping
                    self._threads.discard(me)
                    cv.notify_all()
                    return
                job = self._queue.popleft()
                self.busy += 1
            try:
                job.run()
            finally:
                with cv:
                    self.busy -= 1
                    chain = self._chains.get(job.key) if job.key is not None else None
                    if chain is not None:
                        self._next_in_chain(job.key, chain)
                    if self._stopping:
                        cv.notify_all()

    def stop(self, timeout: float) -> "tuple[list[_Op], int]":
        """Refuse new work, take back what has not started, wait up to
        timeout for the running jobs; return (jobs not started, jobs still running)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cv:
            self._stopping = True
            dropped = list(self._queue)
            for chain in self._chains.values():
                dropped.extend(chain)
            self._queue.clear()
            self._chains.clear()
            self._cv.notify_all()
            while self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            return dropped, self.busy


# ---------------------------------------------------------------------------
# one operation, and the operations waiting on one file
# ---------------------------------------------------------------------------

_STAMPS = ("submitted", "returned", "reaped", "resolved", "resumed")


class _Op:
    """One operation: what it holds until it is over, and its future."""

    __slots__ = ("engine", "name", "fd", "future", "work", "convert", "value", "error", "filename", "filename2",
                 "holder", "view", "bounce", "done", "finished", "inline", "state", "retries", "handle", "times",
                 "traced", "key", "waiting")

    def __init__(self, engine: "ThreadEngine", name: str, fd: int = -1, filename: Any = None,
                 filename2: Any = None) -> None:
        self.engine = engine
        self.name = name
        self.fd = fd
        self.filename = filename
        self.filename2 = filename2
        self.future: Any = None
        self.work: Optional[Callable[..., Any]] = None  # () in a worker; (fd) for a descriptor that may block
        self.convert: Optional[Callable[[Any], Any]] = None  # the work's value -> the result, on the loop thread
        self.value: Any = None
        self.error: Any = None  # an errno, or an exception that is not an OSError
        self.holder: Optional[pickle.PickleBuffer] = None  # the caller's buffer, exported
        self.view: Optional[memoryview] = None
        self.bounce: Optional[_Bounce] = None  # O_DIRECT: the aligned memory the kernel uses
        self.done = 0  # bytes written so far (writes)
        self.finished = False
        self.inline = False
        self.state = ""  # "pool", "retry", "read"/"write" (waiting for readiness), or ""
        self.retries = 0
        self.handle: Any = None  # the retry timer
        self.key: Any = None  # the pool's chain: writes to one file run in order
        self.waiting: Optional[_Waiters] = None
        self.traced = engine._tracer is not None
        self.times: Optional[dict] = {"submitted": time.monotonic_ns()} if self.traced else None

    def run(self) -> None:
        """In a worker: do the work, hand the outcome to the loop thread."""
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
        """Over, and nobody wants the outcome: close a descriptor nobody will close."""
        if self.name == "open" and self.error is None and isinstance(self.value, int):
            try:
                os.close(self.value)
            except OSError:
                pass
            self.value = None
        self.release()

    def outcome(self) -> Any:
        """The exception for the future (error set), built with the op's filenames."""
        if isinstance(self.error, int):
            return _oserror(self.error, self.filename, self.filename2)
        return self.error

    def trace_result(self) -> int:
        if self.error is not None:
            return -self.error if isinstance(self.error, int) else -errno.EIO
        value = self.value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, (bytes, bytearray)):
            return len(value)
        return 0

    def on_future_done(self, future: Any) -> None:
        """The future's done callback: a cancelled wait drops the operation."""
        if self.engine._fork_generation != _fork_generation:
            return  # a forked child's copy: the loop's epoll instance is the parent's too
        if self.finished:
            if self.traced and self.times is not None:  # resolved: its task resumes right after this
                self.times["resumed"] = time.monotonic_ns()
                self.engine._emit(self)
            return
        self.engine._cancel(self)


class _Waiters:
    """Operations waiting for one file (a pipe, socket or device) to be
    ready in one direction, in order, and the duplicate descriptor the loop
    watches for them."""

    __slots__ = ("key", "fd", "ops", "timer")

    def __init__(self, key: Any, fd: int) -> None:
        self.key = key
        self.fd = fd
        self.ops: "collections.deque[_Op]" = collections.deque()
        self.timer: Any = None  # for a descriptor epoll cannot watch


# ---------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------


class ThreadEngine:
    """ringlet's engine on worker threads and loop readiness, for one event
    loop.  Use ringlet.get_engine() rather than creating one: it also
    registers the engine's fileno() with the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sq_entries: int = 256, cq_entries: int = 4096,
                 future_type: Optional[type] = None, max_workers: Optional[int] = None) -> None:
        self._loop_ref = weakref.ref(loop)
        self._future_type = future_type
        self._thread = threading.get_ident()
        self._fork_generation = _fork_generation
        self._tracer: Optional[Callable[[dict], Any]] = None
        self.pool = WorkerPool(max_workers or default_max_workers())
        self._lock = threading.Lock()  # guards _completed and the wake pipe
        self._completed: "list[_Op]" = []
        # A pipe rather than an eventfd: if a caller closes fileno(), the
        # workers still write to a descriptor of their own, never a reused number.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._waiting: "dict[Any, _Waiters]" = {}  # (st_dev, st_ino, "read"/"write") -> waiters
        self._retrying: "set[_Op]" = set()
        self._closed = False
        self._shutting_down = False
        self._submitted = 0
        self._completed_count = 0
        self._inline = 0
        self._deferred = 0
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
    def tracer(self) -> Optional[Callable[[dict], Any]]:
        """None, or a callable given one dict per finished operation (the keys
        of the C engine's records: op, fd, result, inline, submitted, returned,
        reaped, resolved, resumed, thread, reap_thread)."""
        return self._tracer

    @tracer.setter
    def tracer(self, value: Optional[Callable[[dict], Any]]) -> None:
        if value is not None and not callable(value):
            raise TypeError("tracer must be callable or None")
        self._tracer = value

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.pool.size}/{self.pool.max_workers} workers"
        return f"<ringlet ThreadEngine {state}, {self._in_flight} in flight>"

    # -- checks ------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("ringlet: this engine is closed")
        if self._fork_generation != _fork_generation:
            raise RuntimeError("ringlet: this engine belongs to the parent process; a forked child gets its own")
        if self._thread != threading.get_ident():
            raise RuntimeError("ringlet: an engine may only be used from the thread running its event loop")

    def _new_future(self) -> Any:
        loop = self._loop_ref()
        if loop is None:
            raise RuntimeError("ringlet: the engine's event loop is gone")
        if self._future_type is not None:
            return self._future_type(loop=loop)
        return loop.create_future()

    # -- the life of an operation ------------------------------------------

    def _begin(self, op: _Op) -> None:
        op.future = self._new_future()
        self._submitted += 1
        self._in_flight += 1
        if self._in_flight > self._peak:
            self._peak = self._in_flight

    def _returned(self, op: _Op) -> Any:
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

    def _to_pool(self, op: _Op, work: Callable[[], Any], key: Any = None) -> Any:
        self._begin(op)
        op.work = work
        op.state = "pool"
        if self.pool.submit(op, key):
            self._overflowed += 1
        return self._returned(op)

    def _post(self, op: _Op) -> None:
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

    def _finish(self, op: _Op, inline: bool) -> None:
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
        times = op.times
        if times is not None:
            times["reaped"] = time.monotonic_ns()
            times["reap_thread"] = threading.get_ident()
        future = op.future
        if self._shutting_down or future.done():
            op.orphan()
            if op.traced:
                self._emit(op)
            return
        if op.error is None and op.convert is not None:
            try:
                op.value = op.convert(op.value)
            except Exception as exc:  # noqa: BLE001 - MemoryError, say: goes to the future
                op.error = exc
        op.release()
        if op.error is None:
            future.set_result(op.value)
        else:
            future.set_exception(op.outcome())
        if times is not None:
            times["resolved"] = time.monotonic_ns()

    def _done_now(self, op: _Op, value: Any) -> Any:
        """An op whose answer needs no system call (a read of 0 bytes is b"",
        as os.read(fd, 0), where a pipe would otherwise wait): a done future."""
        self._begin(op)
        op.value = value
        self._finish(op, inline=True)
        return self._returned(op)

    def _failed(self, op: _Op, exc: OSError) -> Any:
        """An op that failed before it started (fstat said EBADF, say): a done future."""
        self._begin(op)
        op.error = exc.errno if exc.errno is not None else errno.EIO
        self._finish(op, inline=True)
        return self._returned(op)

    def _cancel(self, op: _Op) -> None:
        """The future is done (cancelled) while the op is not: drop what can be dropped now."""
        self._cancelled += 1
        state = op.state
        if state == "pool":
            if self.pool.remove(op):
                self._finish(op, inline=False)
            # else a worker is running it: its completion is dropped (an fd closed)
        elif state == "retry":
            if op.handle is not None:
                op.handle.cancel()
                op.handle = None
            self._retrying.discard(op)
            self._finish(op, inline=False)
        elif state in ("read", "write"):
            waiters = op.waiting
            if waiters is not None:
                try:
                    waiters.ops.remove(op)
                except ValueError:
                    pass
                if not waiters.ops:
                    self._unwatch(waiters)
            self._finish(op, inline=False)

    def _emit(self, op: _Op) -> None:
        times = op.times
        tracer = self._tracer
        op.traced = False  # once
        if times is None or tracer is None:
            return
        record = {"op": op.name, "fd": op.fd, "result": op.trace_result(), "inline": op.inline}
        for key in _STAMPS:
            record[key] = times.get(key)
        record["thread"] = self._thread
        record["reap_thread"] = times.get("reap_thread")
        try:
            tracer(record)
        except Exception as exc:  # noqa: BLE001 - as the C engine: reported, not raised
            loop = self._loop_ref()
            if loop is not None:
                loop.call_exception_handler({"message": "ringlet: the tracer raised", "exception": exc})

    def drain(self) -> int:
        """drain() -> int: resolve the futures of the operations the workers
        have finished; the loop calls this when fileno() is readable.
        Returns how many."""
        self._check()
        try:
            os.read(self._wake_r, 4096)
        except OSError:
            pass
        with self._lock:
            done, self._completed = self._completed, []
        for op in done:
            self._reaped(op)
        return len(done)

    def _reaped(self, op: _Op) -> None:
        if op.value is _RETRY:  # a FIFO opened for writing, no reader yet
            op.value = None
            if self._shutting_down or op.future.done():
                self._finish(op, inline=False)
                return
            delay = min(_RETRY_FIRST * (2 ** op.retries), _RETRY_MAX)
            op.retries += 1
            op.state = "retry"
            self._retrying.add(op)
            op.handle = self._loop_ref().call_later(delay, self._retry, op)  # type: ignore[union-attr]
            return
        self._finish(op, inline=False)

    def _retry(self, op: _Op) -> None:
        if self._fork_generation != _fork_generation:
            return
        op.handle = None
        self._retrying.discard(op)
        if op.finished or self._closed:
            return
        op.state = "pool"
        self.pool.submit(op)

    # -- descriptors that may block for ever: readiness on the loop ---------

    def _start_ready_op(self, op: _Op, st: os.stat_result, direction: str, work: Callable[[int], Any]) -> Any:
        """Do op on the loop thread, without blocking: at once, or when the file is ready."""
        self._begin(op)
        op.work = work
        fd = op.fd
        key = (st.st_dev, st.st_ino, direction)
        waiters = self._waiting.get(key)
        if waiters is None:
            try:
                mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
                if mode == (os.O_WRONLY if direction == "read" else os.O_RDONLY):
                    raise OSError(errno.EBADF, os.strerror(errno.EBADF))
                ready = direction == "write" or self._ready_now(fd)
                if ready and self._attempt(op, fd, inline=True):
                    return self._returned(op)
                # Wait on a descriptor of our own, as the kernel holds the file.
                waiters = _Waiters(key, os.dup(fd))
            except OSError as exc:
                op.error = exc.errno
                self._finish(op, inline=True)
                return self._returned(op)
            self._waiting[key] = waiters
            self._watch(waiters, direction)
        op.state = direction
        op.waiting = waiters
        waiters.ops.append(op)
        return self._returned(op)

    @staticmethod
    def _ready_now(fd: int) -> bool:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))

    def _attempt(self, op: _Op, fd: int, inline: bool) -> bool:
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
            op.error = exc.errno if exc.errno is not None else errno.EIO
        except Exception as exc:  # noqa: BLE001 - goes to the future
            op.error = exc
        self._finish(op, inline)
        return True

    def _watch(self, waiters: _Waiters, direction: str) -> None:
        loop = self._loop_ref()
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

    def _on_timer(self, waiters: _Waiters) -> None:
        if self._fork_generation != _fork_generation:
            return
        waiters.timer = None
        self._on_ready(waiters)
        if waiters.ops and self._waiting.get(waiters.key) is waiters:
            loop = self._loop_ref()
            if loop is not None:
                waiters.timer = loop.call_later(_POLL_INTERVAL, self._on_timer, waiters)

    def _unwatch(self, waiters: _Waiters, owner: bool = True) -> None:
        """No operation waits on this file any more: stop watching, close our descriptor."""
        if self._waiting.get(waiters.key) is waiters:
            del self._waiting[waiters.key]
        loop = self._loop_ref()
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

    def _on_ready(self, waiters: _Waiters) -> None:
        """The loop says the file is ready: serve its queue in order until it would block."""
        if self._closed or self._fork_generation != _fork_generation:
            return
        ops = waiters.ops
        while ops:
            op = ops[0]
            if op.finished:
                ops.popleft()
                continue
            if not self._attempt(op, waiters.fd, inline=False):
                return
            if ops and ops[0] is op:
                ops.popleft()
        if self._waiting.get(waiters.key) is waiters:
            self._unwatch(waiters)

    # -- read, readinto, write ----------------------------------------------

    def read(self, fd: int = _UNSET, size: int = _UNSET, offset: int = -1, align: int = 0, /,
             *more: Any) -> "asyncio.Future[bytes]":
        """read(fd, size, offset=-1, align=0, /) -> Future[bytes]: up to size
        bytes at offset (-1: the file position); shorter only at end of file.
        align > 0: the descriptor is O_DIRECT; an aligned range is read into
        aligned memory and the part asked for returned."""
        if size is _UNSET or more:
            raise TypeError("read(fd, size, offset=-1, align=0)")
        fd = _int32(fd, "fd")
        size = _size(size)
        if size < 0:
            raise ValueError("size must be >= 0")
        offset, align = _offset(offset), _align(align)
        self._check()
        size = min(size, _MAX_DIRECT if align else _MAX_RW)
        offset, moves = _direct_offset(fd, offset, size, align, False)
        op = _Op(self, "read", fd)
        try:
            st = os.fstat(fd)
        except OSError as exc:
            return self._failed(op, exc)
        kind = _kind_of(st.st_mode)
        if size == 0:
            return self._done_now(op, b"")
        if kind != "file":
            return self._start_ready_op(op, st, "read", _at_offset(kind, offset, lambda f, at: _read(f, size, at)))
        if align:
            bounce = op.bounce = _Bounce(offset, size, align, moves)
            op.convert = bounce.copy_out
            return self._to_pool(op, lambda: bounce.read(fd))
        # The memory is taken here, on the loop thread, and so are the bytes:
        # what workers allocate spreads over their malloc arenas (RSS grows).
        buffer = _read_buffer(size)
        op.convert = lambda n: _take(buffer, n)
        return self._to_pool(op, lambda: _readinto(fd, buffer, offset))

    def readinto(self, fd: int = _UNSET, buffer: Any = _UNSET, offset: int = -1, align: int = 0, /,
                 *more: Any) -> "asyncio.Future[int]":
        """readinto(fd, buffer, offset=-1, align=0, /) -> Future[int]: read into
        a writable, contiguous buffer, held (not resizable) until the read is
        over, even if the wait is cancelled.  align > 0: O_DIRECT, as for read()."""
        if buffer is _UNSET or more:
            raise TypeError("readinto(fd, buffer, offset=-1, align=0)")
        op, st, offset = self._buffer_op("readinto", fd, buffer, offset, align)
        if st is None:
            return op.future
        fd, kind = op.fd, _kind_of(st.st_mode)
        if len(op.view) == 0:  # type: ignore[arg-type]
            return self._done_now(op, 0)
        if kind != "file":
            return self._start_ready_op(op, st, "read",
                                        _at_offset(kind, offset, lambda f, at: _readinto(f, op.view, at)))
        if op.bounce is not None:
            return self._to_pool(op, lambda: op.bounce.read_into(fd, op.view))  # type: ignore[union-attr]
        return self._to_pool(op, lambda: _readinto(fd, op.view, offset))

    def write(self, fd: int = _UNSET, data: Any = _UNSET, offset: int = -1, align: int = 0, /,
              *more: Any) -> "asyncio.Future[int]":
        """write(fd, data, offset=-1, align=0, /) -> Future[int]: write all of
        data at offset (-1: the file position); short writes are continued,
        the result is len(data) or an OSError.  align > 0: O_DIRECT; offset and
        length must be multiples of align, and data is copied into aligned
        memory (the caller's buffer is free at once)."""
        if data is _UNSET or more:
            raise TypeError("write(fd, data, offset=-1, align=0)")
        op, st, offset = self._buffer_op("write", fd, data, offset, align)
        if st is None:
            return op.future
        fd, kind = op.fd, _kind_of(st.st_mode)
        if kind != "file":
            at = -1 if kind == "stream" else offset
            return self._start_ready_op(op, st, "write", lambda f: _write_all(op, f, at))
        key = (st.st_dev, st.st_ino)  # writes to one file are made in order, as io_uring does
        bounce = op.bounce
        if bounce is not None:
            length = len(op.view)  # type: ignore[arg-type]
            bounce.view[:length] = op.view
            op.release_caller()  # copied: the caller's buffer is free at once
            op.view = bounce.view[:length]
            return self._to_pool(op, lambda: bounce.write(op, fd), key)
        return self._to_pool(op, lambda: _write_all(op, fd, offset), key)

    def _buffer_op(self, name: str, fd: Any, obj: Any, offset: Any, align: Any) -> "tuple[_Op, Any, int]":
        """What readinto and write share: the arguments checked, the caller's
        buffer held, the file looked at, O_DIRECT memory taken.  Returns
        (op, stat of fd, offset); stat None: the op failed already (op.future)."""
        fd = _int32(fd, "fd")
        offset, align = _offset(offset), _align(align)
        self._check()
        write = name == "write"
        op = _Op(self, name, fd)
        op.holder, op.view = _hold_buffer(obj, not write, name)
        try:
            length = len(op.view)  # type: ignore[arg-type]
            if not write:  # a read may be short; a write goes on past the cap
                length = min(length, _MAX_DIRECT if align else _MAX_RW)
            offset, moves = _direct_offset(fd, offset, length, align, write)
            st = os.fstat(fd)
            if align and _kind_of(st.st_mode) == "file":
                op.bounce = _Bounce(offset, length, align, moves)
        except OSError as exc:
            self._failed(op, exc)
            return op, None, offset
        except BaseException:
            op.release()
            raise
        return op, st, offset

    # -- descriptors and paths ---------------------------------------------

    def open(self, path: bytes, flags: int, mode: int = 0o666, filename: Any = _UNSET) -> "asyncio.Future[int]":
        """open(path, flags, mode=0o666, filename=None) -> Future[int]: openat(2)
        in a worker, never blocking on a FIFO.  OSError carries filename
        (default: path).  If the wait is cancelled and the open still succeeds,
        the descriptor is closed."""
        path = _path(path)
        flags, mode = _c_int(flags), _c_int(mode)
        self._check()
        op = _Op(self, "open", -1, path if filename is _UNSET else filename)
        return self._to_pool(op, lambda: _open_now(path, flags, mode))

    def close(self, fd: int, /) -> "asyncio.Future[None]":
        """close(fd, /) -> Future[None]: close(2).  Operations waiting on the
        file (a pipe, say) go on: they hold a descriptor of their own."""
        fd = _int32(fd, "fd")
        self._check()
        op = _Op(self, "close", fd)
        try:
            kind = _kind_of(os.fstat(fd).st_mode)
        except OSError as exc:
            return self._failed(op, exc)
        if kind == "file":
            return self._to_pool(op, lambda: os.close(fd))
        self._begin(op)
        try:
            os.close(fd)
        except OSError as exc:
            op.error = exc.errno
        self._finish(op, inline=True)
        return self._returned(op)

    def fsync(self, fd: int = _UNSET, datasync: bool = False, /, *more: Any) -> "asyncio.Future[None]":
        """fsync(fd, datasync=False, /) -> Future[None]: fsync(2), or fdatasync(2)."""
        if fd is _UNSET or more:
            raise TypeError("fsync(fd, datasync=False)")
        fd = _int32(fd, "fd")
        call = os.fdatasync if datasync else os.fsync
        self._check()
        return self._to_pool(_Op(self, "fsync", fd), lambda: call(fd))

    def statx(self, target: Any, filename: Any = _UNSET,
              follow_symlinks: bool = True) -> "asyncio.Future[os.stat_result]":
        """statx(target, filename=None, follow_symlinks=True) -> Future[os.stat_result]:
        target is a descriptor (int) or a path (bytes)."""
        follow = bool(follow_symlinks)
        if isinstance(target, int):
            fd = _int32(target, "fd")
            self._check()
            op = _Op(self, "statx", fd, None if filename is _UNSET else filename)
            return self._to_pool(op, lambda: os.fstat(fd))
        path = _path(target)
        self._check()
        op = _Op(self, "statx", _AT_FDCWD, path if filename is _UNSET else filename)
        return self._to_pool(op, lambda: os.stat(path, follow_symlinks=follow))

    def _path_op(self, name: str, work: Callable[[], Any], path: bytes, path2: Optional[bytes], filename: Any,
                 filename2: Any) -> Any:
        self._check()
        op = _Op(self, name, -1, path if filename is _UNSET else filename,
                 None if path2 is None else (path2 if filename2 is _UNSET else filename2))
        return self._to_pool(op, work)

    def rename(self, src: bytes, dst: bytes, flags: int = 0, filename: Any = _UNSET,
               filename2: Any = _UNSET) -> "asyncio.Future[None]":
        """rename(src, dst, flags=0, filename=None, filename2=None) -> Future[None]:
        renameat2(2) (flags: RENAME_NOREPLACE=1, RENAME_EXCHANGE=2)."""
        flags = _uint32(flags, "flags")
        src, dst = _path(src), _path(dst)
        work = (lambda: os.rename(src, dst)) if flags == 0 else (lambda: _renameat2(src, dst, flags))
        return self._path_op("rename", work, src, dst, filename, filename2)

    def unlink(self, path: bytes, rmdir: bool = False, filename: Any = _UNSET) -> "asyncio.Future[None]":
        """unlink(path, rmdir=False, filename=None) -> Future[None]: unlinkat(2)."""
        call = os.rmdir if rmdir else os.unlink
        path = _path(path)
        return self._path_op("unlink", lambda: call(path), path, None, filename, None)

    def mkdir(self, path: bytes, mode: int = 0o777, filename: Any = _UNSET) -> "asyncio.Future[None]":
        """mkdir(path, mode=0o777, filename=None) -> Future[None]: mkdirat(2)."""
        mode = _c_int(mode)
        path = _path(path)
        return self._path_op("mkdir", lambda: os.mkdir(path, mode), path, None, filename, None)

    def symlink(self, target: bytes, linkpath: bytes, filename: Any = _UNSET,
                filename2: Any = _UNSET) -> "asyncio.Future[None]":
        """symlink(target, linkpath, filename=None, filename2=None) -> Future[None]: symlinkat(2)."""
        target, linkpath = _path(target), _path(linkpath)
        return self._path_op("symlink", lambda: os.symlink(target, linkpath), target, linkpath, filename,
                             filename2)

    def link(self, src: bytes, dst: bytes, follow_symlinks: bool = True, filename: Any = _UNSET,
             filename2: Any = _UNSET) -> "asyncio.Future[None]":
        """link(src, dst, follow_symlinks=True, filename=None, filename2=None) -> Future[None]: linkat(2)."""
        follow = bool(follow_symlinks)
        src, dst = _path(src), _path(dst)
        work = (lambda: _link_following(src, dst)) if follow else (lambda: os.link(src, dst, follow_symlinks=False))
        return self._path_op("link", work, src, dst, filename, filename2)

    def ftruncate(self, fd: int = _UNSET, length: int = _UNSET, /, *more: Any) -> "asyncio.Future[None]":
        """ftruncate(fd, length, /) -> Future[None]: ftruncate(2)."""
        if length is _UNSET or more:
            raise TypeError("ftruncate(fd, length)")
        fd = _int32(fd, "fd")
        length = operator.index(length)
        if not -0x8000000000000000 <= length <= 0x7FFFFFFFFFFFFFFF:
            raise OverflowError("int too big to convert")
        if length < 0:
            raise ValueError("negative length")
        self._check()
        return self._to_pool(_Op(self, "ftruncate", fd), lambda: os.ftruncate(fd, length))

    # -- composite operations ----------------------------------------------

    def copy(self, src_fd: int, dst_fd: int, chunk_size: int = 1048576, depth: int = 4) -> "asyncio.Future[int]":
        """copy(src_fd, dst_fd, chunk_size=1048576, depth=4) -> Future[int]:
        copy src to dst from offset 0 until end of file, chunk by chunk (each
        read, then its write); the result is the number of bytes copied."""
        src_fd, dst_fd = _c_int(src_fd), _c_int(dst_fd)
        chunk, depth = _uint32(chunk_size, "chunk_size"), _uint32(depth, "depth")
        if chunk == 0 or chunk > _MAX_RW or depth == 0 or depth > _COPY_MAX_SLOTS:
            raise ValueError(f"chunk_size must be 1..{_MAX_RW} and depth 1..{_COPY_MAX_SLOTS}")
        self._check()
        return self._task(self._copy(src_fd, dst_fd, chunk))

    async def _copy(self, src_fd: int, dst_fd: int, chunk: int) -> int:
        copied = 0
        while True:
            data = await self.read(src_fd, chunk, copied)
            if not data:
                return copied
            await self.write(dst_fd, data, copied)
            copied += len(data)

    def _task(self, coro: Any) -> Any:
        loop = self._loop_ref()
        if loop is None:
            coro.close()
            raise RuntimeError("ringlet: the engine's event loop is gone")
        return loop.create_task(coro)

    def read_many(self, fd: int = _UNSET, requests: Any = _UNSET, /, *more: Any) -> "asyncio.Future[list[bytes]]":
        """read_many(fd, requests, /) -> Future[list[bytes]]: positional reads
        [(size, offset), ...], in one worker's turn; the bytes in request
        order.  If any read fails, the first error is raised once all are over."""
        if requests is _UNSET or more:
            raise TypeError("read_many(fd, requests)")
        fd = _int32(fd, "fd")
        try:
            requests = list(requests)
        except TypeError:
            raise TypeError("requests must be a sequence of (size, offset)") from None
        self._check()
        checked = []
        for i, req in enumerate(requests):
            if not isinstance(req, tuple) or len(req) != 2:
                raise TypeError(f"requests[{i}] must be a (size, offset) tuple")
            size, offset = _size(req[0]), _offset(req[1])
            if size < 0 or offset < 0:
                raise ValueError(f"requests[{i}]: size and offset must be >= 0")
            checked.append((min(size, _MAX_RW), offset))
        op = _Op(self, "read_many", fd)
        if not checked:
            self._begin(op)
            op.value = []
            self._finish(op, inline=True)
            return self._returned(op)
        try:
            kind = _kind_of(os.fstat(fd).st_mode)
        except OSError as exc:
            return self._failed(op, exc)
        if kind != "file":
            return self._task(self._read_each(fd, checked))
        buffers = [_read_buffer(size) for size, _ in checked]  # on the loop thread: see read()
        op.convert = lambda counts: [_take(b, n) for b, n in zip(buffers, counts)]
        return self._to_pool(op, lambda: _pread_all(fd, buffers, [offset for _, offset in checked]))

    async def _read_each(self, fd: int, requests: "list[tuple[int, int]]") -> "list[bytes]":
        """read_many on a pipe or device: all the reads wait at once, served in order."""
        futures = [self.read(fd, size, offset) for size, offset in requests]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        error = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if error is not None:
            raise error
        return outcomes

    # ringlet's own coroutines call these; here they simply return futures.
    _read = read
    _readinto = readinto

    async def _pread(self, fd: int, size: int, offset: int) -> bytes:
        """AsyncFile.pread's entry (a coroutine, as the C engine's _pread)."""
        size, offset = operator.index(size), operator.index(offset)  # any __index__, as os.pread
        if offset < 0:  # -1 would mean the file position to read()
            raise ValueError("negative offset")
        return await self.read(fd, size, offset)
    _write = write
    _open = open
    _close = close
    _read_many = read_many

    # -- the engine as a whole -----------------------------------------------

    def supports(self, opcode: int, /) -> bool:
        """supports(opcode, /) -> bool: whether this backend does the work of IORING_OP_<opcode>."""
        return _int32(opcode, "opcode") in OPCODES

    def fileno(self) -> int:
        """fileno() -> int: the pipe the workers signal when they finish something (the loop watches it)."""
        if self._closed:
            raise ValueError("ringlet: this engine is closed")
        return self._wake_r

    def stats(self) -> "dict[str, int | float]":
        """stats() -> dict: the counters of the io_uring engine, with the same
        keys (enter_calls stays 0: no ring; overflowed counts work that
        waited for a busy worker)."""
        return {
            "submitted": self._submitted,
            "completed": self._completed_count,
            "completed_inline": self._inline,
            "completed_nowait": 0,  # no non-blocking attempt: every read goes to a worker
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
        still returns is closed.  Returns how many were left running."""
        timeout = _timeout(timeout)
        if self._closed or self._fork_generation != _fork_generation:
            return 0
        self._shutting_down = True
        self._tracer = None
        # The loop's registrations and timers belong to the loop thread: only it undoes them.
        owner = self._thread == threading.get_ident()
        for waiters in list(self._waiting.values()):
            self._unwatch(waiters, owner)
            for op in waiters.ops:
                self._finish(op, inline=False)
        for op in list(self._retrying):
            if owner and op.handle is not None:
                op.handle.cancel()
            self._finish(op, inline=False)
        self._retrying.clear()
        dropped, running = self.pool.stop(timeout)
        for op in dropped:
            self._finish(op, inline=False)
        with self._lock:
            done, self._completed = self._completed, []
            wake_r, wake_w = self._wake_r, self._wake_w
            self._wake_r = self._wake_w = -1
        for op in done:
            if op.value is _RETRY:
                op.value = None
            self._finish(op, inline=False)
        self._closed = True
        for fd in (wake_r, wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        return running
