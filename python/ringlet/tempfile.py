"""ringlet.tempfile: aiofiles.tempfile's API, with reads and writes through ringlet.

    async with ringlet.tempfile.TemporaryFile("wb+") as f:
        await f.write(b"data")
        await f.seek(0)
        data = await f.read()
    async with ringlet.tempfile.TemporaryDirectory() as name:   # the path
        ...

Each function takes the arguments of aiofiles.tempfile's function of the same
name (those of the standard tempfile module, plus loop and executor) and
returns an object that can be awaited (giving the file, or the directory
object) or used with ``async with`` (giving the file, or the directory's
name; closed or removed at the end of the block).

The files are ringlet files (``ringlet.open`` on the descriptor): their
reads and writes go through the ring.  Their arguments are checked in the
tempfile module's order, before a file is made.  TemporaryFile (and a
spooled file's rollover) makes its file as the tempfile module does on
Linux, with an O_TMPFILE open of the directory, which goes through the ring
too.  Where the kernel or the file system refuses O_TMPFILE, and for
NamedTemporaryFile, the file is made by mkstemp; that, making a directory
and removing a directory tree may block on the file system, so they run in
the loop's executor (``executor``, default: the loop's default), as aiofiles
runs them.  Removing a named file goes through ringlet.os.unlink.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import shutil
import tempfile as _tempfile
from typing import Any, AnyStr, Callable, Coroutine, Generator, Generic, Iterable, Optional, Protocol, TypeVar, Union

from . import os as _ros
from ._binary import AsyncFile
from ._engine import get_engine
from ._fdio import open_fd
from ._text import AsyncTextFile
from ._open import _check as _open_checks
from ._open import open as _open

__all__ = ["AsyncSpooledTemporaryFile", "AsyncTemporaryDirectory", "NamedTemporaryFile", "NamedTemporaryFileWrapper",
           "SpooledTemporaryFile", "TemporaryDirectory", "TemporaryFile"]

T = TypeVar("T")


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)
RingletFile = Union[AsyncFile, AsyncTextFile]


async def _in_executor(executor: Any, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(func, *args, **kwargs))


class _Context(Generic[C]):
    """What the functions return: awaitable (giving the object) and an async
    context manager (giving enter(object), and closing it at the end)."""

    __slots__ = ("_coro", "_obj", "_enter")

    def __init__(self, coro: Coroutine[Any, Any, C], enter: Callable[[C], Any] = lambda obj: obj) -> None:
        self._coro = coro
        self._obj: Optional[C] = None
        self._enter = enter

    def __await__(self) -> Generator[Any, None, C]:
        return self._coro.__await__()

    async def __aenter__(self) -> Any:
        self._obj = await self._coro
        return self._enter(self._obj)

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._obj is not None:
            await self._obj.close()


async def _wrap_fd(fd: int, path: Any, mode: str, buffering: int, encoding: Optional[str],
                   newline: Optional[str], executor: Any) -> RingletFile:
    """ringlet.open(fd, ...), or on failure close fd and remove path (as the
    tempfile module does)."""
    try:
        return await _open(fd, mode, buffering, encoding, newline=newline)
    except BaseException:
        os.close(fd)
        if path is not None:
            await _in_executor(executor, os.unlink, path)
        raise


def _mkstemp(suffix: Optional[AnyStr], prefix: Optional[AnyStr], dir: Optional[AnyStr],
             unlink: bool) -> tuple[int, Any]:
    fd, path = _tempfile.mkstemp(suffix, prefix, dir)
    if unlink:
        try:
            os.unlink(path)
        except BaseException:
            os.close(fd)
            raise
    return fd, path  # bytes when the arguments are, as tempfile gives it


async def _sanitized(suffix: Any, prefix: Any, dir: Any, executor: Any) -> tuple[Any, Any, Any]:
    """tempfile's own checks of suffix, prefix and dir (which it makes before
    any other), and their defaults: (suffix, prefix, dir).  dir's default,
    gettempdir(), tries the candidate directories the first time: in the
    executor then."""
    if dir is None and _tempfile.tempdir is None:
        await _in_executor(executor, _tempfile.gettempdir)
    prefix, suffix, dir, _ = _tempfile._sanitize_params(prefix, suffix, dir)  # type: ignore[attr-defined]
    return suffix, prefix, dir


def _check_file_arguments(mode: str, buffering: int, encoding: Optional[str], newline: Optional[str]) -> None:
    """open()'s checks of the file's arguments, before a file is made for them
    (the tempfile module opens with them before it makes the file)."""
    _open_checks(0, mode, buffering, encoding, None, newline, True, None, False)


# O_TMPFILE until a kernel reads it as O_DIRECTORY (before Linux 3.11), as tempfile's _O_TMPFILE_WORKS.
_unnamed_files_work = hasattr(os, "O_TMPFILE")


async def _unnamed_fd(suffix: Any, prefix: Any, dir: Any, executor: Any) -> int:
    """A new file with no name, made as tempfile.TemporaryFile makes it: an
    O_TMPFILE open of dir, through the ring (no thread; prefix and suffix
    unused), or where the kernel or the file system refuses that, mkstemp
    and unlink in the executor.  The arguments are _sanitized."""
    global _unnamed_files_work
    if _unnamed_files_work:
        flags = os.O_RDWR | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_TMPFILE
        try:
            return await open_fd(get_engine(), os.fsencode(dir), flags, 0o600, dir)
        except IsADirectoryError:
            _unnamed_files_work = False
        except OSError:
            pass  # this file system has no O_TMPFILE (NFS, FUSE...)
    fd, _ = await _in_executor(executor, _mkstemp, suffix, prefix, dir, True)
    return fd


async def _temporary_file(mode: str, buffering: int, encoding: Optional[str], newline: Optional[str],
                          suffix: Any, prefix: Any, dir: Any, executor: Any) -> RingletFile:
    if "b" not in mode:  # tempfile's first look at the mode (a TypeError if it is no str)
        encoding = io.text_encoding(encoding)
    suffix, prefix, dir = await _sanitized(suffix, prefix, dir, executor)
    _check_file_arguments(mode, buffering, encoding, newline)
    fd = await _unnamed_fd(suffix, prefix, dir, executor)
    return await _wrap_fd(fd, None, mode, buffering, encoding, newline, executor)


def TemporaryFile(mode: str = "w+b", buffering: int = -1, encoding: Optional[str] = None,
                  newline: Optional[str] = None, suffix: Optional[AnyStr] = None, prefix: Optional[AnyStr] = None,
                  dir: Optional[AnyStr] = None, loop: Any = None, executor: Any = None) -> _Context[RingletFile]:
    """An unnamed temporary file (removed from its directory at once, gone
    when closed), as a ringlet file whose name is its descriptor."""
    return _Context(_temporary_file(mode, buffering, encoding, newline, suffix, prefix, dir, executor))


class NamedTemporaryFileWrapper:
    """A ringlet file with a name in the file system: ``name`` is its path,
    ``delete`` says whether it is removed (on close when delete_on_close,
    else at the end of the ``async with`` block).  Everything else is the
    ringlet file's (``file``)."""

    def __init__(self, file: RingletFile, name: Any, delete: bool, delete_on_close: bool) -> None:
        self.file = file
        self.name = name
        self.delete = delete
        self._delete_on_close = delete_on_close
        self._removed = False

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.file, attr)

    def __aiter__(self) -> "NamedTemporaryFileWrapper":
        self.file.__aiter__()
        return self

    async def __anext__(self) -> Any:
        return await self.file.__anext__()

    async def _remove(self) -> None:
        if not self._removed:
            self._removed = True
            try:
                await _ros.unlink(self.name)
            except FileNotFoundError:  # removed by someone else: nothing left to do
                pass

    async def close(self) -> None:
        """Close the file; remove it if delete and delete_on_close."""
        try:
            await self.file.close()
        finally:
            if self.delete and self._delete_on_close:
                await self._remove()

    async def __aenter__(self) -> "NamedTemporaryFileWrapper":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self.file.close()
        finally:
            if self.delete:
                await self._remove()


