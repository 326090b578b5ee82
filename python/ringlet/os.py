"""ringlet.os: coroutine versions of the os functions that touch files.

Each function takes the arguments of the os function of the same name and
raises what it raises (the same OSError subclass, errno, filename and
filename2; TypeError and ValueError for bad arguments), and returns the same
kind of result (bytes names for a bytes path, and so on).

Where the kernel has an io_uring opcode for the operation (statx, renameat,
unlinkat, mkdirat, symlinkat, linkat: see ``engine.supports()``), the call
goes through the ring: no thread is involved.  Otherwise, and for the
functions without an opcode (readlink, listdir, scandir, access, ...), or for
arguments the ring path does not take (``dir_fd``, a descriptor where a path
is usual), the os function runs in the loop's default executor, as aiofiles
does for everything.

``ringlet.os.path`` (also importable as ``ringlet.ospath``) has exists,
isfile, isdir, islink, getsize, getmtime, ... on top of these.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from typing import Any, AsyncIterator, Callable, Generator, Iterator, List, Optional, Tuple, TypeVar, Union

from ._contract import Engine, Opcode, PathArg
from ._engine import get_engine

__all__ = [
    "access", "getcwd", "link", "listdir", "lstat", "makedirs", "mkdir", "path", "readlink", "remove",
    "removedirs", "rename", "renames", "replace", "rmdir", "scandir", "sendfile", "stat", "statvfs",
    "symlink", "unlink", "walk",
]

T = TypeVar("T")


async def _in_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking os function in the running loop's default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


def _ring(opcode: int) -> Optional[Engine]:
    """The running loop's engine if the kernel has this opcode, else None."""
    try:
        engine = get_engine()
    except OSError:  # io_uring refused here (see ringlet.backend())
        return None
    return engine if engine.supports(opcode) else None


