"""AsyncFile: a binary file whose every operation goes through the ring."""

from __future__ import annotations

import asyncio
import errno
import inspect
import io
import operator
import os
import warnings
from typing import Any, Coroutine, Iterable, List, Optional, Tuple

from ._base import FileBase, write_batched
from ._fdio import READ_CHUNK, read_to_end, size_arg, truncate


class AsyncFile(FileBase):
    """A binary file opened with ringlet.open().  Every method is a coroutine
    whose work is one or more io_uring operations; none blocks the loop.

    Nothing is buffered, except the read-ahead of readline() (and of
    iteration): while it holds bytes, tell() subtracts them, and seek(),
    write(), pwrite() and truncate() first step back over them, so the
    position is always where the reads so far have reached.

    The file position lives in this object, not in the descriptor: io_uring
    moves a descriptor's own offset asynchronously (a read or write "at the
    file position" can complete before the kernel has moved it, and the next
    one would then land on the same bytes), so every read and write goes to
    an explicit offset.  Concurrent writes take their places in call order.
    The descriptor's offset (os.lseek on fileno()) is not kept in step; use
    tell() and seek().  Pipes, FIFOs, sockets and character devices have no
    position and are read and written as streams.

    With direct=True (O_DIRECT, the page cache bypassed), reads of any offset
    and size go through aligned memory ringlet manages; writes whose offset
    and length are multiples of 4096 go direct, others through a second,
    buffered descriptor of the same file."""

    __slots__ = ("_fd", "_engine", "_readable", "_writable", "_closefd", "_rbuf", "_rpos", "_pos", "_append",
                 "_align", "_buffered_fd", "name", "mode")

    def __init__(self, engine: Any, fd: int, name: Any, mode: str, readable: bool, writable: bool,
                 closefd: bool = True, *, position: Optional[int] = None, append: bool = False,
                 align: int = 0) -> None:
        self._engine = engine
        self._fd = fd
        self._readable = readable
        self._writable = writable
        self._closefd = closefd
        self._rbuf = b""   # read-ahead: bytes read from the kernel that readline() has not returned yet
        self._rpos = 0     # ... starting at this index; _rbuf is b"" when nothing is left
        self._pos = position  # where the next kernel read or write goes; None: a stream
        self._append = append  # writes go to the end (O_APPEND)
        self._align = align    # O_DIRECT: the alignment reads and writes need, else 0
        self._buffered_fd = -1  # O_DIRECT: a buffered descriptor for unaligned writes, opened on demand
        self.name = name
        self.mode = mode

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<ringlet.AsyncFile name={self.name!r} mode={self.mode!r} {state}>"

    def _raw(self) -> "AsyncFile":
        return self

    def _open_fd(self) -> int:
        if self._fd < 0:
            raise ValueError("I/O operation on closed file")
        return self._fd

    def _reading_fd(self) -> int:
        fd = self._open_fd()
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        return fd

    def _writing_fd(self) -> int:
        fd = self._open_fd()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        return fd

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
        fd = self._open_fd()
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, os.SEEK_DATA, os.SEEK_HOLE):
            raise ValueError(f"whence value {whence} unsupported")
        offset = operator.index(offset)
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
        return position

    # -- reading --------------------------------------------------------------

    async def read(self, size: Optional[int] = -1) -> bytes:
        """Read up to size bytes from the file position; all of it to end of
        file when size is -1 or None.  b"" at end of file."""
        fd = self._reading_fd()
        size = size_arg(size)
        head = b""
        if self._rbuf:
            head = self._take(size)
            if len(head) == size:
                return head
            size = size if size < 0 else size - len(head)
        offset = self._offset()
        if size >= 0:
            data: bytes = await self._engine._read(fd, size, offset, self._align)
        else:
            data = await read_to_end(self._engine, fd, offset, self._align)
        if offset >= 0:
            self._pos = offset + len(data)
        return head + data if head else data

    async def readall(self) -> bytes:
        """Read to end of file (read(-1))."""
        return await self.read(-1)

    async def read1(self, size: Optional[int] = -1) -> bytes:
        """Read up to size bytes with at most one read from the kernel; to end
        of file when size is -1 or None."""
        self._reading_fd()
        size = size_arg(size)
        if self._rbuf and size != 0:
            return self._take(size)
        return await self.read(size)

    async def readinto(self, buffer: Any) -> int:
        """Read into a writable bytes-like object; return the count read."""
        fd = self._reading_fd()
        head = 0
        if self._rbuf:
            view = memoryview(buffer).cast("B")
            taken = self._take(len(view))
            head = len(taken)
            view[:head] = taken
            if head == len(view):
                return head
            buffer = view[head:]
        offset = self._offset()
        n: int = await self._engine._readinto(fd, buffer, offset, self._align)
        if offset >= 0:
            self._pos = offset + n
        return head + n

    async def readline(self, size: Optional[int] = -1) -> bytes:
        """Read one line, up to and including b"\\n"; at most size bytes when
        size >= 0.  b"" at end of file.  Reads ahead in chunks: see the class."""
        size = size_arg(size)
        if size == 0:  # as io.FileIO: even on a file not open for reading
            self._open_fd()
            return b""
        fd = self._reading_fd()
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
            offset = self._offset()
            chunk = await self._engine._read(fd, READ_CHUNK, offset, self._align)
            if not chunk:
                break
            if offset >= 0:
                self._pos = offset + len(chunk)
            self._rbuf, self._rpos = chunk, 0
        return b"".join(parts)

    def _buffered_line(self) -> Optional[bytes]:
        buf = self._rbuf
        if buf and self._readable:
            pos = self._rpos
            newline = buf.find(b"\n", pos)
            if newline >= 0:
                self._consume(newline + 1)
                return buf[pos:newline + 1]
        return None

    def pread(self, size: int, offset: int) -> Coroutine[Any, Any, bytes]:
        """Read up to size bytes at offset, leaving the file position alone.

        A coroutine, as if declared async; the hot path makes no Python frame:
        the engine checks size and offset itself and raises at the await."""
        fd = self._fd
        if fd < 0 or not self._readable or self._pos is None or self._align:
            return self._pread(size, offset)
        coro: Coroutine[Any, Any, bytes] = self._engine._pread(fd, size, offset)
        return coro

    async def _pread(self, size: int, offset: int) -> bytes:
        """pread's checks and O_DIRECT reads: errors raised by the await, as from a coroutine."""
        fd = self._reading_fd()
        if offset < 0:
            raise ValueError("negative offset")
        self._require_position()
        data: bytes = await self._engine._read(fd, size, offset, self._align)
        return data

    # Callers that ask whether pread is a coroutine function get yes, as before.
    if hasattr(inspect, "markcoroutinefunction"):
        pread = inspect.markcoroutinefunction(pread)
    else:
        setattr(pread, "_is_coroutine", getattr(asyncio.coroutines, "_is_coroutine", None))

    async def pread_many(self, requests: Iterable[Tuple[int, int]]) -> List[bytes]:
        """Read each (size, offset) of requests positionally, all in one
        submission; return the bytes of each, in order.  The file position
        does not change."""
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
        where it was."""
        fd = self._writing_fd()
        if self._rbuf:
            self._drop_read_ahead()
        offset = self._pos
        if offset is None or self._append:
            n: int = await self._engine._write(fd, data, -1)  # a stream, or O_APPEND: the kernel places it
            if offset is not None and n:  # after an append, the position is the end, as write(2) leaves it
                self._pos = os.fstat(fd).st_size
            return n
        # Claim the place now: a write started later goes after this one.
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        self._pos = offset + size
        try:
            return await self._write_at(fd, data, offset, size)
        except BaseException:
            if self._pos == offset + size:  # nothing claimed a place after ours
                self._pos = offset
            raise

    async def _write_at(self, fd: int, data: Any, offset: int, size: Optional[int] = None) -> int:
        align = self._align
        if align:
            size = memoryview(data).nbytes if size is None else size
            if offset % align or size % align:
                fd, align = self._buffered(), 0  # O_DIRECT takes aligned writes only
        n: int = await self._engine._write(fd, data, offset, align)
        return n

    def _buffered(self) -> int:
        """O_DIRECT files: a second descriptor of the same file, without O_DIRECT."""
        if self._buffered_fd < 0:
            flags = os.O_RDWR if self._readable else os.O_WRONLY
            self._buffered_fd = os.open(f"/proc/self/fd/{self._fd}", flags | os.O_CLOEXEC)
        return self._buffered_fd

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each bytes-like object of lines (no separator is added)."""
        self._writing_fd()
        await write_batched(self.write, lines, b"")

    async def pwrite(self, data: Any, offset: int) -> int:
        """Write all of data at offset, leaving the file position alone."""
        fd = self._writing_fd()
        if operator.index(offset) < 0:
            raise ValueError("negative offset")
        self._require_position()
        if self._rbuf:  # the read-ahead may hold the old bytes
            self._drop_read_ahead()
        if self._append:
            n: int = await self._engine._write(fd, data, offset)  # Linux appends anyway, as os.pwrite
            return n
        return await self._write_at(fd, data, offset)

    async def truncate(self, size: Optional[int] = None) -> int:
        """Resize the file to size bytes (default: the file position) and
        return size; the file position does not change.  Uses io_uring's
        ftruncate where the kernel has it (6.9+), ftruncate(2) otherwise."""
        fd = self._writing_fd()
        size = self._position() if size is None else operator.index(size)
        if size < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self._drop_read_ahead()
        await truncate(self._engine, fd, size)
        return size

    async def flush(self) -> None:
        """Nothing to do: a binary file buffers no writes.  (ValueError if closed.)"""
        self._open_fd()

    async def fsync(self) -> None:
        """Flush data and metadata to the device (fsync(2))."""
        await self._engine.fsync(self._open_fd(), False)

    async def fdatasync(self) -> None:
        """Flush data to the device (fdatasync(2))."""
        await self._engine.fsync(self._open_fd(), True)

    # -- position and life ----------------------------------------------------

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the file position (lseek(2) never waits on the device)."""
        return self._seek(offset, whence)

    async def tell(self) -> int:
        """The file position."""
        os.fstat(self._open_fd())  # EBADF for a descriptor closed underneath, as io.FileIO
        return self._position()

    async def close(self) -> None:
        """Close the file.  Calling it again does nothing."""
        fd, self._fd = self._fd, -1
        self._rbuf, self._rpos = b"", 0
        if self._buffered_fd >= 0:
            os.close(self._buffered_fd)
            self._buffered_fd = -1
        if fd >= 0 and self._closefd:
            await self._engine._close(fd)

    def __del__(self) -> None:
        if getattr(self, "_buffered_fd", -1) >= 0:
            os.close(self._buffered_fd)
        if getattr(self, "_fd", -1) >= 0 and self._closefd:
            warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self)
            try:
                os.close(self._fd)
            except OSError:
                pass
