"""AsyncFile: a file object whose every operation goes through the ring."""

from __future__ import annotations

import collections.abc
import errno
import io
import operator
import os
import stat
import warnings
from typing import Any, Coroutine, Generator, Optional, Union

from ._engine import get_engine

__all__ = ["AsyncFile", "open", "read_file", "write_file", "copy_file"]

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

_READ_CHUNK = 64 * 1024          # read() to EOF of a file whose size is unknown
_MAX_READ_CHUNK = 16 * 1024 * 1024


def _mode_flags(mode: str) -> tuple[int, bool, bool]:
    """Validate a mode as built-in open() does; return (flags, readable, writable)."""
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
    if "b" not in chars:
        raise ValueError(f"ringlet.open: text mode {mode!r} is not supported yet; use a binary mode such as 'rb'")
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
    return flags, readable, writable


def _fspath(path: Any) -> tuple[bytes, Any]:
    """(bytes for the kernel, the path as given for error messages)."""
    path = os.fspath(path)  # TypeError for anything that is not a path
    return os.fsencode(path), path


def _isdir_error(filename: Any) -> IsADirectoryError:
    return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), filename)


async def _read_to_end(engine: Any, fd: int) -> bytes:
    """Read from the file position until a read returns b"" (end of file).

    Pipes and /proc files give short reads before their end, so only an
    empty read ends it.  A file larger than the first chunk is sized once
    with fstat and read in one go (one copy, not a chunk list)."""
    chunks = []
    want = _READ_CHUNK
    while True:
        chunk = await engine._read(fd, want, -1)
        if not chunk:
            break
        chunks.append(chunk)
        if len(chunks) == 1 and len(chunk) == want:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                # One byte more than what is left: a short read then proves end of file.
                want = max(st.st_size - os.lseek(fd, 0, os.SEEK_CUR) + 1, _READ_CHUNK)
                continue
        want = min(want * 2, _MAX_READ_CHUNK)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _reject_directory(fd: int, filename: Any) -> None:
    """Built-in open() refuses a directory even for reading; so does ringlet.

    fstat of an open descriptor reads the in-memory inode and does not wait
    on the device, while io_uring's statx always goes through a kernel worker
    thread (about a millisecond): this check runs on every open for reading."""
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        raise _isdir_error(filename)