class _NamedContext(_Context[NamedTemporaryFileWrapper]):
    __slots__ = ()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._obj is not None:
            await self._obj.__aexit__(*exc_info)


async def _named_temporary_file(mode: str, buffering: int, encoding: Optional[str], newline: Optional[str],
                                suffix: Any, prefix: Any, dir: Any, delete: bool, delete_on_close: bool,
                                executor: Any) -> NamedTemporaryFileWrapper:
    suffix, prefix, dir = await _sanitized(suffix, prefix, dir, executor)
    if "b" not in mode:  # as tempfile, after its checks of suffix, prefix and dir
        encoding = io.text_encoding(encoding)
    _check_file_arguments(mode, buffering, encoding, newline)
    fd, path = await _in_executor(executor, _mkstemp, suffix, prefix, dir, False)
    file = await _wrap_fd(fd, path, mode, buffering, encoding, newline, executor)
    return NamedTemporaryFileWrapper(file, path, delete, delete_on_close)


def NamedTemporaryFile(mode: str = "w+b", buffering: int = -1, encoding: Optional[str] = None,
                       newline: Optional[str] = None, suffix: Optional[AnyStr] = None,
                       prefix: Optional[AnyStr] = None, dir: Optional[AnyStr] = None, delete: bool = True,
                       delete_on_close: bool = True, loop: Any = None,
                       executor: Any = None) -> _NamedContext:
    """A temporary file with a visible name (``f.name``), as a ringlet file.
    With delete (the default) it is removed when closed, or, with
    delete_on_close=False, at the end of the ``async with`` block."""
    return _NamedContext(_named_temporary_file(mode, buffering, encoding, newline, suffix, prefix, dir,
                                               delete, delete_on_close, executor))


