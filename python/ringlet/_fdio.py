"""What ringlet's files and one-shot helpers share at the descriptor level:
paths as the kernel takes them; opening, closing and writing that a cancel
cannot tear (no descriptor leaked, no write half-counted); waiting for a
stream without consuming from it; reading to end of file; the checks made on
a file just opened; truncate through the ring where the kernel has it."""

from __future__ import annotations

import asyncio
import errno
import operator
import os
import select
import stat
import sys
from typing import Any, Callable, List, Optional, Set, Tuple

from ._contract import MAX_DIRECT, MAX_RW, Opcode

READ_CHUNK = 64 * 1024          # read() to EOF of a file whose size is unknown; readline() read-ahead
_MAX_READ_CHUNK = 16 * 1024 * 1024


def fspath(path: Any) -> Tuple[bytes, Any]:
    """(bytes for the kernel, the path as given for error messages)."""
    path = os.fspath(path)  # TypeError for anything that is not a path
    return os.fsencode(path), path


async def open_fd(engine: Any, path: bytes, flags: int, mode: int, filename: Any) -> int:
    """openat(2) through the engine, leaking no descriptor whatever moment a
    cancel hits.  The engine's future is shielded from the cancel: if the
    open has completed (or its result is already on its way: the engine may
    deliver even an inline completion through the loop), the descriptor is
    closed when it arrives; an open still pending in the kernel is then
    cancelled, and the engine closes what it opens anyway."""
    pending = engine._open(path, flags, mode, filename)
    if not asyncio.isfuture(pending):  # completed inline: no suspension, nothing to cancel
        fd: int = await pending
        return fd
    try:
        fd = await asyncio.shield(pending)
    except BaseException:
        if pending.done():
            _close_opened(pending)
        else:
            pending.add_done_callback(_close_opened)
            loop = pending.get_loop()
            if not loop.is_closed():  # closed: the engine shut down and closes what it opened
                # After what is already scheduled, such as the delivery of a result
                # the engine made through the loop: only a true wait is cancelled.
                loop.call_soon(pending.cancel)
        raise
    return fd


def _close_opened(future: "asyncio.Future[int]") -> None:
    if not future.cancelled() and future.exception() is None:
        os.close(future.result())


async def close_fd(engine: Any, fd: int, release_in_worker: bool = False) -> None:
    """close(2) through the engine; a cancel while it is pending does not
    stop it (the descriptor would leak): the close goes on, the cancel is raised.
    release_in_worker: for a file opened for writing.  Its last release, which
    a close on the ring runs on the loop's thread, may wait for the device on
    ext4: the writeback start of a file truncated to empty and written since
    (auto_da_alloc; 105 ms for 256 MiB, traced) or the discard of its block
    preallocations (which may read a block bitmap).  The close, and with it
    the release, then runs in a kernel worker."""
    if engine.closed:  # the loop closed under a coroutine now being finalized: nobody else will close it
        os.close(fd)
        return
    pending = engine._close(fd, release_in_worker)
    if asyncio.isfuture(pending) and not pending.done():
        await asyncio.shield(pending)
    else:
        await pending


class _ToTheEnd:
    """What a task awaits in settle(): the engine's future, seen through an
    object whose cancel() the task calls instead of the future's.  It tells
    on_cancel of the first cancel and refuses it (returns False), so the
    future runs to its end; the task, which has noted the cancel, then gets
    CancelledError thrown in at the await once the future is done.  As
    asyncio.shield, without its second future: shield's outer future is
    resolved by a callback of the inner one, a turn of the loop after it."""

    _asyncio_future_blocking = False

    def __init__(self, pending: Any, on_cancel: Optional[Callable[[Any], Any]]) -> None:
        self.pending = pending
        self.on_cancel = on_cancel
        self.told = False  # on_cancel was called

    def get_loop(self) -> Any:
        return self.pending.get_loop()

    def add_done_callback(self, fn: Callable[[Any], Any], *, context: Any = None) -> None:
        # The task's wakeup reads the future's result itself (or its error).
        self.pending.add_done_callback(fn, context=context)

    def remove_done_callback(self, fn: Callable[[Any], Any]) -> int:
        n: int = self.pending.remove_done_callback(fn)
        return n

    def done(self) -> bool:
        done: bool = self.pending.done()
        return done

    def cancel(self, msg: Any = None) -> bool:
        self.tell()
        return False

    def tell(self) -> None:
        if not self.told and self.on_cancel is not None and not self.pending.done():
            self.told = True
            self.on_cancel(self.pending)

    def __await__(self) -> Any:
        if not self.pending.done():
            self._asyncio_future_blocking = True
            yield self