class AsyncFile:
    """A binary file opened with ringlet.open().  Every method is a coroutine
    whose work is one or more io_uring operations; none blocks the loop."""

    __slots__ = ("_fd", "_engine", "_readable", "_writable", "_closefd", "name", "mode")

    def __init__(self, engine: Any, fd: int, name: Any, mode: str, readable: bool, writable: bool,
                 closefd: bool = True) -> None:
        self._engine = engine
        self._fd = fd
        self._readable = readable
        self._writable = writable
        self._closefd = closefd
        self.name = name
        self.mode = mode

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<ringlet.AsyncFile name={self.name!r} mode={self.mode!r} {state}>"

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._fd < 0

    def fileno(self) -> int:
        """The file descriptor."""
        return self._open_fd()

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

    async def read(self, size: Optional[int] = -1) -> bytes:
        """Read up to size bytes from the file position; all of it to end of
        file when size is -1 or None.  b"" at end of file."""
        fd = self._reading_fd()
        size = -1 if size is None else operator.index(size)
        if size >= 0:
            return await self._engine._read(fd, size, -1)
        return await _read_to_end(self._engine, fd)

    async def readinto(self, buffer: Any) -> int:
        """Read into a writable bytes-like object; return the count read."""
        return await self._engine._readinto(self._reading_fd(), buffer, -1)

    async def pread(self, size: int, offset: int) -> bytes:
        """Read up to size bytes at offset, leaving the file position alone."""
        # The hot path: the engine checks size's type and sign itself.
        fd = self._fd
        if fd < 0 or not self._readable:
            self._reading_fd()  # raises the right error
        if offset < 0:
            raise ValueError("negative offset")
        return await self._engine._read(fd, size, offset)

    async def write(self, data: Any) -> int:
        """Write all of data at the file position (the end, in append mode)."""
        return await self._engine._write(self._writing_fd(), data, -1)

    async def pwrite(self, data: Any, offset: int) -> int:
        """Write all of data at offset, leaving the file position alone."""
        fd = self._writing_fd()
        if operator.index(offset) < 0:
            raise ValueError("negative offset")
        return await self._engine._write(fd, data, offset)

    async def fsync(self) -> None:
        """Flush data and metadata to the device (fsync(2))."""
        await self._engine.fsync(self._open_fd(), False)

    async def fdatasync(self) -> None:
        """Flush data to the device (fdatasync(2))."""
        await self._engine.fsync(self._open_fd(), True)

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the file position (lseek(2) never waits on the device)."""
        return os.lseek(self._open_fd(), offset, whence)

    async def tell(self) -> int:
        """The file position."""
        return os.lseek(self._open_fd(), 0, os.SEEK_CUR)

    async def close(self) -> None:
        """Close the file.  Calling it again does nothing."""
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._closefd:
            await self._engine._close(fd)

    async def __aenter__(self) -> "AsyncFile":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0 and self._closefd:
            warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self)
            try:
                os.close(self._fd)
            except OSError:
                pass


async def _open_file(file: Any, mode: str, closefd: bool) -> AsyncFile:
    flags, readable, writable = _mode_flags(mode)
    engine = get_engine()
    if isinstance(file, int) and not isinstance(file, bool):
        if file < 0:
            raise ValueError("negative file descriptor")
        return AsyncFile(engine, file, file, mode, readable, writable, closefd)
    if not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    path, name = _fspath(file)
    fd = await engine._open(path, flags, 0o666, name)
    if not writable:  # for writing, openat(2) itself refuses a directory
        try:
            _reject_directory(fd, name)
        except BaseException:
            await engine._close(fd)
            raise
    return AsyncFile(engine, fd, name, mode, readable, writable)


class _Opening(collections.abc.Coroutine):
    """What ringlet.open() returns: a coroutine (await it, or pass it to
    asyncio.create_task) that is also an async context manager, closing the
    file at the end of the ``async with`` block."""

    __slots__ = ("_coro", "_file")

    def __init__(self, coro: Coroutine[Any, Any, AsyncFile]) -> None:
        self._coro = coro
        self._file: Optional[AsyncFile] = None

    def __await__(self) -> Generator[Any, None, AsyncFile]:
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    async def __aenter__(self) -> AsyncFile:
        self._file = await self._coro
        return self._file

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._file is not None:
            await self._file.close()


def open(file: Union[PathArg, int], mode: str = "rb", *, closefd: bool = True) -> _Opening:
    """Open a file for asynchronous I/O through io_uring.

    Modes are those of built-in open() in binary: r, w, a, x, with + for
    update.  Use ``f = await ringlet.open(...)`` or ``async with
    ringlet.open(...) as f``.  Errors are those open() raises.
    """
    return _Opening(_open_file(file, mode, closefd))


async def read_file(path: PathArg) -> bytes:
    """Return the whole content of the file at path."""
    raw, name = _fspath(path)
    engine = get_engine()
    fd = await engine._open(raw, os.O_RDONLY, 0, name)
    try:
        return await _read_to_end(engine, fd)
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
    chunks in flight, and Python is resumed once at the end."""
    raw_src, src_name = _fspath(src)
    raw_dst, dst_name = _fspath(dst)
    engine = get_engine()
    src_fd = await engine._open(raw_src, os.O_RDONLY, 0, src_name)
    try:
        _reject_directory(src_fd, src_name)
        dst_fd = await engine._open(raw_dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666, dst_name)
        try:
            return await engine.copy(src_fd, dst_fd)
        finally:
            await engine._close(dst_fd)
    finally:
        await engine._close(src_fd)
