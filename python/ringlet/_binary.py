"""AsyncFile: a binary file whose every operation goes through the ring."""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import io
import operator
import os
import threading
import warnings
from typing import Any, Callable, Coroutine, Dict, Iterable, List, NoReturn, Optional, Set, Tuple, TypeVar, cast

from ._base import IOBASE, FileBase, lines_to_take, write_batched
from . import _contract as contract
from . import _ringlet
from ._fdio import (READ_CHUNK, c_int_arg, c_long_arg, close_fd, offset_arg, read_to_end, settle, size_arg, ssize_arg,
                    truncate, wait_readable)
from ._buffers import check_buffer, hold_buffer
from ._turns import Turns


def _lines_of(data: bytes, start: int = 0, end: int = -1) -> List[bytes]:
    """The lines of data[start:end] (to its end if end < 0), each ending
    with b"\\n" but perhaps the last: io.BytesIO cuts them in C, sharing data
    (20 ns a line of 80 bytes, against 110-160 for a regular expression)."""
    lines = io.BytesIO(data)
    lines.seek(start)
    return lines.readlines(end - start if end >= 0 else -1)


_thread_id = threading.get_ident
_running_loop = asyncio.events._get_running_loop  # None outside a loop (pread raises at the await then)


F = TypeVar("F", bound=Callable[..., Any])


# The whence values lseek(2) takes here; a buffered file refuses others itself.
_WHENCES = (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, os.SEEK_DATA, os.SEEK_HOLE)

# What a closed or wrong-mode call raises, as the built-in file of the same
# layer: FileIO (buffering=0) says "I/O operation on closed file" and "File
# not open for reading"; a buffered file names the call; io.IOBase's own
# checks (IOBASE) end in a period.
_CLOSED = "I/O operation on closed file"
_BUFFERED_CLOSED = {"read": "read of closed file", "read1": "read of closed file", "peek": "peek of closed file",
                    "readinto": "readinto of closed file", "readline": "readline of closed file",
                    "write": "write to closed file", "truncate": "truncate of closed file",
                    "seek": "seek of closed file", IOBASE: _CLOSED + "."}
# A buffered file of the other direction refuses these before it looks at anything (io's base
# class has them), naming the call its base class makes; the others check the file first.
_REFUSED_FIRST = {"read": "read", "read1": "read1", "peek": "peek", "readinto": "read", "readline": "read",
                  "write": "write"}
_REFUSED_LATER = {"readlines": "read", "writelines": "write", "truncate": "truncate"}


def _marked_coroutine_function(function: F) -> F:
    """function (a plain def returning a coroutine) as callers that ask
    whether it is a coroutine function see it: yes (inspect and asyncio)."""
    if hasattr(inspect, "markcoroutinefunction"):
        return cast(F, inspect.markcoroutinefunction(function))
    setattr(function, "_is_coroutine", getattr(asyncio.coroutines, "_is_coroutine", None))
    return function