async def settle(pending: Any, on_cancel: Optional[Callable[[Any], Any]] = None) -> Tuple[int, Optional[BaseException]]:
    """Await an engine write to its end, even if the task is cancelled
    meanwhile: what a write that reached the engine wrote must be counted.
    Returns (bytes written, the CancelledError to raise once the caller has
    counted them, or None).  A failed write raises its error, or the cancel
    if one came while it was pending.  on_cancel(pending) is told of the
    first cancel: Engine._write_stop, which asks the kernel to stop the
    write where it can (one not begun yet is then not begun at all), so
    that a cancel does not wait behind a write that may never run."""
    if not asyncio.isfuture(pending) or pending.done():
        n: int = await pending
        return n, None
    cancel: Optional[BaseException] = None
    waiter = _ToTheEnd(pending, on_cancel)
    while not pending.done():
        try:
            await waiter
        except asyncio.CancelledError as exc:
            if pending.cancelled():  # the operation itself, not this task: the engine is shutting down
                raise
            waiter.tell()  # a CancelledError thrown in by hand, not through cancel()
            cancel = exc
        except BaseException:
            if not pending.done():  # GeneratorExit, KeyboardInterrupt: not the write's outcome
                raise
            break  # the write failed: below
    if cancel is not None and (pending.cancelled() or pending.exception() is not None):
        raise cancel
    written: int = pending.result()
    return written, cancel


def _poll_readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


async def wait_readable(fd: int, waiting: "Set[asyncio.Future[None]]") -> None:
    """Wait until a stream (pipe, FIFO, socket, terminal) has bytes or its end
    to read, consuming nothing: cancelling this wait loses no data, where a
    read the kernel already did may be cancelled too late.  The loop watches a
    duplicate, which stays valid even if the file is closed meanwhile; the
    waiting future is in the set waiting, so that close() can end the wait."""
    if _poll_readable(fd):
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    watched = os.dup(fd)
    try:
        loop.add_reader(watched, _set_done, waiter)
    except (OSError, ValueError, NotImplementedError):  # cannot be watched: let the kernel read wait
        os.close(watched)
        return
    waiting.add(waiter)
    pid = os.getpid()
    try:
        await waiter
    finally:
        waiting.discard(waiter)
        if os.getpid() == pid:  # a forked child shares the parent's epoll instance: leave it alone
            loop.remove_reader(watched)
        os.close(watched)


def _set_done(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


def isdir_error(filename: Any) -> IsADirectoryError:
    return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), filename)


_SSIZE_MIN, _SSIZE_MAX = -sys.maxsize - 1, sys.maxsize
_C_LONG_MIN, _C_LONG_MAX = -(1 << 63), (1 << 63) - 1  # also off_t's range (64-bit Linux)
_C_INT_MIN, _C_INT_MAX = -(1 << 31), (1 << 31) - 1

# The conversions of io's arguments, each named after the C converter it
# stands for, with its errors: io's methods use several, and a bad argument
# gives the error of the method's own.


def ssize_arg(value: Any) -> int:
    """Argument Clinic's Py_ssize_t (a buffered read1's and peek's size, a
    text readline's): any __index__ (TypeError for anything else, None too);
    OverflowError past a C ssize_t."""
    size: int = value if type(value) is int else operator.index(value)
    if not _SSIZE_MIN <= size <= _SSIZE_MAX:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return size


def size_arg(value: Any) -> int:
    """Py_ssize_t(accept={int, NoneType}) (read's size, readline's and
    readlines' hint): None is -1, and None or negative means 'all'."""
    if value is None:
        return -1
    if type(value) is int:
        size = value
    elif hasattr(type(value), "__index__"):
        size = operator.index(value)
    else:
        raise TypeError(f"argument should be integer or None, not '{type(value).__name__}'")
    if not _SSIZE_MIN <= size <= _SSIZE_MAX:
        raise OverflowError("cannot fit 'int' into an index-sized integer")
    return size


