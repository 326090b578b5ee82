"""The one-shot helpers: read_file, write_file and copy_file, each a whole
file in one call (open, I/O, close), with no file object."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
from typing import Any, Dict, Optional, Union

from . import _contract as contract, ospath
from ._contract import PathArg
from ._engine import get_engine
from ._fdio import close_fd, fspath, isdir_error, open_fd, read_to_end, settle, stat_open_file, truncate

__all__ = ["read_file", "write_file", "copy_file"]


async def read_file(path: PathArg) -> bytes:
    """Return the whole content of the file at path."""
    raw, name = fspath(path)
    engine = get_engine()
    # A cached file is read without the ring: open, reads and close on the
    # loop thread, none of them waiting (csrc/py/readfile.c).  Otherwise what
    # it did not finish is done through the engine.
    got = engine._read_file(raw, name)
    while True:
        if isinstance(got, bytes):
            return got
        if got is None or isinstance(got, (int, tuple)):
            break
        data = await got  # a turn of the loop first: then the content, or None: ask again
        if data is not None:
            return data
        got = engine._read_file(raw, name)
    if got is None:
        fd = await open_fd(engine, raw, os.O_RDONLY, 0, name)
    elif isinstance(got, int):
        fd = got
    else:
        fd, data, parts = got  # a large file, being read in parts on several cores
        try:
            return await _finish_parts(engine, fd, data, parts)
        finally:
            await close_fd(engine, fd)
    try:
        return await read_to_end(engine, fd, 0)
    except IsADirectoryError:
        raise isdir_error(name) from None
    finally:
        await close_fd(engine, fd)


async def _finish_parts(engine: Any, fd: int, data: bytes, parts: "list[Union[asyncio.Future[int], int, None]]") -> bytes:
    """The content of a file read in parts into data (Engine._read_file):
    each part a ring read's future, a count read already, or None (not
    launched).  Every ring read is waited for, even through a cancel, before
    the caller closes fd: a read still queued for a kernel worker looks its
    descriptor up when it starts, and the number could be another file's by
    then.  Counts short of the size (the file shrank, or a part could not be
    launched): the file is read again to its end.  Then the read at the end
    proves the size."""
    filled = 0
    error: Optional[BaseException] = None
    cancel: Optional[BaseException] = None
    for part in parts:
        if part is None or isinstance(part, int):
            filled += part or 0
            continue
        try:
            n, cancelled = await settle(part)
        except OSError as exc:
            if exc.errno != errno.ECANCELED:
                error = error or exc
            # ECANCELED: the engine tried to take the part back from a worker that had
            # started it; the worker gave up on it.  Its count is short: read again.
            continue
        except BaseException as exc:
            if not part.done():  # GeneratorExit, KeyboardInterrupt: not the read's outcome
                raise
            error = error or exc
            continue
        filled += n
        cancel = cancel or cancelled
    if error is not None:
        raise error
    if cancel is not None:
        raise cancel
    if filled != len(data):
        return await read_to_end(engine, fd, 0)
    tail = await read_to_end(engine, fd, filled)  # b"", unless the file grew meanwhile
    return data + tail if tail else data


# write_file's chain closes its file with io_uring's close of a fixed-file
# slot, which does not call the file's flush: where network and FUSE file
# systems (NFS, SMB, FUSE...) report a write error that close() would raise,
# and where a device's driver may act.  So a directory is written by a chain
# only once a file that a write_file made in steps there opened closed at
# once: a regular file of a file system without flush (Engine._closes_at_once,
# csrc/fileinfo.h, read_file's test too).  /dev, whose first file written is
# a device, is never chained (devtmpfs has tmpfs's magic: the file system
# alone would not tell).  A directory's later files are taken to be like its
# first: one that is a device node or a symbolic link elsewhere is not looked at.
_CHAIN_DIRS_MAX = 1024
_chain_dirs: Dict[bytes, bool] = {}  # directory -> a file written there closed at once
# Paths write_file has written: most likely there again, to be truncated.
# Any other is first tried as a new file (O_EXCL): the chain of a file that
# may have been truncated from non-empty starts its writeback in the kernel
# worker (csrc/py/writefile.c), which a new file's does not need.  A wrong
# guess costs time only.
_WRITTEN_MAX = 1024
_written: Dict[bytes, bool] = {}


def _directory(raw: bytes) -> bytes:
    """The directory a path names its file in, as an absolute path (no
    symbolic link is resolved: no file system is asked)."""
    return os.path.dirname(raw if os.path.isabs(raw) else os.path.join(os.getcwdb(), raw))


async def write_file(path: PathArg, data: Any) -> int:
    """Create or truncate the file at path and write data; return its length."""
    raw, name = fspath(path)
    with memoryview(data) as view:  # its errors before the file is touched: TypeError if not bytes-like,
        if not view.c_contiguous:    # BufferError where not contiguous, as a write() gives them
            raise BufferError(contract.NOT_CONTIGUOUS)
    engine = get_engine()
    directory = _directory(raw)
    if _chain_dirs.get(directory):
        # Open, write and close as one engine operation where the engine has
        # it (Engine._write_file): Python resumes once.  A cancel during the
        # open cancels it (nothing is written), a cancel later waits for the
        # write to land and the file to be closed: as with the steps below.
        key = os.path.join(directory, os.path.basename(raw))
        chained = engine._write_file(raw, data, name, key not in _written)
        if chained is not None:
            written, cancel = await settle(chained, engine._write_stop)
            if len(_written) >= _WRITTEN_MAX:
                _written.clear()
            _written[key] = True
            if cancel is not None:
                raise cancel
            return written
    fd = await open_fd(engine, raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666, name)
    if directory not in _chain_dirs:
        if len(_chain_dirs) >= _CHAIN_DIRS_MAX:
            _chain_dirs.clear()
        _chain_dirs[directory] = engine._closes_at_once(fd)
    try:
        n, cancel = await settle(engine._write(fd, data, 0))
        if cancel is not None:  # the write landed: the file is written, and the caller told of the cancel
            raise cancel
        return n
    finally:
        await close_fd(engine, fd, release_in_worker=True)


async def copy_file(src: PathArg, dst: PathArg) -> int:
    """Copy the content of src to dst (created or truncated); return the bytes copied.

    The copy runs in C, and Python is resumed once at the end: a regular
    source is mapped and written from (one copy, page cache to page cache);
    otherwise each read's completion issues its write, with several chunks
    in flight.  A pipe or FIFO is copied in order.  The errors are
    shutil.copyfile's: copying a file onto itself (or a hard link of it)
    raises shutil.SameFileError and leaves it alone, and a destination in a
    directory that does not exist raises FileNotFoundError."""
    raw_src, src_name = fspath(src)
    raw_dst, dst_name = fspath(dst)
    engine = get_engine()
    try:
        src_fd = await open_fd(engine, raw_src, os.O_RDONLY, 0, src_name)
    except OSError:
        await _refuse_same_file(src, dst)
        raise
    try:
        try:
            src_st = stat_open_file(src_fd, src_name, reject_directory=True)
        except OSError:
            await _refuse_same_file(src, dst)
            raise
        # Truncate only once dst is known not to be src.
        try:
            dst_fd = await open_fd(engine, raw_dst, os.O_WRONLY | os.O_CREAT, 0o666, dst_name)
        except OSError as error:
            await _refuse_same_file(src, dst)
            # "d/missing/", or "file/": shutil's clearer error (b'..' too, as shutil formats it)
            if isinstance(error, IsADirectoryError) and not await ospath.exists(dst):
                raise FileNotFoundError("Directory does not exist: " + str(dst)) from error
            raise
        try:
            dst_st = os.fstat(dst_fd)
            if (dst_st.st_dev, dst_st.st_ino) == (src_st.st_dev, src_st.st_ino):
                raise _same_file_error(src, dst)
            if stat.S_ISREG(dst_st.st_mode) and dst_st.st_size:
                await truncate(engine, dst_fd, 0)
            copied: int = await engine.copy(src_fd, dst_fd)
            return copied
        finally:
            await close_fd(engine, dst_fd, release_in_worker=True)
    finally:
        await close_fd(engine, src_fd)


def _same_file_error(src: PathArg, dst: PathArg) -> shutil.SameFileError:
    return shutil.SameFileError(f"{src!r} and {dst!r} are the same file")


async def _refuse_same_file(src: PathArg, dst: PathArg) -> None:
    """shutil.copyfile asks whether src and dst name one file before it opens
    either: where an open or a check failed, that answer comes first (a
    directory copied onto itself, say).  Asked only then, as the descriptors
    tell it for free when both opens succeed."""
    try:
        same = await ospath.samefile(src, dst)
    except OSError:
        return  # one of them is not there: as shutil, not the same file
    if same:
        raise _same_file_error(src, dst) from None