class AsyncFile(FileBase[bytes]):
    """A binary file opened with ringlet.open().  Every method is a coroutine
    whose work is one or more io_uring operations; none blocks the loop.

    Writes are not buffered.  Reads are read ahead by readline() and
    iteration (64 KiB at a time), and by a read() of fewer bytes than
    io.BufferedReader's buffer (8 KiB, or buffering=; not with buffering=0 or
    direct=True), which reads that many, as io does, unless it is the first
    read after a seek or open (random access reads what it asks).  While the
    read-ahead holds bytes, tell() subtracts them, and seek(), write(),
    pwrite() and truncate() first step back over them, so the position is
    always where the reads so far have reached.

    The file position lives in this object, not in the descriptor: io_uring
    moves a descriptor's own offset asynchronously (a read or write "at the
    file position" can complete before the kernel has moved it, and the next
    one would then land on the same bytes), so every read and write goes to
    an explicit offset.  The descriptor's offset (os.lseek on fileno()) is
    not kept in step; use tell() and seek().  Pipes, FIFOs, sockets and
    terminals have no position and are read and written as streams.

    Calls that use the position (read, read1, readinto, readline, peek,
    write, seek, tell, truncate) take turns: concurrent calls behave as if
    made one after another, in call order.  pread() and pwrite() do not use
    the position and run concurrently.

    Cancelling (a timeout, say) loses and tears nothing:

    * A read of a regular file that is cancelled did not happen: the position
      stays.  read(), readinto(), readline() and peek() of a stream first
      wait until it has bytes (or its end), which consumes nothing, so a
      cancel loses no bytes; if another reader took them meanwhile, the
      kernel read that then waits is kept for the next read when cancelled.
    * A write that reached the kernel counts: the cancel asks the kernel to
      stop it, waits for its answer, moves the position past what was
      written, then raises CancelledError.  A write the kernel has begun on a
      local file lands whole; one it has not begun (queued behind another
      write to the same file, or in a kernel worker queue that does not run)
      does not happen; one interrupted part-way (FUSE, say) counts its part.
      A write still waiting for its turn never happens.  (A write to a pipe, FIFO or
      socket, which may never drain, is abandoned: some of it may have gone.)

    A file belongs to the event loop that opened it: from another loop (or
    thread) every call raises RuntimeError before anything reaches the kernel.

    With direct=True (O_DIRECT, the page cache bypassed), reads of any offset
    and size go through aligned memory ringlet manages; writes whose offset
    and length are multiples of 4096 go direct, others through a second,
    buffered descriptor of the same file."""

    __slots__ = ("_fd", "_engine", "_readable", "_writable", "_closefd", "_rbuf", "_rpos", "_pos", "_append",
                 "_align", "_read_ahead", "_just_seeked", "_buffered_fd", "_loop", "_thread", "_turns",
                 "_pending_read", "_waiting", "_unbuffered", "name", "mode", "__weakref__")

    def __init__(self, engine: Any, fd: int, name: Any, mode: str, readable: bool, writable: bool,
                 closefd: bool = True, *, position: Optional[int] = None, append: bool = False,
                 align: int = 0, read_ahead: int = io.DEFAULT_BUFFER_SIZE, unbuffered: bool = False) -> None:
        self._engine = engine
        self._fd = fd
        self._readable = readable
        self._writable = writable
        self._closefd = closefd
        self._rbuf = b""   # read-ahead: bytes read from the kernel that no call has returned yet
        self._rpos = 0     # ... starting at this index; _rbuf is b"" when nothing is left
        self._pos = position  # where the next kernel read or write goes; None: a stream
        self._append = append  # writes go to the end (O_APPEND)
        self._align = align    # O_DIRECT: the alignment reads and writes need, else 0
        # A positional read() of fewer bytes reads this many (io.BufferedReader's buffer); 0: never
        self._read_ahead = read_ahead
        self._unbuffered = unbuffered  # buffering=0: a built-in file is a FileIO then (its errors' messages)
        # The position was set (seek, open), not reached by a read: a small read there
        # reads what it asks, as random access does; the reads that go on from it read ahead.
        self._just_seeked = True
        self._buffered_fd = -1  # O_DIRECT: a buffered descriptor for unaligned writes, opened on demand
        self._loop = engine.loop
        self._thread = threading.get_ident()
        self._turns = Turns()  # for the calls that use the position
        # A stream read cancelled before the kernel answered: the next read takes its bytes first.
        self._pending_read: "Optional[asyncio.Future[bytes]]" = None
        self._waiting: "Set[asyncio.Future[None]]" = set()  # waits for a stream to be readable; close() ends them
        self.name = name
        self.mode = mode

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<ringlet.AsyncFile name={self.name!r} mode={self.mode!r} {state}>"

    def _raw(self) -> "AsyncFile":
        return self

    def _open_fd(self, call: str = "") -> int:
        """The descriptor; closed, the ValueError the built-in file's call
        (its name, or IOBASE) raises."""
        if self._fd < 0:
            raise ValueError(self._closed_message(call))
        return self._fd

    def _closed_message(self, call: str) -> str:
        if call == IOBASE or (call == "flush" and (self._unbuffered or not self._writable)):
            return _CLOSED + "."  # io.IOBase's own check (FileIO and BufferedReader inherit its flush)
        if self._unbuffered:
            return _CLOSED
        return "flush of closed file" if call == "flush" else _BUFFERED_CLOSED.get(call, _CLOSED)

    def _usable_fd(self, call: str = "") -> int:
        """The descriptor, for a coroutine about to use it: open, and on its loop."""
        fd = self._open_fd(call)
        if asyncio.get_running_loop() is not self._loop:
            self._refuse_loop()
        return fd

    async def _wait_turn(self) -> int:
        """Wait for the position's turn (held on return) and give the
        descriptor as it is then: a close while this call waited is its
        ValueError, since the old number may name another file by now."""
        await self._turns.wait()
        if self._fd < 0:
            self._turns.release()
            self._open_fd()
        return self._fd

    def _refuse_loop(self) -> NoReturn:
        # The engine's futures belong to its loop: from another one, a read
        # would run in the kernel and then fail to deliver its bytes.
        raise RuntimeError(contract.WRONG_THREAD if threading.get_ident() != self._thread else contract.WRONG_LOOP)

    def _reading_fd(self, call: str = "") -> int:
        """The descriptor for a read (call: the built-in method's name; none
        for ringlet's own methods, which answer as FileIO)."""
        if self._readable:
            return self._usable_fd(call)
        self._refuse(call, "File not open for reading")

    def _writing_fd(self, call: str = "") -> int:
        """The descriptor for a write or a truncate: as _reading_fd."""
        if self._writable:
            return self._usable_fd(call)
        self._refuse(call, "File not open for writing")

    def _refused_before_its_argument(self, call: str) -> None:
        """A read whose argument is bad: a buffered writer's read() and read1()
        (io's base class's) refuse before they look at it."""
        if not self._readable and not self._unbuffered:
            self._reading_fd(call)

    def _refuse(self, call: str, unbuffered_message: str) -> NoReturn:
        """A call the file's mode does not allow: the built-in file's error,
        closed or not (see _REFUSED_FIRST)."""
        if self._unbuffered or call not in _REFUSED_FIRST:
            self._usable_fd(call)
        if self._unbuffered or not call:
            raise io.UnsupportedOperation(unbuffered_message)
        raise io.UnsupportedOperation(_REFUSED_FIRST.get(call) or _REFUSED_LATER[call])

    # -- the read-ahead -------------------------------------------------------

    def _take(self, size: int) -> bytes:
        """Up to size bytes (all if size < 0) from the read-ahead."""
        buf, pos = self._rbuf, self._rpos
        end = len(buf) if size < 0 else min(len(buf), pos + size)
        self._consume(end)
        return buf[pos:end]

    def _consume(self, end: int) -> None:
        if end >= len(self._rbuf):
            self._rbuf, self._rpos = b"", 0
        else:
            self._rpos = end

    def _unread(self, data: bytes) -> None:
        """Put bytes taken from the read-ahead (or read from a stream) back in
        front of it: a cancelled call returns nothing, so it consumes nothing."""
        if data:
            self._rbuf, self._rpos = data + self._rbuf[self._rpos:], 0

    def _drop_read_ahead(self) -> None:
        """Step the position back over the unread read-ahead and forget it.
        A stream cannot step back: its read-ahead stays for the next reads."""
        if self._pos is not None:
            self._pos -= len(self._rbuf) - self._rpos
            self._rbuf, self._rpos = b"", 0

    def _offset(self) -> int:
        """Where the next kernel read or write goes: -1 for a stream."""
        return -1 if self._pos is None else self._pos

    def _position(self) -> int:
        """The file position as the reader sees it (less the read-ahead)."""
        return self._require_position() - (len(self._rbuf) - self._rpos)

    def _require_position(self) -> int:
        """The kernel's next offset; a stream has none: ESPIPE, as lseek(2),
        pread(2) and pwrite(2) say."""
        self._open_fd()
        if self._pos is None:
            raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))
        return self._pos

    def _seek(self, offset: int, whence: int) -> int:
        """lseek(2) from the position as the reader sees it; whence converted
        (and for a buffered file, checked) by seek()."""
        fd = self._open_fd()
        # The offset as io converts it: FileIO's, os.lseek's; a buffered file's, off_t's with ValueError.
        offset = operator.index(offset) if self._unbuffered else offset_arg(offset)
        if self._pos is None:
            return os.lseek(fd, offset, whence)  # a stream: ESPIPE, as io.FileIO says
        if whence == os.SEEK_CUR:  # from the position as the reader sees it
            offset, whence = self._position() + offset, os.SEEK_SET
        # The kernel checks the new position (EINVAL past the file system's
        # largest offset, OverflowError past off_t, EBADF) and, while at it,
        # the descriptor's own offset is set in step.
        position = os.lseek(fd, offset, whence)
        self._rbuf, self._rpos = b"", 0
        self._pos = position
        self._just_seeked = True
        return position

    # -- reading --------------------------------------------------------------

    async def read(self, size: Optional[int] = -1) -> bytes:
        """Read up to size bytes from the file position; all of it to end of
        file when size is -1 or None.  b"" at end of file."""
        try:
            size = size_arg(size)  # first, as io's read
        except (TypeError, OverflowError):
            self._refused_before_its_argument("read")
            raise
        if size < -1 and self._readable and not self._unbuffered:  # io.BufferedReader's check (FileIO reads all)
            raise ValueError("read length must be non-negative or -1")
        fd = self._reading_fd("read")
        turns = self._turns
        if turns.busy:
            fd = await self._wait_turn()
        else:
            turns.busy = True
        try:
            head = b""
            if self._rbuf:
                head = self._take(size)
                if len(head) == size:
                    return head
                size = size if size < 0 else size - len(head)
            offset = self._offset()
            try:
                if offset < 0:
                    data = await self._stream_read(fd, size)
                elif size >= 0:  # fewer bytes than io.BufferedReader's buffer: the buffer's size
                    want = self._read_ahead if 0 < size < self._read_ahead and not self._just_seeked else size
                    data = await self._engine._read(fd, want, offset, self._align)
                else:
                    data = await read_to_end(self._engine, fd, offset, self._align, self._open_fd)
            except BaseException:
                self._unread(head)
                raise
            if offset >= 0:
                self._pos = offset + len(data)
                self._just_seeked = False
            if len(data) > size >= 0:  # the rest is read ahead, for the next reads
                self._rbuf, self._rpos = data, size
                data = data[:size]
            return head + data if head else data
        finally:
            turns.release()

    async def readall(self) -> bytes:
        """Read to end of file (read(-1))."""
        return await self.read(-1)

    async def read1(self, size: int = -1) -> bytes:
        """Read up to size bytes with at most one read from the kernel; to end
        of file when size is negative."""
        try:
            size = max(ssize_arg(size), -1)  # first; None refused, as a buffered read1's; any negative size reads all
        except (TypeError, OverflowError):
            self._refused_before_its_argument("read1")
            raise
        self._reading_fd("read1")
        if self._rbuf and size != 0 and not self._turns.busy:
            return self._take(size)
        return await self.read(size)

    async def peek(self, size: int = 0) -> bytes:
        """Bytes from the file position on, without moving it, as
        io.BufferedReader.peek: what is read ahead, or else one read from the
        kernel (kept for the next reads).  How many may differ from size; b""
        only at end of file."""
        self._reading_fd("peek")
        ssize_arg(size)  # only its type and range matter, as for io.BufferedReader
        async with self._turns:
            fd = self._open_fd()  # closed while this call waited for its turn?
            if not self._rbuf:
                offset = self._offset()
                if offset < 0:
                    chunk = await self._stream_read(fd, READ_CHUNK)
                else:
                    chunk = await self._engine._read(fd, READ_CHUNK, offset, self._align)
                    self._pos = offset + len(chunk)
                self._unread(chunk)
            return self._rbuf[self._rpos:]

    async def readinto(self, buffer: Any) -> int:
        """Read into a writable bytes-like object; return the count read."""
        try:
            fd = self._reading_fd("readinto")
        except ValueError:  # closed, or not open for reading (UnsupportedOperation): io converts the buffer first
            check_buffer(buffer, True, "readinto")
            raise
        turns = self._turns
        if turns.busy:
            fd = await self._wait_turn()
        else:
            turns.busy = True
        try:
            head = b""
            if self._rbuf:
                _, view = hold_buffer(buffer, True, "readinto")  # its errors before anything is taken
                head = self._take(len(view))
                view[:len(head)] = head
                if len(head) == len(view):
                    return len(head)
                buffer = view[len(head):]
            offset = self._offset()
            try:
                if offset < 0:
                    n = await self._stream_readinto(fd, buffer)
                else:  # into the caller's buffer, held while the kernel may write it
                    n = await self._engine._readinto(fd, buffer, offset, self._align)
            except BaseException:
                self._unread(head)
                raise
            if offset >= 0:
                self._pos = offset + n
            return len(head) + n
        finally:
            turns.release()

    async def _readline_in_turn(self, size: Optional[int]) -> bytes:
        size = size_arg(size)
        if size == 0:  # as io.FileIO: even on a file not open for reading
            self._open_fd("readline")
            return b""
        self._reading_fd("readline")
        turns = self._turns
        if turns.busy:
            await self._wait_turn()
        else:
            turns.busy = True
        try:
            return await self._readline(size)
        finally:
            turns.release()

    async def _readline(self, size: int) -> bytes:
        parts: List[bytes] = []
        total = 0
        while True:
            buf, pos = self._rbuf, self._rpos
            end = len(buf) if size < 0 else min(len(buf), pos + size - total)
            newline = buf.find(b"\n", pos, end)
            if newline >= 0:
                end = newline + 1
            self._consume(end)
            if newline >= 0 and not parts:
                return buf[pos:end]  # the usual case: the whole line is in the read-ahead
            parts.append(buf[pos:end])
            total += end - pos
            if newline >= 0 or total == size:
                break
            fd = self._open_fd()  # closed while an earlier chunk was read? Not another file's bytes
            offset = self._offset()
            try:
                if offset < 0:
                    chunk = await self._stream_read(fd, READ_CHUNK)
                else:
                    chunk = await self._engine._read(fd, READ_CHUNK, offset, self._align)
            except BaseException:
                self._unread(b"".join(parts))  # the line so far is not lost
                raise
            if not chunk:
                break
            if offset >= 0:
                self._pos = offset + len(chunk)
            self._unread(chunk)
        return b"".join(parts)

    async def readlines(self, hint: Optional[int] = -1) -> List[bytes]:
        hint = size_arg(hint)
        self._open_fd(IOBASE)  # io.IOBase.readlines' own check first
        if hint <= 0:  # all of them: one read (a cancel consumes nothing; it checks the mode), cut in C
            return _lines_of(await self.read())
        self._reading_fd("readlines")
        async with self._turns:  # for the whole call: no other read comes between its lines
            lines: List[bytes] = []
            total = 0
            try:
                while not 0 < hint < total:
                    # The whole lines read ahead, cut at once in C (a coroutine
                    # a line cost 515 ns a line, 4x async for).
                    buf, pos = self._rbuf, self._rpos
                    cut = lines_to_take(buf, b"\n", pos, hint - total)
                    if cut > pos:
                        self._consume(cut)
                        lines += _lines_of(buf, pos, cut)
                        total += cut - pos
                        continue
                    line = await self._readline(-1)  # the next line is not all read ahead
                    if not line:
                        break
                    lines.append(line)
                    total += len(line)
                return lines
            except BaseException:
                self._unread(b"".join(lines))  # cancelled: the lines read so far are read again
                raise

    readlines.__doc__ = FileBase.readlines.__doc__

    def _buffered_line(self) -> Optional[bytes]:
        buf = self._rbuf
        # Another thread is refused by the slow path (a read-ahead is no
        # thread's to share); another loop of this thread may take a line read
        # ahead, as it asks no work of the engine (the loop's own check would
        # cost a getpid(2) a line).
        if buf and self._readable and not self._turns.busy and _thread_id() == self._thread:
            pos = self._rpos
            end = buf.find(b"\n", pos) + 1
            if end:
                if end == len(buf):  # _consume(end), without a call a line
                    self._rbuf, self._rpos = b"", 0
                else:
                    self._rpos = end
                return buf[pos:end]
        return None

    # -- streams: reads that a cancel cannot make lose bytes ------------------

    async def _stream_read(self, fd: int, size: int) -> bytes:
        """Up to size bytes of a stream; to its end if size < 0."""
        if size >= 0:
            return await self._stream_read_once(fd, size)
        chunks: List[bytes] = []
        try:
            while True:
                chunk = await self._stream_read_once(fd, READ_CHUNK)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        except BaseException:
            self._unread(b"".join(chunks))
            raise

    async def _stream_readinto(self, fd: int, buffer: Any) -> int:
        """readinto() of a stream: read as read() does (no bytes lost to a
        cancel), then copy.  The caller's buffer is held meanwhile, as it is
        while the kernel writes it for a positional readinto."""
        holder, view = hold_buffer(buffer, True, "readinto")
        try:
            data = await self._stream_read_once(fd, len(view))
            view[:len(data)] = data
            return len(data)
        finally:
            view.release()
            holder.release()

    async def _stream_read_once(self, fd: int, size: int) -> bytes:
        """One read of a stream, of at most size bytes.  It waits first until
        the stream is readable (a cancelled wait consumes nothing), so the
        read itself completes at once; if it does not (another reader took the
        bytes), a cancel leaves it pending on the file for the next read."""
        pending = self._pending_read
        if pending is not None:
            self._pending_read = None
        else:
            if size:
                await wait_readable(fd, self._waiting)
                fd = self._reading_fd("read")  # closed while waiting?
            pending = self._engine._read(fd, size, -1)
            if not asyncio.isfuture(pending) or pending.done():
                data: bytes = await pending
                return data
        try:
            data = await asyncio.shield(pending)
        except asyncio.CancelledError:
            if not pending.done():
                self._pending_read = pending
            elif not pending.cancelled() and pending.exception() is None:
                self._unread(pending.result())
            raise
        if len(data) > size:  # a kept read asked for more than this one
            self._unread(data[size:])
            data = data[:size]
        return data

    # -- positional reads: no turns -------------------------------------------

    def pread(self, size: int, offset: int) -> Coroutine[Any, Any, bytes]:
        """Read up to size bytes at offset, leaving the file position alone.

        A coroutine, as if declared async; the engine checks size and offset
        itself and raises at the await.  The class's pread is this function
        made in C (_ringlet._pread_method, at the end of this module): the
        same checks without a Python frame, this function for every other case."""
        fd = self._fd
        if fd < 0 or not self._readable or self._pos is None:
            return self._pread(size, offset)
        # None off the engine's loop (checked there, without asyncio's getpid()): _pread raises.
        # O_DIRECT: the engine's too (its aligned bounce buffer), no frame of ours.
        coro: Optional[Coroutine[Any, Any, bytes]] = (
            self._engine._pread(fd, size, offset, self._align) if self._align
            else self._engine._pread(fd, size, offset))
        return self._pread(size, offset) if coro is None else coro

    pread = _marked_coroutine_function(pread)

    async def _pread(self, size: int, offset: int) -> bytes:
        """pread when its fast way does not apply: the checks, errors raised by the await as from a coroutine."""
        fd = self._fd
        if fd < 0 or not self._readable or asyncio.get_running_loop() is not self._loop:
            self._reading_fd()  # raises the right error
        if type(size) is not int:
            size = operator.index(size)  # any __index__, as os.pread
        data: bytes = await self._engine._read(fd, size, self._positional_offset(offset), self._align)
        return data

    def _positional_offset(self, offset: Any) -> int:
        """The offset of pread's and preadinto's slow ways and of pwrite: any
        __index__ (as os.pread), not negative, on a file that has positions."""
        at: int = offset if type(offset) is int else operator.index(offset)
        if at < 0:
            raise ValueError("negative offset")
        if self._pos is None:
            self._require_position()
        return at

    def preadinto(self, buffer: Any, offset: int) -> Coroutine[Any, Any, int]:
        """Read into buffer (a writable bytes-like object) at offset, leaving
        the file position alone; return the count read, short only at end of
        file.  The buffer is held until the kernel is done with it, even if
        the wait is cancelled.  No bytes object is made: on an O_DIRECT file
        an aligned buffer (an mmap) at an aligned offset is filled by the
        device itself.  A coroutine, made in C as pread is."""
        fd = self._fd
        if fd < 0 or not self._readable or self._pos is None:
            return self._preadinto(buffer, offset)
        coro: Optional[Coroutine[Any, Any, int]] = (
            self._engine._preadinto(fd, buffer, offset, self._align) if self._align
            else self._engine._preadinto(fd, buffer, offset))
        return self._preadinto(buffer, offset) if coro is None else coro

    preadinto = _marked_coroutine_function(preadinto)

    async def _preadinto(self, buffer: Any, offset: int) -> int:
        """preadinto when its fast way does not apply: the checks, errors raised by the await."""
        fd = self._fd
        if fd < 0 or not self._readable or asyncio.get_running_loop() is not self._loop:
            self._reading_fd()  # raises the right error
        n: int = await self._engine._readinto(fd, buffer, self._positional_offset(offset), self._align)
        return n

    async def pread_many(self, requests: Iterable[Tuple[int, int]]) -> List[bytes]:
        """Read each (size, offset) of requests positionally, all in one
        call; return the bytes of each, in order.  The file position does not
        change.  What the page cache holds is read at once (with a large
        batch, part of it by io_uring's SQPOLL thread on an idle CPU), the
        rest goes to the kernel in one submission."""
        fd = self._reading_fd()
        self._require_position()
        if self._align:  # O_DIRECT reads are batched per loop tick anyway
            return list(await asyncio.gather(*(self.pread(size, offset) for size, offset in requests)))
        chunks: List[bytes] = await self._engine._read_many(fd, requests)
        return chunks

    # -- writing --------------------------------------------------------------

    async def write(self, data: Any) -> int:
        """Write all of data at the file position (the end, in append mode)
        and move the position past it.  A failed write leaves the position
        where it was; a cancelled one counts what it wrote (see the class)."""
        n, cancel = await self._write_counted(data)
        if cancel is not None:
            raise cancel
        return n

    async def _write_counted(self, data: Any) -> Tuple[int, Optional[BaseException]]:
        """write(), but a cancel is returned, with the count the write made
        before it (0 when it was still waiting for its turn), not raised.  A
        stream's write, abandoned on a cancel (see the class), raises it."""
        try:
            fd = self._writing_fd("write")
        except ValueError:  # closed, or not open for writing (UnsupportedOperation)
            if self._unbuffered or self._writable:  # FileIO's write and a buffered writer's convert data first
                check_buffer(data, False, "write")
            raise
        turns = self._turns
        if turns.busy:
            try:
                fd = await self._wait_turn()
            except asyncio.CancelledError as waiting:
                return 0, waiting
        else:
            turns.busy = True
        try:
            if self._rbuf:
                self._drop_read_ahead()
            offset = self._pos
            if offset is None:  # a stream: the kernel places it
                n: int = await self._engine._write(fd, data, -1)
                return n, None
            try:
                if self._append:  # O_APPEND: the kernel places it at the end
                    n, cancel = await settle(self._engine._write(fd, data, -1), self._engine._write_stop)
                    if n:  # the position is then the end, as write(2) leaves it
                        self._pos = os.fstat(fd).st_size
                else:
                    n, cancel = await settle(self._write_at(fd, data, offset), self._engine._write_stop)
                    self._pos = offset + n
            except asyncio.CancelledError as stopped:  # settle's: the write was stopped before it began
                return 0, stopped
            return n, cancel
        finally:
            turns.release()

    def _write_at(self, fd: int, data: Any, offset: int) -> Any:
        """The engine's write of data at offset (awaitable)."""
        align = self._align
        if align:
            size = memoryview(data).nbytes
            if offset % align or size % align:
                fd, align = self._buffered(), 0  # O_DIRECT takes aligned writes only
        return self._engine._write(fd, data, offset, align)

    def _buffered(self) -> int:
        """O_DIRECT files: a second descriptor of the same file, without O_DIRECT."""
        if self._buffered_fd < 0:
            flags = os.O_RDWR if self._readable else os.O_WRONLY
            self._buffered_fd = os.open(f"/proc/self/fd/{self._fd}", flags | os.O_CLOEXEC)
        return self._buffered_fd

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each bytes-like object of lines (no separator is added)."""
        self._usable_fd(IOBASE)  # as io's: a file not open for writing raises only at a line to write
        await write_batched(self.write, lines, b"")

    async def pwrite(self, data: Any, offset: int) -> int:
        """Write all of data at offset, leaving the file position alone.  A
        cancelled pwrite raises CancelledError once the kernel has answered (see the class)."""
        fd = self._writing_fd()
        offset = self._positional_offset(offset)
        if self._rbuf:  # the read-ahead may hold the old bytes
            self._drop_read_ahead()
        if self._append:  # Linux appends anyway, as os.pwrite
            n, cancel = await settle(self._engine._write(fd, data, offset), self._engine._write_stop)
        else:
            n, cancel = await settle(self._write_at(fd, data, offset), self._engine._write_stop)
        if cancel is not None:
            raise cancel
        return n

    async def truncate(self, size: Optional[int] = None) -> int:
        """Resize the file to size bytes (default: the file position) and
        return size; the file position does not change.  Uses io_uring's
        ftruncate where the kernel has it (6.9+), ftruncate(2) otherwise."""
        self._writing_fd("truncate")
        async with self._turns:
            fd = self._open_fd()  # closed while this call waited for its turn?
            size = self._position() if size is None else c_long_arg(size)
            if size < 0:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            self._drop_read_ahead()
            await truncate(self._engine, fd, size)
            return size

    async def flush(self) -> None:
        """Nothing to do: a binary file buffers no writes.  (ValueError if closed.)"""
        self._open_fd("flush")

    async def fsync(self) -> None:
        """Flush data and metadata to the device (fsync(2))."""
        await self._engine.fsync(self._usable_fd(), False)

    async def fdatasync(self) -> None:
        """Flush data to the device (fdatasync(2))."""
        await self._engine.fsync(self._usable_fd(), True)

    # -- position and life ----------------------------------------------------

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the file position (lseek(2) never waits on the device)."""
        whence = c_int_arg(whence)
        if not self._unbuffered and whence not in _WHENCES:  # before the file's state, as a buffered file
            raise ValueError(f"whence value {whence} unsupported")  # (FileIO's lseek says EINVAL)
        self._usable_fd("seek")
        async with self._turns:
            return self._seek(offset, whence)

    async def tell(self) -> int:
        """The file position."""
        self._usable_fd()
        async with self._turns:
            os.fstat(self._open_fd())  # EBADF for a descriptor closed underneath, as io.FileIO
            return self._position()

    async def close(self) -> None:
        """Close the file.  Calling it again does nothing.  Calls in progress
        waiting on a stream or for their turn, between two of their reads,
        or a pread waiting for a turn of the loop end with ValueError (the
        old number may name another file by then); a read or write the
        engine has begun ends on this file (the close waits for it)."""
        fd = self._fd
        running = _running_loop()
        # A coroutine finalized after its loop closed (no loop runs, the
        # engine is shut down) still closes its descriptor, directly.
        if fd >= 0 and running is not self._loop and not (running is None and self._engine.closed):
            self._refuse_loop()
        self._fd = -1
        self._rbuf, self._rpos = b"", 0
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        pending, self._pending_read = self._pending_read, None
        if pending is not None:
            pending.cancel()  # a kept stream read: nobody will take its bytes now
        buffered_fd, self._buffered_fd = self._buffered_fd, -1
        try:
            if buffered_fd >= 0:  # opened for writing
                await close_fd(self._engine, buffered_fd, release_in_worker=True)
        finally:  # even when cancelled during the first close
            if fd >= 0 and self._closefd:
                await close_fd(self._engine, fd, release_in_worker=self._writable)

    def __del__(self) -> None:
        if getattr(self, "_buffered_fd", -1) >= 0:
            os.close(self._buffered_fd)
        if getattr(self, "_fd", -1) >= 0 and self._closefd:
            warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self)
            try:
                os.close(self._fd)
            except OSError:
                pass