class AsyncSpooledTemporaryFile:
    """A temporary file kept in memory until it grows beyond max_size (or
    fileno() or rollover() is called); then its content moves to a ringlet
    TemporaryFile and every call after goes through ringlet.  In memory the
    calls do no I/O and never block."""

    def __init__(self, max_size: int, mode: str, buffering: int, encoding: Optional[str],
                 newline: Optional[str], suffix: Any, prefix: Any, dir: Any, executor: Any) -> None:
        self._memory: Union[io.BytesIO, io.TextIOWrapper]
        if "b" in mode:
            self._memory = io.BytesIO()
        else:
            encoding = io.text_encoding(encoding)
            self._memory = io.TextIOWrapper(io.BytesIO(), encoding=encoding, newline=newline)
        self._file: Optional[RingletFile] = None
        self._max_size = max_size
        self._args = (mode, buffering, encoding, newline, suffix, prefix, dir, executor)
        self._rolled = False
        self._mode = mode

    async def _check(self) -> None:
        if self._max_size and self._memory.tell() > self._max_size:
            await self.rollover()

    async def rollover(self) -> None:
        """Move the content to a file on disk (once)."""
        if self._rolled:
            return
        mode, buffering, encoding, newline, suffix, prefix, dir, executor = self._args
        memory = self._memory
        memory.flush()
        if isinstance(memory, io.TextIOWrapper):
            data, pos = memory.buffer.getvalue(), memory.tell()  # type: ignore[attr-defined]
        else:
            data, pos = memory.getvalue(), memory.tell()
        file = await _temporary_file(mode, buffering, encoding, newline, suffix, prefix, dir, executor)
        # As tempfile's: the file is this object's from now on, and the content goes in
        # through it, in the caller's mode (so a read-only mode fails here, as there).
        self._file, self._rolled = file, True
        memory.close()
        await (file.buffer if isinstance(file, AsyncTextFile) else file).write(data)
        await file.seek(pos, 0)

    async def fileno(self) -> int:
        """The descriptor, after rolling the content over to a file."""
        await self.rollover()
        assert self._file is not None
        return self._file.fileno()

    @property
    def closed(self) -> bool:
        return self._file.closed if self._file is not None else self._memory.closed

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def name(self) -> Any:
        return self._file.name if self._file is not None else None

    @property
    def encoding(self) -> Optional[str]:
        if self._file is not None:
            return getattr(self._file, "encoding", None)
        return getattr(self._memory, "encoding", None)

    @property
    def newlines(self) -> Any:
        if self._file is not None:
            return getattr(self._file, "newlines", None)
        return getattr(self._memory, "newlines", None)

    async def write(self, data: Any) -> int:
        if self._file is not None:
            return await self._file.write(data)
        n = self._memory.write(data)
        await self._check()
        return n

    async def writelines(self, lines: Iterable[Any]) -> None:
        if self._file is not None:
            return await self._file.writelines(lines)
        self._memory.writelines(lines)
        await self._check()

    async def read(self, size: Optional[int] = -1) -> Any:
        if self._file is not None:
            return await self._file.read(size)
        return self._memory.read(size)

    async def readline(self, size: Optional[int] = -1) -> Any:
        if self._file is not None:
            return await self._file.readline(size)
        return self._memory.readline(-1 if size is None else size)

    async def readlines(self, hint: Optional[int] = -1) -> list[Any]:
        if self._file is not None:
            return await self._file.readlines(hint)
        return self._memory.readlines(-1 if hint is None else hint)

    async def seek(self, offset: int, whence: int = 0) -> int:
        if self._file is not None:
            return await self._file.seek(offset, whence)
        return self._memory.seek(offset, whence)

    async def tell(self) -> int:
        if self._file is not None:
            return await self._file.tell()
        return self._memory.tell()

    async def truncate(self, size: Optional[int] = None) -> int:
        if self._file is None and size is not None and size > self._max_size:
            await self.rollover()  # as tempfile: growing past max_size by truncate rolls over too
        if self._file is not None:
            return await self._file.truncate(size)
        return self._memory.truncate(size)

    async def flush(self) -> None:
        if self._file is not None:
            return await self._file.flush()
        self._memory.flush()

    async def isatty(self) -> bool:
        return False if self._file is None else await self._file.isatty()

    async def close(self) -> None:
        if self._file is not None:
            await self._file.close()
        self._memory.close()

    def __aiter__(self) -> "AsyncSpooledTemporaryFile":
        return self

    async def __anext__(self) -> Any:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def __aenter__(self) -> "AsyncSpooledTemporaryFile":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


