"""AsyncFile and AsyncTextFile: file objects whose every operation goes through the ring.

A binary file (AsyncFile) reads and writes without any buffer of its own,
except for the read-ahead that readline() needs.  A text file (AsyncTextFile)
sits on a binary one, as io.TextIOWrapper sits on a buffered file: it decodes
what it reads and buffers what it writes until flush().
"""

from __future__ import annotations

import asyncio
import codecs
import collections.abc
import errno
import inspect
import io
import locale
import operator
import os
import re
import shutil
import stat
import warnings
from typing import Any, AsyncIterator, Callable, Coroutine, Generator, Iterable, List, Optional, Tuple, Union

from ._engine import get_engine

__all__ = ["AsyncFile", "AsyncTextFile", "open", "read_file", "write_file", "copy_file"]

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

_READ_CHUNK = 64 * 1024          # read() to EOF of a file whose size is unknown; readline() read-ahead
_MAX_READ_CHUNK = 16 * 1024 * 1024
_TEXT_CHUNK = 8 * 1024           # bytes decoded at a time by a text file (as io.TextIOWrapper)
_WRITE_CHUNK = 64 * 1024         # a text file writes once this much is pending; writelines() batches
_IORING_OP_FTRUNCATE = 55
_DIRECT_ALIGN = 4096             # O_DIRECT: memory, offsets and lengths aligned to this (any device's block)
_COOKIE_BITS = 64                # a text tell() cookie: byte offset | decoder flags << 64 (as CPython)
_COOKIE_MASK = (1 << _COOKIE_BITS) - 1
_UNIVERSAL_EOL = re.compile(r"\r\n|\r|\n")