# pread and preadinto as C method descriptors: the same checks and the same
# Engine._pread (_preadinto) call as the Python methods above, made without a
# Python frame (about 6% of a cached 4 KiB read); every other case is the
# Python method's.  update_wrapper gives each its name, doc, signature
# (__wrapped__) and coroutine marks.
setattr(AsyncFile, "pread", functools.update_wrapper(_ringlet._pread_method(AsyncFile, AsyncFile.pread),
                                                     AsyncFile.pread))
setattr(AsyncFile, "preadinto", functools.update_wrapper(_ringlet._pread_method(AsyncFile, AsyncFile.preadinto, True),
                                                         AsyncFile.preadinto))


def _read_ahead_methods_in_c(cls: type, calls: Dict[str, Callable[..., Any]], text: bool) -> None:
    """cls's calls (name: the Python method each wraps) made in C
    (_ringlet._read_ahead_method): when the call first runs, a line or the
    bytes (characters) it asks for, if read ahead, are taken from cls's
    slots as _buffered_line and read take them, without a Python frame (a
    line cost ~0.35 us in Python, a small read ~1 us); every other case is
    the Python method's."""
    for name, python_method in calls.items():
        method = _ringlet._read_ahead_method(cls, python_method, Turns, name, text=text)
        setattr(cls, name, _marked_coroutine_function(functools.update_wrapper(method, python_method)))


_read_ahead_methods_in_c(AsyncFile, {"readline": FileBase.readline, "__anext__": FileBase.__anext__,
                                     "read": AsyncFile.read}, text=False)