async def _spooled(*args: Any) -> AsyncSpooledTemporaryFile:
    return AsyncSpooledTemporaryFile(*args)


def SpooledTemporaryFile(max_size: int = 0, mode: str = "w+b", buffering: int = -1,
                            encoding: Optional[str] = None, newline: Optional[str] = None,
                            suffix: Optional[AnyStr] = None, prefix: Optional[AnyStr] = None,
                            dir: Optional[AnyStr] = None, loop: Any = None,
                            executor: Any = None) -> _Context[AsyncSpooledTemporaryFile]:
    """A temporary file in memory until it grows beyond max_size bytes (0:
    no limit), then on disk through ringlet (see AsyncSpooledTemporaryFile)."""
    return _Context(_spooled(max_size, mode, buffering, encoding, newline, suffix, prefix, dir, executor))


class AsyncTemporaryDirectory:
    """A temporary directory: ``name`` is its path; cleanup() (or close(), or
    the end of the ``async with`` block) removes it and everything in it, in
    the executor."""

    def __init__(self, name: Any, ignore_cleanup_errors: bool, delete: bool, executor: Any) -> None:
        self.name = name
        self._ignore_errors = ignore_cleanup_errors
        self._delete = delete
        self._executor = executor
        self._done = False

    async def cleanup(self) -> None:
        """Remove the directory and its content (once)."""
        if not self._done:
            self._done = True
            await _in_executor(self._executor, shutil.rmtree, self.name, ignore_errors=self._ignore_errors)

    async def close(self) -> None:
        """cleanup(), unless made with delete=False."""
        if self._delete:
            await self.cleanup()


async def _temporary_directory(suffix: Any, prefix: Any, dir: Any, ignore_cleanup_errors: bool, delete: bool,
                               executor: Any) -> AsyncTemporaryDirectory:
    name = await _in_executor(executor, _tempfile.mkdtemp, suffix, prefix, dir)
    return AsyncTemporaryDirectory(name, ignore_cleanup_errors, delete, executor)


def TemporaryDirectory(suffix: Optional[AnyStr] = None, prefix: Optional[AnyStr] = None,
                                 dir: Optional[AnyStr] = None, ignore_cleanup_errors: bool = False, *,
                                 delete: bool = True, loop: Any = None,
                                 executor: Any = None) -> _Context[AsyncTemporaryDirectory]:
    """A temporary directory: ``async with`` gives its name and removes it at
    the end; awaiting gives an AsyncTemporaryDirectory (name, cleanup())."""
    return _Context(_temporary_directory(suffix, prefix, dir, ignore_cleanup_errors, delete, executor),
                    enter=lambda d: d.name)