def _mode_flags(mode: str) -> Tuple[int, bool, bool, bool]:
    """Validate a mode as built-in open() does; return (flags, readable, writable, text)."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    chars = set(mode)
    if chars - set("rwaxb+t") or len(chars) != len(mode):
        raise ValueError(f"invalid mode: {mode!r}")
    kinds = [c for c in "rwax" if c in chars]
    if len(kinds) != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if "t" in chars and "b" in chars:
        raise ValueError("can't have text and binary mode at once")
    update = "+" in chars
    kind = kinds[0]
    flags = {
        "r": 0,
        "w": os.O_CREAT | os.O_TRUNC,
        "a": os.O_CREAT | os.O_APPEND,
        "x": os.O_CREAT | os.O_EXCL,
    }[kind]
    readable = kind == "r" or update
    writable = kind != "r" or update
    flags |= os.O_RDWR if update else (os.O_RDONLY if kind == "r" else os.O_WRONLY)
    return flags, readable, writable, "b" not in chars


def _optional_str(value: Any, what: str) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"open() argument '{what}' must be str or None, not {type(value).__name__}")
    return value


def _text_options(encoding: Any, errors: Any, newline: Any) -> Tuple[str, str, Optional[str]]:
    """Check encoding, errors and newline as io.TextIOWrapper does; resolve the defaults."""
    encoding = _optional_str(encoding, "encoding")
    errors = _optional_str(errors, "errors")
    newline = _optional_str(newline, "newline")
    if newline not in (None, "", "\n", "\r", "\r\n"):
        raise ValueError(f"illegal newline value: {newline}")
    if encoding is None or encoding == "locale":
        encoding = locale.getpreferredencoding(False)
    if not codecs.lookup(encoding)._is_text_encoding:  # LookupError for unknown names
        raise LookupError(f"{encoding!r} is not a text encoding; use codecs.open() to handle arbitrary codecs")
    return encoding, "strict" if errors is None else errors, newline


def _fspath(path: Any) -> Tuple[bytes, Any]:
    """(bytes for the kernel, the path as given for error messages)."""
    path = os.fspath(path)  # TypeError for anything that is not a path
    return os.fsencode(path), path


def _isdir_error(filename: Any) -> IsADirectoryError:
    return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), filename)


def _size_arg(size: Optional[int]) -> int:
    """A read size as io accepts it: None or negative means 'all'."""
    return -1 if size is None else operator.index(size)


async def _read_to_end(engine: Any, fd: int, offset: int, align: int = 0) -> bytes:
    """Read from offset (-1: a stream) until a read returns b"" (end of file).

    Pipes and /proc files give short reads before their end, so only an
    empty read ends it.  A file larger than the first chunk is sized once
    with fstat and read in one go (one copy, not a chunk list)."""
    chunks = []
    want = _READ_CHUNK
    while True:
        chunk = await engine._read(fd, want, offset, align)
        if not chunk:
            break
        chunks.append(chunk)
        if offset >= 0:
            offset += len(chunk)
        if len(chunks) == 1 and len(chunk) == want and offset >= 0:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                # One byte more than what is left: a short read then proves end of file.
                want = max(st.st_size - offset + 1, _READ_CHUNK)
                continue
        want = min(want * 2, _MAX_READ_CHUNK)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _descriptor_offset(fd: int) -> Optional[int]:
    """The descriptor's offset, or None for a stream (pipe, FIFO, socket,
    terminal: lseek(2) says ESPIPE), which ringlet then reads and writes
    without offsets.  Devices such as /dev/zero or /dev/full have offsets."""
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError as exc:
        if exc.errno == errno.ESPIPE:
            return None
        raise


def _stat_open_file(fd: int, filename: Any, reject_directory: bool) -> os.stat_result:
    """fstat of a file just opened; built-in open() refuses a directory even
    for reading, and so does ringlet (for writing, openat(2) itself does).

    fstat of an open descriptor reads the in-memory inode and does not wait
    on the device, while io_uring's statx always goes through a kernel worker
    thread (about a millisecond): this runs on every open."""
    st = os.fstat(fd)
    if reject_directory and stat.S_ISDIR(st.st_mode):
        raise _isdir_error(filename)
    return st


async def _write_batched(write: Callable[[Any], Coroutine[Any, Any, int]], lines: Iterable[Any], empty: Any) -> None:
    """writelines(): join the lines into writes of about _WRITE_CHUNK each."""
    batch: List[Any] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= _WRITE_CHUNK:
            await write(empty.join(batch))
            batch, size = [], 0
    if batch:
        await write(empty.join(batch))


class _FileBase:
    """What binary and text files share: lines, iteration, context manager,
    and the aiofiles-style awaitable readable()/writable()/seekable()/isatty()."""

    __slots__ = ()

    def _raw(self) -> "AsyncFile":
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._raw()._fd < 0

    def fileno(self) -> int:
        """The file descriptor."""
        return self._raw()._open_fd()

    async def readable(self) -> bool:
        """True if the file was opened for reading."""
        raw = self._raw()
        raw._open_fd()
        return raw._readable

    async def writable(self) -> bool:
        """True if the file was opened for writing."""
        raw = self._raw()
        raw._open_fd()
        return raw._writable

    async def seekable(self) -> bool:
        """True if the file supports seek() and tell() (not a pipe, FIFO or socket)."""
        try:
            os.lseek(self.fileno(), 0, os.SEEK_CUR)
        except OSError:
            return False
        return True

    async def isatty(self) -> bool:
        """True if the file is a terminal."""
        return os.isatty(self.fileno())

    async def readline(self, size: Optional[int] = -1) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    async def readlines(self, hint: Optional[int] = -1) -> list:
        """Read lines to end of file; when hint > 0, stop after the line that
        takes the total size beyond hint (as io.IOBase.readlines)."""
        hint = _size_arg(hint)
        lines = []
        total = 0
        while True:
            line = await self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint < total:
                return lines

    def __aiter__(self) -> AsyncIterator[Any]:
        self._raw()._open_fd()
        return self  # type: ignore[return-value]

    def _buffered_line(self) -> Any:
        """The next line if it is already read ahead (no I/O), else None."""
        return None

    async def __anext__(self) -> Any:
        line = self._buffered_line()  # the fast path: one coroutine less a line
        if line is None:
            line = await self.readline()
            if not line:
                raise StopAsyncIteration
        return line

    async def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


class AsyncFile(_FileBase):
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
        self._require_position()
        return self._pos - (len(self._rbuf) - self._rpos)

    def _require_position(self) -> None:
        """A stream has no position: ESPIPE, as lseek(2), pread(2) and pwrite(2) say."""
        self._open_fd()
        if self._pos is None:
            raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))

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
        size = _size_arg(size)
        head = b""
        if self._rbuf:
            head = self._take(size)
            if len(head) == size:
                return head
            size = size if size < 0 else size - len(head)
        offset = self._offset()
        if size >= 0:
            data = await self._engine._read(fd, size, offset, self._align)
        else:
            data = await _read_to_end(self._engine, fd, offset, self._align)
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
        size = _size_arg(size)
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
        n = await self._engine._readinto(fd, buffer, offset, self._align)
        if offset >= 0:
            self._pos = offset + n
        return head + n

    async def readline(self, size: Optional[int] = -1) -> bytes:
        """Read one line, up to and including b"\\n"; at most size bytes when
        size >= 0.  b"" at end of file.  Reads ahead in chunks: see the class."""
        size = _size_arg(size)
        if size == 0:  # as io.FileIO: even on a file not open for reading
            self._open_fd()
            return b""
        fd = self._reading_fd()
        parts = []
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
            chunk = await self._engine._read(fd, _READ_CHUNK, offset, self._align)
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
        return self._engine._pread(fd, size, offset)

    async def _pread(self, size: int, offset: int) -> bytes:
        """pread's checks and O_DIRECT reads: errors raised by the await, as from a coroutine."""
        fd = self._reading_fd()
        if offset < 0:
            raise ValueError("negative offset")
        self._require_position()
        return await self._engine._read(fd, size, offset, self._align)

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
        return await self._engine._read_many(fd, requests)

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
            n = await self._engine._write(fd, data, -1)  # a stream, or O_APPEND: the kernel places it
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
        return await self._engine._write(fd, data, offset, align)

    def _buffered(self) -> int:
        """O_DIRECT files: a second descriptor of the same file, without O_DIRECT."""
        if self._buffered_fd < 0:
            flags = os.O_RDWR if self._readable else os.O_WRONLY
            self._buffered_fd = os.open(f"/proc/self/fd/{self._fd}", flags | os.O_CLOEXEC)
        return self._buffered_fd

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each bytes-like object of lines (no separator is added)."""
        self._writing_fd()
        await _write_batched(self.write, lines, b"")

    async def pwrite(self, data: Any, offset: int) -> int:
        """Write all of data at offset, leaving the file position alone."""
        fd = self._writing_fd()
        if operator.index(offset) < 0:
            raise ValueError("negative offset")
        self._require_position()
        if self._rbuf:  # the read-ahead may hold the old bytes
            self._drop_read_ahead()
        if self._append:
            return await self._engine._write(fd, data, offset)  # Linux appends anyway, as os.pwrite
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
        await _truncate(self._engine, fd, size)
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


# A decoded chunk, kept while its characters may still be returned: the
# decoder state before it, the byte offset it was read at (None if the file
# cannot seek), its bytes, and where its characters start and end in _decoded.
_Chunk = Tuple[Tuple[bytes, int], Optional[int], bytes, int, int]


class AsyncTextFile(_FileBase):
    """A text file opened with ringlet.open(): str in, str out, as built-in
    open() in text mode, with every read and write going through the ring.

    The differences from io.TextIOWrapper:

    * tell() returns the byte offset of the next character to read (with the
      decoder flags above bit 64, as CPython does, for encodings such as
      UTF-16 whose decoder has state).  Read ahead is undone by decoding it
      again, so the cookie is exact; if the next character does not start on
      a byte boundary that a fresh decoder can start from, tell() raises
      io.UnsupportedOperation (CPython would encode a character count).
    * write() after a read writes at the position reached by the reads (tell()),
      whereas CPython writes after its read-ahead.
    * truncate(size) takes a byte offset (CPython passes the cookie on).
    * An unknown encoding or bad newline is refused before the file is opened
      (built-in open() may already have created or truncated it).

    Writes are buffered (see write()); reads decode _TEXT_CHUNK bytes at a time.
    """

    __slots__ = ("buffer", "name", "mode", "encoding", "errors", "line_buffering", "_newline",
                 "_decoder_factory", "_decoder", "_encoder", "_decoded", "_dpos", "_chunks",
                 "_pending", "_pending_size", "_write_chunk")

    def __init__(self, raw: AsyncFile, mode: str, encoding: str, errors: str, newline: Optional[str],
                 line_buffering: bool = False, write_chunk: int = _WRITE_CHUNK) -> None:
        self.buffer = raw
        self.name = raw.name
        self.mode = mode
        self.encoding = encoding
        self.errors = errors
        self.line_buffering = line_buffering
        self._newline = newline
        self._write_chunk = write_chunk
        self._decoder_factory = codecs.getincrementaldecoder(encoding)
        self._decoder: Any = self._new_decoder() if raw._readable else None
        self._encoder: Any = None
        if raw._writable:
            self._encoder = codecs.getincrementalencoder(encoding)(errors)
            try:
                if raw._position() != 0:  # no byte order mark in the middle of a file
                    self._encoder.setstate(0)
            except OSError:  # not seekable: a pipe
                pass
        self._decoded = ""              # decoded characters; those before _dpos are returned
        self._dpos = 0
        self._chunks: List[_Chunk] = []  # what _decoded came from, for tell()
        self._pending: List[bytes] = []  # encoded writes not yet handed to the kernel
        self._pending_size = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.buffer._fd}"
        return (f"<ringlet.AsyncTextFile name={self.name!r} mode={self.mode!r} "
                f"encoding={self.encoding!r} {state}>")

    def _raw(self) -> AsyncFile:
        return self.buffer

    @property
    def newlines(self) -> Any:
        """The line endings seen so far when reading with universal newlines
        (newline None or ""): None, one of "\\r", "\\n", "\\r\\n", or a tuple."""
        return getattr(self._decoder, "newlines", None)

    def _new_decoder(self) -> Any:
        decoder = self._decoder_factory(self.errors)
        if self._newline is None or self._newline == "":
            decoder = io.IncrementalNewlineDecoder(decoder, translate=self._newline is None)
        return decoder

    def _check_readable(self) -> None:
        if self.buffer._fd < 0:
            raise ValueError("I/O operation on closed file.")
        if self._decoder is None:
            raise io.UnsupportedOperation("not readable")

    # -- the decoded read-ahead and tell() -------------------------------------

    def _decoder_state(self, decoder: Any) -> Tuple[bytes, int, int]:
        """(bytes the decoder holds, its flags without the pending-CR bit, pending CR 0/1)."""
        pending, flags = decoder.getstate()
        if isinstance(decoder, io.IncrementalNewlineDecoder):
            return pending, flags & ~1, flags & 1
        return pending, flags, 0

    def _reset_reading(self, flags: Optional[int] = None) -> None:
        """Forget the decoded read-ahead; restart the decoder (with flags, if given)."""
        self._decoded, self._dpos, self._chunks = "", 0, []
        if self._decoder is not None:
            if flags is None:
                self._decoder.reset()
            else:
                self._decoder.setstate((b"", flags))

    def _all_returned(self) -> bool:
        """True if every character decoded was returned and the decoder holds nothing back."""
        if self._dpos != len(self._decoded):
            return False
        held, _, cr = self._decoder_state(self._decoder)
        return not held and not cr

    def _trim(self) -> None:
        """Drop the chunks whose characters have all been returned."""
        chunks, k = self._chunks, self._dpos
        if not chunks:
            return
        if self._all_returned():  # tell() is then the file position
            self._decoded, self._dpos, self._chunks = "", 0, []
            return
        first = 0
        while chunks[first][4] < k:
            first += 1
        cut = chunks[first][3]
        if cut:
            self._decoded = self._decoded[cut:]
            self._dpos -= cut
            self._chunks = [(s, p, d, a - cut, b - cut) for s, p, d, a, b in chunks[first:]]

    async def _read_chunk(self, size: int = _TEXT_CHUNK) -> bool:
        """Read and decode up to size bytes (to end of file if size < 0);
        False at end of file."""
        self._trim()
        try:
            position: Optional[int] = self.buffer._position()
        except OSError:
            position = None
        state = self._decoder.getstate()
        data = await self.buffer.read(size)
        text = self._decoder.decode(data, final=size < 0 or not data)
        start = len(self._decoded)
        self._decoded += text
        self._chunks.append((state, position, data, start, start + len(text)))
        return bool(data)

    def _decode_from(self, state: Tuple[bytes, int], data: bytes) -> Tuple[int, bytes, int, int]:
        """Decode data from state: (characters out, counting a held-back CR; bytes held; flags; CR held)."""
        decoder = self._new_decoder()
        decoder.setstate(state)
        count = len(decoder.decode(data))
        pending, flags, cr = self._decoder_state(decoder)
        return count + cr, pending, flags, cr

    def _resumes_at(self, index: int, offset: int, flags: int, k: int) -> bool:
        """Does a fresh decoder started at offset into chunk index give back _decoded[k:]?"""
        tail = self._chunks[index][2][offset:offset + 64]
        for later in self._chunks[index + 1:]:
            if len(tail) >= 64:
                break
            tail += later[2][:64]
        decoder = self._new_decoder()
        decoder.setstate((b"", flags))
        return self._decoded.startswith(decoder.decode(tail), k)

    def _cookie(self) -> int:
        """tell() of a text file: see the class docstring."""
        if not self._chunks or self._all_returned():
            return self.buffer._position()  # nothing read ahead: as CPython, the plain byte offset
        k = self._dpos
        index = next(i for i, chunk in enumerate(self._chunks) if chunk[4] >= k)
        state, position, data, start, _ = self._chunks[index]
        if position is None:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        want = k - start
        low, high = 0, len(data)  # the fewest bytes that decode to `want` characters
        while low < high:
            middle = (low + high) // 2
            if self._decode_from(state, data[:middle])[0] >= want:
                high = middle
            else:
                low = middle + 1
        for offset in range(low, len(data) + 1):
            count, held, flags, _ = self._decode_from(state, data[:offset])
            if count > want:
                break
            if count == want and not held and self._resumes_at(index, offset, flags, k):
                position += offset  # 0 is the start of the file, where the decoder starts afresh
                return position | (flags << _COOKIE_BITS) if position else 0
        raise io.UnsupportedOperation("tell(): the read position is not on a byte boundary a decoder can start from")

    def _rewind(self) -> None:
        """Before a write or truncate: put the file position back where the reads reached."""
        if self._chunks:
            cookie = self._cookie()
            self.buffer._seek(cookie & _COOKIE_MASK, os.SEEK_SET)
            self._reset_reading(cookie >> _COOKIE_BITS)
            self._reset_encoder(cookie)

    # -- reading --------------------------------------------------------------

    async def read(self, size: Optional[int] = -1) -> str:
        """Read up to size characters; to end of file when size is -1 or None.
        "" at end of file."""
        self._check_readable()
        size = _size_arg(size)
        await self._flush_pending()
        if size < 0:
            await self._read_chunk(-1)
        else:
            while len(self._decoded) - self._dpos < size and await self._read_chunk():
                pass
        start = self._dpos
        text = self._decoded[start:] if size < 0 else self._decoded[start:start + size]
        self._dpos = start + len(text)
        return text

    def _line_end(self, start: int) -> int:
        """Index just after the first line ending at or after start in _decoded, or -1."""
        decoded, newline = self._decoded, self._newline
        if newline is None or newline == "\n":
            found = decoded.find("\n", start)
            return found + 1 if found >= 0 else -1
        if newline == "":
            match = _UNIVERSAL_EOL.search(decoded, start)
            return match.end() if match else -1
        found = decoded.find(newline, start)
        return found + len(newline) if found >= 0 else -1

    def _buffered_line(self) -> Optional[str]:
        if self._pending or not (self._newline is None or self._newline == "\n"):
            return None
        decoded, start = self._decoded, self._dpos
        end = decoded.find("\n", start)
        if end < 0:
            return None
        self._dpos = end + 1
        return decoded[start:end + 1]

    async def readline(self, size: Optional[int] = -1) -> str:
        """Read one line, with its line ending ("\\n" after translation when
        newline is None); at most size characters when size >= 0.  "" at end of file."""
        self._check_readable()
        size = _size_arg(size)
        await self._flush_pending()
        searched = 0  # characters after _dpos already searched for a line ending
        while True:
            end = self._line_end(self._dpos + searched)
            available = len(self._decoded) - self._dpos
            if end >= 0 or 0 <= size <= available:
                break
            searched = max(available - 1, 0)  # "\r\n" may straddle two chunks
            if not await self._read_chunk():
                break
        start = self._dpos
        if end < 0:
            end = len(self._decoded)
        if 0 <= size < end - start:
            end = start + size
        self._dpos = end
        return self._decoded[start:end]

    # -- writing --------------------------------------------------------------

    async def write(self, text: str) -> int:
        """Write text (newlines translated as newline= says); return its length
        in characters.  The encoded bytes are buffered until flush(), close(),
        a read or seek, _WRITE_CHUNK bytes, or a line end with line buffering."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self.buffer._fd < 0:
            raise ValueError("I/O operation on closed file.")
        if self._encoder is None:
            raise io.UnsupportedOperation("not writable")
        if self._chunks:
            self._rewind()
        length = len(text)
        newline = self._newline
        line_end = self.line_buffering and ("\n" in text or "\r" in text)
        if newline is None and os.linesep != "\n":  # pragma: no cover - not Linux
            newline = os.linesep
        if newline and newline != "\n":
            text = text.replace("\n", newline)
        data = self._encoder.encode(text)
        if data and self._decoder is not None:  # a read after this starts mid-stream (no BOM)
            self._decoder.setstate((b"", 0))
        self._pending.append(data)
        self._pending_size += len(data)
        if line_end or self._pending_size >= self._write_chunk:
            await self._flush_pending()
        return length

    async def writelines(self, lines: Iterable[str]) -> None:
        """Write each string of lines (no separator is added)."""
        await _write_batched(self.write, lines, "")

    async def _flush_pending(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            await self.buffer.write(data)

    async def flush(self) -> None:
        """Hand the buffered writes to the kernel (one write)."""
        self.buffer._open_fd()
        await self._flush_pending()

    async def truncate(self, size: Optional[int] = None) -> int:
        """Flush, then resize the file to size bytes (default: tell()); the
        position does not change.  Returns size."""
        self.buffer._writing_fd()
        await self._flush_pending()
        if size is None:
            size = self._cookie() & _COOKIE_MASK
        self._rewind()
        return await self.buffer.truncate(size)

    async def fsync(self) -> None:
        """Flush, then fsync(2)."""
        await self.flush()
        await self.buffer.fsync()

    async def fdatasync(self) -> None:
        """Flush, then fdatasync(2)."""
        await self.flush()
        await self.buffer.fdatasync()

    # -- position and life ----------------------------------------------------

    async def tell(self) -> int:
        """An opaque cookie for seek(): the byte offset of the next character
        for stateless encodings such as UTF-8 (see the class docstring)."""
        self.buffer._open_fd()
        await self._flush_pending()
        return self._cookie()

    async def seek(self, cookie: int, whence: int = os.SEEK_SET) -> int:
        """Go to a cookie from tell() (or 0); whence SEEK_CUR and SEEK_END
        only with 0, as io.TextIOWrapper.  Returns the new cookie."""
        self.buffer._open_fd()
        cookie = operator.index(cookie)
        if whence == os.SEEK_CUR:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero cur-relative seeks")
            cookie = await self.tell()
        elif whence == os.SEEK_END:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero end-relative seeks")
            await self._flush_pending()
            cookie = self.buffer._seek(0, os.SEEK_END)
            self._reset_reading(None if cookie == 0 else 0)
            self._reset_encoder(cookie)
            return cookie
        elif whence != os.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if cookie < 0:
            raise ValueError(f"negative seek position {cookie}")
        await self._flush_pending()
        self.buffer._seek(cookie & _COOKIE_MASK, os.SEEK_SET)
        self._reset_reading(None if cookie == 0 else cookie >> _COOKIE_BITS)
        self._reset_encoder(cookie)
        return cookie

    def _reset_encoder(self, cookie: int) -> None:
        if self._encoder is not None:
            if cookie == 0:
                self._encoder.reset()  # a byte order mark again at the start
            else:
                self._encoder.setstate(0)

    async def close(self) -> None:
        """Flush, then close the file.  Calling it again does nothing."""
        if self.closed:
            return
        try:
            await self._flush_pending()
        finally:
            self._reset_reading()
            await self.buffer.close()

    def __del__(self) -> None:
        # Like a built-in file, do not lose what was written but never flushed;
        # the binary file then warns (ResourceWarning) and closes the fd.
        pending = getattr(self, "_pending", None)
        if pending and getattr(self.buffer, "_fd", -1) >= 0:
            try:
                raw = self.buffer
                view = memoryview(b"".join(pending))
                while view:
                    if raw._pos is None or raw._append:
                        written = os.write(raw._fd, view)
                    else:
                        written = os.pwrite(raw._fd, view, raw._pos)
                        raw._pos += written
                    view = view[written:]
            except OSError:
                pass


async def _open_file(file: Any, mode: str, buffering: int, encoding: Optional[str], errors: Optional[str],
                     newline: Optional[str], closefd: bool, opener: Any, loop: Any,
                     direct: bool) -> Union[AsyncFile, AsyncTextFile]:
    flags, readable, writable, text = _mode_flags(mode)
    append = "a" in mode
    if direct:
        if text or append:
            raise ValueError("direct=True needs a binary mode other than append ('rb', 'wb', 'r+b', ...)")
        flags |= os.O_DIRECT
    if loop is not None and loop is not asyncio.get_running_loop():
        raise ValueError("ringlet.open(loop=...) must be the running loop: ringlet uses the running loop's engine")
    buffering = operator.index(buffering)
    if text:
        if buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        encoding, errors, newline = _text_options(encoding, errors, newline)
    else:
        for value, what in ((encoding, "an encoding"), (errors, "an errors"), (newline, "a newline")):
            if value is not None:
                raise ValueError(f"binary mode doesn't take {what} argument")
        if buffering == 1:
            warnings.warn("line buffering (buffering=1) isn't supported in binary mode, "
                          "the default buffer size will be used", RuntimeWarning, stacklevel=2)
    engine = get_engine()
    binary_mode = mode.replace("t", "") + ("" if "b" in mode else "b")
    if isinstance(file, int) and not isinstance(file, bool):
        if file < 0:
            raise ValueError("negative file descriptor")
        fd, name, owned = file, file, closefd
    else:
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        path, name = _fspath(file)
        if opener is None:
            fd = await engine._open(path, flags, 0o666, name)
        else:
            fd = opener(name, flags | os.O_CLOEXEC)
            if not isinstance(fd, int):
                raise TypeError("expected integer from opener")
            if fd < 0:
                raise ValueError(f"opener returned {fd}")
        owned = True
    raw = AsyncFile(engine, fd, name, binary_mode if text else mode, readable, writable, owned, append=append)
    try:
        st = _stat_open_file(fd, name, reject_directory=not writable and not isinstance(file, int))
        position = _descriptor_offset(fd)
        if position is not None:
            # The position starts at 0; at the end in append mode, as built-in
            # open(); where the descriptor is for a descriptor given.
            raw._pos = st.st_size if append else position if isinstance(file, int) else 0
        if direct and not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise ValueError("direct=True needs a regular file or a block device")
        raw._align = _DIRECT_ALIGN if direct else 0
        if not text:
            return raw
        return AsyncTextFile(raw, mode, encoding, errors, newline, line_buffering=buffering == 1,
                             write_chunk=buffering if buffering > 1 else _WRITE_CHUNK)
    except BaseException:
        await raw.close()
        raise


class _Opening(collections.abc.Coroutine):
    """What ringlet.open() returns: a coroutine (await it, or pass it to
    asyncio.create_task) that is also an async context manager, closing the
    file at the end of the ``async with`` block."""

    __slots__ = ("_coro", "_file")

    def __init__(self, coro: Coroutine[Any, Any, Union[AsyncFile, AsyncTextFile]]) -> None:
        self._coro = coro
        self._file: Optional[Union[AsyncFile, AsyncTextFile]] = None

    def __await__(self) -> Generator[Any, None, Union[AsyncFile, AsyncTextFile]]:
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    async def __aenter__(self) -> Any:
        self._file = await self._coro
        return self._file

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._file is not None:
            await self._file.close()


def open(file: Union[PathArg, int], mode: str = "r", buffering: int = -1, encoding: Optional[str] = None,
         errors: Optional[str] = None, newline: Optional[str] = None, closefd: bool = True,
         opener: Optional[Callable[[Any, int], int]] = None, *, direct: bool = False, loop: Any = None,
         executor: Any = None) -> _Opening:
    """Open a file for asynchronous I/O through io_uring.

    The arguments are those of built-in open().  A binary mode ("rb", "wb",
    "r+b", ...) gives an AsyncFile; a text mode ("r", "w", "a", "x", with "+"
    or "t") gives an AsyncTextFile that decodes with encoding (default: the
    locale's, as open()), errors and newline as io.TextIOWrapper does.
    buffering=1 in text mode flushes at each line end; a value > 1 is the
    size at which buffered text writes are flushed.  Binary files buffer no
    writes.  opener(path, flags) is called, blocking, as built-in open() does.

    direct=True opens with O_DIRECT: the page cache is bypassed, reads and
    writes go through aligned memory ringlet manages (binary modes only; see
    AsyncFile).

    Use ``f = await ringlet.open(...)`` or ``async with ringlet.open(...) as
    f``.  Errors are those open() raises.  loop and executor are accepted for
    aiofiles compatibility: executor is ignored (there is no thread pool) and
    loop, if given, must be the running loop.
    """
    return _Opening(_open_file(file, mode, buffering, encoding, errors, newline, closefd, opener, loop, direct))


async def read_file(path: PathArg) -> bytes:
    """Return the whole content of the file at path."""
    raw, name = _fspath(path)
    engine = get_engine()
    fd = await engine._open(raw, os.O_RDONLY, 0, name)
    try:
        return await _read_to_end(engine, fd, 0)
    except IsADirectoryError:
        raise _isdir_error(name) from None
    finally:
        await engine._close(fd)


async def write_file(path: PathArg, data: Any) -> int:
    """Create or truncate the file at path and write data; return its length."""
    raw, name = _fspath(path)
    memoryview(data)  # TypeError for anything that is not bytes-like, before the file is touched
    engine = get_engine()
    fd = await engine._open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666, name)
    try:
        return await engine._write(fd, data, 0)
    finally:
        await engine._close(fd)