def _ring_path(path: Any) -> Optional[bytes]:
    """The path as bytes for the ring, or None when the os function should
    handle it (a descriptor, a wrong type, an embedded NUL): its own checks
    then give the exact error."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return None
    try:
        raw = os.fsencode(path)
    except (TypeError, UnicodeError):
        return None
    return None if b"\0" in raw else raw


def _ring_dst(dst: Any) -> Optional[bytes]:
    """_ring_path of a rename's or a link's second path.  An empty one is
    left to the os function: io_uring takes in both paths before it looks
    either up, so it refuses "" (ENOENT) before the first path's own error
    (say ENOTDIR), which rename(2) and link(2) give first."""
    raw = _ring_path(dst)
    return raw if raw else None


async def stat(path: Union[PathArg, int], *, dir_fd: Optional[int] = None,
               follow_symlinks: bool = True) -> os.stat_result:
    """os.stat(): through io_uring statx, or the executor (dir_fd given)."""
    engine = _ring(Opcode.STATX) if dir_fd is None else None
    if engine is not None:
        if type(path) is int and follow_symlinks and 0 <= path <= 0x7FFFFFFF:
            return await engine.statx(path, path)
        raw = _ring_path(path)
        if raw is not None and not isinstance(path, int):
            return await engine.statx(raw, os.fspath(path), bool(follow_symlinks))
    return await _in_thread(os.stat, path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)


async def lstat(path: PathArg, *, dir_fd: Optional[int] = None) -> os.stat_result:
    """os.lstat(): stat() without following a final symbolic link."""
    if isinstance(path, int):  # os.lstat takes no descriptor: its TypeError
        return await _in_thread(os.lstat, path, dir_fd=dir_fd)
    return await stat(path, dir_fd=dir_fd, follow_symlinks=False)


async def rename(src: PathArg, dst: PathArg, *, src_dir_fd: Optional[int] = None,
                 dst_dir_fd: Optional[int] = None) -> None:
    """os.rename(): through io_uring renameat, or the executor.  On Linux
    it replaces an existing dst, exactly as replace()."""
    engine = _ring(Opcode.RENAMEAT) if src_dir_fd is None and dst_dir_fd is None else None
    raw_src, raw_dst = _ring_path(src), _ring_dst(dst)
    if engine is not None and raw_src is not None and raw_dst is not None:
        return await engine.rename(raw_src, raw_dst, 0, os.fspath(src), os.fspath(dst))
    return await _in_thread(os.rename, src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


async def replace(src: PathArg, dst: PathArg, *, src_dir_fd: Optional[int] = None,
                  dst_dir_fd: Optional[int] = None) -> None:
    """os.replace(): the same call as rename() on Linux."""
    await rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


async def _unlinkat(path: PathArg, dir_fd: Optional[int], directory: bool) -> None:
    engine = _ring(Opcode.UNLINKAT) if dir_fd is None else None
    raw = _ring_path(path)
    if engine is not None and raw is not None:
        return await engine.unlink(raw, directory, os.fspath(path))
    return await _in_thread(os.rmdir if directory else os.unlink, path, dir_fd=dir_fd)


async def remove(path: PathArg, *, dir_fd: Optional[int] = None) -> None:
    """os.remove(): through io_uring unlinkat, or the executor."""
    await _unlinkat(path, dir_fd, False)


async def unlink(path: PathArg, *, dir_fd: Optional[int] = None) -> None:
    """os.unlink(): the same as remove()."""
    await _unlinkat(path, dir_fd, False)


async def rmdir(path: PathArg, *, dir_fd: Optional[int] = None) -> None:
    """os.rmdir(): through io_uring unlinkat(AT_REMOVEDIR), or the executor."""
    await _unlinkat(path, dir_fd, True)


async def mkdir(path: PathArg, mode: int = 0o777, *, dir_fd: Optional[int] = None) -> None:
    """os.mkdir(): through io_uring mkdirat, or the executor."""
    engine = _ring(Opcode.MKDIRAT) if dir_fd is None and type(mode) is int else None
    raw = _ring_path(path)
    if engine is not None and raw is not None and -(1 << 31) <= mode < (1 << 31):
        return await engine.mkdir(raw, mode, os.fspath(path))
    return await _in_thread(os.mkdir, path, mode, dir_fd=dir_fd)


async def makedirs(name: PathArg, mode: int = 0o777, exist_ok: bool = False) -> None:
    """os.makedirs(): mkdir() of each missing directory of name, as os.makedirs
    does it (mode applies to the last one only, FileExistsError unless exist_ok)."""
    head, tail = os.path.split(name)
    if not tail:
        head, tail = os.path.split(head)
    if head and tail and not await path.exists(head):
        try:
            await makedirs(head, exist_ok=exist_ok)
        except FileExistsError:  # another task or process made it meanwhile
            pass
        if tail == (os.curdir.encode() if isinstance(tail, bytes) else os.curdir):
            return
    try:
        await mkdir(name, mode)
    except OSError:
        # Cannot rely on the errno: EEXIST, or EACCES/EROFS on an existing directory.
        if not exist_ok or not await path.isdir(name):
            raise


async def link(src: PathArg, dst: PathArg, *, src_dir_fd: Optional[int] = None,
               dst_dir_fd: Optional[int] = None, follow_symlinks: bool = True) -> None:
    """os.link(): through io_uring linkat, or the executor."""
    engine = _ring(Opcode.LINKAT) if src_dir_fd is None and dst_dir_fd is None else None
    raw_src, raw_dst = _ring_path(src), _ring_dst(dst)
    if engine is not None and raw_src is not None and raw_dst is not None:
        return await engine.link(raw_src, raw_dst, bool(follow_symlinks), os.fspath(src), os.fspath(dst))
    if follow_symlinks and src_dir_fd is None and dst_dir_fd is None and sys.version_info < (3, 14):
        return await _in_thread(_link_following, src, dst)
    return await _in_thread(os.link, src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,
                            follow_symlinks=follow_symlinks)


def _link_following(src: PathArg, dst: PathArg) -> None:
    """os.link(src, dst) following a symbolic link src, as linkat(2) with
    AT_SYMLINK_FOLLOW does on the ring.  Before Python 3.14, os.link without
    a dir_fd calls link(2), which on Linux links the symbolic link itself
    (CPython gh-81793); given a directory descriptor it calls linkat(2)."""
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:  # no working directory: os.link says what that means
        return os.link(src, dst)
    try:
        os.link(src, dst, src_dir_fd=cwd, follow_symlinks=True)
    finally:
        os.close(cwd)


async def symlink(src: PathArg, dst: PathArg, target_is_directory: bool = False, *,
                  dir_fd: Optional[int] = None) -> None:
    """os.symlink(): make dst a symbolic link to src, through io_uring
    symlinkat, or the executor.  target_is_directory matters on Windows only."""
    engine = _ring(Opcode.SYMLINKAT) if dir_fd is None else None
    raw_src, raw_dst = _ring_path(src), _ring_path(dst)
    if engine is not None and raw_src is not None and raw_dst is not None:
        return await engine.symlink(raw_src, raw_dst, os.fspath(src), os.fspath(dst))
    return await _in_thread(os.symlink, src, dst, target_is_directory, dir_fd=dir_fd)


async def readlink(path: PathArg, *, dir_fd: Optional[int] = None) -> Union[str, bytes]:
    """os.readlink() in the executor (io_uring has no readlink)."""
    return await _in_thread(os.readlink, path, dir_fd=dir_fd)


async def listdir(path: Union[PathArg, int, None] = None) -> List[Any]:
    """os.listdir() in the executor (io_uring has no getdents): str names,
    or bytes names for a bytes path."""
    return await _in_thread(os.listdir, path)


class ScandirEntries:
    """What scandir() returns: the os.DirEntry objects of a directory, all
    read in the executor, so iterating never blocks.  Like os.scandir's
    iterator it is an iterator and a context manager with close()."""

    __slots__ = ("_entries",)

    def __init__(self, entries: List["os.DirEntry[Any]"]) -> None:
        self._entries = iter(entries)

    def __iter__(self) -> Iterator["os.DirEntry[Any]"]:
        return self

    def __next__(self) -> "os.DirEntry[Any]":
        return next(self._entries)

    def close(self) -> None:
        """Forget the entries not yet iterated (there is no descriptor to close)."""
        self._entries = iter(())

    def __enter__(self) -> "ScandirEntries":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _scandir_list(path: Any) -> List["os.DirEntry[Any]"]:
    with os.scandir(path) as entries:
        return list(entries)


_SCANDIR_BATCH = 256  # entries read per trip to the executor


def _next_batch(it: Iterator["os.DirEntry[Any]"], n: int) -> List["os.DirEntry[Any]"]:
    batch = []
    for entry in it:
        batch.append(entry)
        if len(batch) == n:
            break
    return batch


class ScandirIterator:
    """What scandir() returns.  Awaited, it gives today's ScandirEntries (the
    whole directory read in the executor).  Iterated with ``async for`` (in
    ``async with`` to close it early), it opens the directory and reads it in
    the executor a batch of entries at a time, so a large or slow directory
    neither blocks the loop nor sits in memory whole."""

    __slots__ = ("_path", "_it", "_batch", "_done", "_busy")

    def __init__(self, path: Union[PathArg, int, None]) -> None:
        self._path: Any = "." if path is None else path
        self._it: Any = None  # the os.scandir iterator, once open
        self._batch: List["os.DirEntry[Any]"] = []
        self._done = False
        self._busy = False  # a batch is being read: one reader of the directory at a time

    def __await__(self) -> Generator[Any, None, ScandirEntries]:
        return self._read_all().__await__()

    async def _read_all(self) -> ScandirEntries:
        return ScandirEntries(await _in_thread(_scandir_list, self._path))

    def __aiter__(self) -> "ScandirIterator":
        return self

    async def __anext__(self) -> "os.DirEntry[Any]":
        if not self._batch:
            if self._done:
                raise StopAsyncIteration
            if self._busy:
                raise RuntimeError("ringlet.os.scandir: another task is already reading this iterator")
            self._busy = True
            try:
                if self._it is None:
                    self._it = await _in_thread(os.scandir, self._path)
                batch = await _in_thread(_next_batch, self._it, _SCANDIR_BATCH)
            finally:
                self._busy = False
            if len(batch) < _SCANDIR_BATCH:
                self.close()
            if not batch:
                raise StopAsyncIteration
            batch.reverse()  # popped from the end, in the directory's order
            self._batch = batch
        return self._batch.pop()

    def close(self) -> None:
        """Close the directory (closedir does not wait for the device); the
        entries not yet iterated are forgotten."""
        self._done = True
        self._batch = []
        it, self._it = self._it, None
        if it is not None:
            it.close()

    async def __aenter__(self) -> "ScandirIterator":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if self._it is not None:
            self._it.close()


def scandir(path: Union[PathArg, int, None] = None) -> ScandirIterator:
    """os.scandir() without blocking the loop, two ways:

        with await ringlet.os.scandir(path) as entries:   # read in full, in the executor
            for entry in entries: ...
        async for entry in ringlet.os.scandir(path):      # read in batches, in the executor
            ...

    Errors are os.scandir's (raised by the await, or by the first step of
    ``async for``).  DirEntry.stat() is still a plain, blocking call; use
    ringlet.os.stat(entry.path)."""
    return ScandirIterator(path)


def _list_for_walk(top: Any, topdown: bool, followlinks: bool) -> Tuple[List[Any], List[Any], List[Any]]:
    """One directory of walk(), in the executor: (dirs, nondirs, the paths to
    walk into when bottom-up), decided as os.walk decides them."""
    dirs: List[Any] = []
    nondirs: List[Any] = []
    walk_dirs: List[Any] = []
    with os.scandir(top) as entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            (dirs if is_dir else nondirs).append(entry.name)
            if is_dir and not topdown:
                try:
                    into = followlinks or not entry.is_symlink()
                except OSError:
                    into = True
                if into:
                    walk_dirs.append(entry.path)
    return dirs, nondirs, walk_dirs


async def walk(top: PathArg, topdown: bool = True, onerror: Optional[Callable[[OSError], Any]] = None,
               followlinks: bool = False) -> AsyncIterator[Tuple[Any, List[Any], List[Any]]]:
    """os.walk() as an async generator: ``async for dirpath, dirnames,
    filenames in ringlet.os.walk(top)``, with os.walk's arguments and
    results (top-down, the caller may prune dirnames in place; bottom-up;
    onerror called with the OSError of a directory that cannot be listed;
    symbolic links to directories followed only with followlinks).  Each
    directory is listed in the executor, one trip per directory; the
    symbolic-link check of top-down walking goes through ringlet.os.path."""
    top = os.fspath(top)
    sys.audit("os.walk", top, topdown, onerror, followlinks)
    try:
        dirs, nondirs, walk_dirs = await _in_thread(_list_for_walk, top, topdown, followlinks)
    except OSError as error:
        if onerror is not None:
            onerror(error)
        return
    if topdown:
        yield top, dirs, nondirs
        for name in dirs:
            new_path = os.path.join(top, name)
            if followlinks or not await path.islink(new_path):
                async for step in walk(new_path, topdown, onerror, followlinks):
                    yield step
    else:
        for new_path in walk_dirs:
            async for step in walk(new_path, topdown, onerror, followlinks):
                yield step
        yield top, dirs, nondirs


async def access(path: Union[PathArg, int], mode: int, *, dir_fd: Optional[int] = None,
                 effective_ids: bool = False, follow_symlinks: bool = True) -> bool:
    """os.access() in the executor (io_uring has no faccessat)."""
    return await _in_thread(os.access, path, mode, dir_fd=dir_fd, effective_ids=effective_ids,
                            follow_symlinks=follow_symlinks)


def _threaded(func: Callable[..., T]) -> Callable[..., Any]:
    """A coroutine function running func in the executor, for the rarer
    os functions that aiofiles.os also offers."""

    @functools.wraps(func)
    async def run(*args: Any, **kwargs: Any) -> T:
        return await _in_thread(func, *args, **kwargs)

    run.__doc__ = f"os.{func.__name__}() in the executor (no io_uring opcode).\n\n{func.__doc__ or ''}"
    return run


renames = _threaded(os.renames)
removedirs = _threaded(os.removedirs)
statvfs = _threaded(os.statvfs)
sendfile = _threaded(os.sendfile)
getcwd = _threaded(os.getcwd)

# ringlet.os.path, as os.path: also importable as `import ringlet.os.path`.
from . import ospath as path  # noqa: E402  (it uses stat and lstat above)

sys.modules[__name__ + ".path"] = path