def _index_within(value: Any, low: int, high: int, error: type, message: str) -> int:
    # (ssize_arg and size_arg, on every read, do the same inline: a call less.)
    number: int = value if type(value) is int else operator.index(value)
    if not low <= number <= high:
        raise error(message)
    return number


def c_int_arg(value: Any) -> int:
    """Argument Clinic's int (seek's whence)."""
    return _index_within(value, _C_INT_MIN, _C_INT_MAX, OverflowError, "Python int too large to convert to C int")


def c_long_arg(value: Any) -> int:
    """PyLong_AsLong (FileIO's truncate size, where every layer's truncate
    comes)."""
    return _index_within(value, _C_LONG_MIN, _C_LONG_MAX, OverflowError, "Python int too large to convert to C long")


def offset_arg(value: Any) -> int:
    """PyNumber_AsOff_t(value, ValueError) (a buffered seek's target)."""
    return _index_within(value, _C_LONG_MIN, _C_LONG_MAX, ValueError, "cannot fit 'int' into an offset-sized integer")


async def read_to_end(engine: Any, fd: int, offset: int, align: int = 0,
                      fd_now: Optional[Callable[[], int]] = None) -> bytes:
    """Read from offset (-1: a stream) until a read returns b"" (end of file).
    fd_now, for a file another task may close meanwhile: the descriptor
    before each use after the first read (it raises once the file is closed,
    so nothing reads or sizes a file that got the number since).

    Pipes and /proc files give short reads before their end, so only an
    empty read ends it.  A regular file with a size is sized once (fstat)
    and read in one read of one byte more than is left, into one bytes
    object of that size; the empty read that follows ends it (no join)."""
    chunks: List[bytes] = []
    want = READ_CHUNK
    if offset >= 0:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size > offset:
            data: bytes = await engine._read(fd, min(st.st_size - offset + 1, MAX_DIRECT if align else MAX_RW),
                                             offset, align)
            if not data:
                return data
            chunks.append(data)
            offset += len(data)
            want = 4096  # the read that says it is the end (small: no yield, no worker)
    while True:
        if chunks and fd_now is not None:
            fd = fd_now()
        chunk = await engine._read(fd, want, offset, align)
        if not chunk:
            break
        chunks.append(chunk)
        if offset >= 0:
            offset += len(chunk)
        if len(chunks) == 1 and len(chunk) == want and offset >= 0:
            st = os.fstat(fd if fd_now is None else fd_now())  # closed during the read?
            if stat.S_ISREG(st.st_mode):
                # One byte more than what is left: a short read then proves end of file.
                want = max(st.st_size - offset + 1, READ_CHUNK)
                continue
        want = min(want * 2, _MAX_READ_CHUNK)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def descriptor_offset(fd: int) -> Optional[int]:
    """The descriptor's offset, or None for a stream (pipe, FIFO, socket,
    terminal: lseek(2) says ESPIPE), which ringlet then reads and writes
    without offsets.  Devices such as /dev/zero or /dev/full have offsets."""
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError as exc:
        if exc.errno == errno.ESPIPE:
            return None
        raise


def stat_open_file(fd: int, filename: Any, reject_directory: bool) -> os.stat_result:
    """fstat of a file just opened; built-in open() refuses a directory even
    for reading, and so does ringlet (for writing, openat(2) itself does).

    fstat of an open descriptor reads the in-memory inode and does not wait
    on the device, while io_uring's statx always goes through a kernel worker
    thread (about a millisecond): this runs on every open."""
    st = os.fstat(fd)
    if reject_directory and stat.S_ISDIR(st.st_mode):
        raise isdir_error(filename)
    return st


async def truncate(engine: Any, fd: int, size: int) -> None:
    """ftruncate through io_uring where the kernel has it (6.9+), ftruncate(2) otherwise."""
    if engine.supports(Opcode.FTRUNCATE):
        await engine.ftruncate(fd, size)
    else:
        os.ftruncate(fd, size)