async def copy_file(src: PathArg, dst: PathArg) -> int:
    """Copy the content of src to dst (created or truncated); return the bytes copied.

    The copy runs in C: each read's completion issues its write, with several
    chunks in flight, and Python is resumed once at the end.  A pipe or FIFO
    is copied in order.  As shutil.copyfile, copying a file onto itself (or a
    hard link of it) raises shutil.SameFileError and leaves it alone."""
    raw_src, src_name = _fspath(src)
    raw_dst, dst_name = _fspath(dst)
    engine = get_engine()
    src_fd = await engine._open(raw_src, os.O_RDONLY, 0, src_name)
    try:
        src_st = _stat_open_file(src_fd, src_name, reject_directory=True)
        # Truncate only once dst is known not to be src.
        dst_fd = await engine._open(raw_dst, os.O_WRONLY | os.O_CREAT, 0o666, dst_name)
        try:
            dst_st = os.fstat(dst_fd)
            if (dst_st.st_dev, dst_st.st_ino) == (src_st.st_dev, src_st.st_ino):
                raise shutil.SameFileError(f"{src_name!r} and {dst_name!r} are the same file")
            if stat.S_ISREG(dst_st.st_mode) and dst_st.st_size:
                await _truncate(engine, dst_fd, 0)
            return await engine.copy(src_fd, dst_fd)
        finally:
            await engine._close(dst_fd)
    finally:
        await engine._close(src_fd)


async def _truncate(engine: Any, fd: int, size: int) -> None:
    """ftruncate through io_uring where the kernel has it (6.9+), ftruncate(2) otherwise."""
    if engine.supports(_IORING_OP_FTRUNCATE):
        await engine.ftruncate(fd, size)
    else:
        os.ftruncate(fd, size)
