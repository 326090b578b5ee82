"""The system calls, made in a worker or non-blocking on the loop thread,
and the errors they end in (as the C engine builds them)."""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import _contract as contract

if TYPE_CHECKING:
    from ._op import Op

AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400

# A worker's answer to an open: a FIFO opened for writing has no reader yet, try again later.
RETRY: Any = object()


def oserror(err: int, filename: Any = None, filename2: Any = None) -> OSError:
    """OSError(errno, strerror, filename[, filename2]): picks the subclass, as C does."""
    if filename2 is None:
        return OSError(err, os.strerror(err), filename)
    return OSError(err, os.strerror(err), filename, None, filename2)


def errno_of(exc: OSError) -> int:
    return exc.errno if exc.errno is not None else errno.EIO


def kind_of(mode: int) -> str:
    """"file" (a worker may wait on it), "stream" (pipe, FIFO, socket: no
    offsets) or "char" (character device)."""
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "stream"
    if stat.S_ISCHR(mode):
        return "char"
    return "file"


def read(fd: int, size: int, offset: int) -> bytes:
    return os.read(fd, size) if offset < 0 else os.pread(fd, size, offset)


def readinto(fd: int, buffer: Any, offset: int) -> int:
    """One read into buffer (at most MAX_RW bytes of it)."""
    with memoryview(buffer) as view:
        with (view[:contract.MAX_RW] if len(view) > contract.MAX_RW else view[:]) as part:
            return os.readv(fd, [part]) if offset < 0 else os.preadv(fd, [part], offset)


# What copy_file_range(2) says when it cannot copy these two files (another
# file system, an O_APPEND destination (EBADF), a kernel or file system without
# it): before a byte is copied, the copy reads and writes instead.
_KERNEL_COPY_REFUSED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF,
                        errno.EPERM}
# One call's range: a cancel waits for at most one range.
KERNEL_COPY_RANGE = 64 << 20


# From this source size on: below it, a worker's call costs more than the copy it saves.
KERNEL_COPY_MIN = 1 << 20


def kernel_copy_suits(src: int, dst: int) -> bool:
    """Both regular files, the source of at least KERNEL_COPY_MIN bytes (a
    pseudo-file, /proc's, says size 0: copy_file_range copies nothing of it)."""
    try:
        a, b = os.fstat(src), os.fstat(dst)
    except OSError:
        return False  # the read/write copy raises the error
    return stat.S_ISREG(a.st_mode) and stat.S_ISREG(b.st_mode) and a.st_size >= KERNEL_COPY_MIN


def kernel_copy(src: int, dst: int, offset: int) -> Optional[int]:
    """copy_file_range(2) of one range at offset (the same in both files):
    the kernel copies without user memory, or shares the extents (reflink on
    XFS, Btrfs).  None: refused before a byte was copied."""
    try:
        n = os.copy_file_range(src, dst, KERNEL_COPY_RANGE, offset, offset)
    except OSError as exc:
        if offset == 0 and exc.errno in _KERNEL_COPY_REFUSED:
            return None
        raise
    return None if n == 0 and offset == 0 else n


def write_all(op: Op, fd: int, offset: int, piece: int = contract.MAX_RW) -> int:
    """Write op.view from op.done on; a short write is continued.  In a
    non-blocking call, BlockingIOError leaves op.done where it got to."""
    view = op.view
    assert view is not None
    total = len(view)
    while op.done < total:
        with view[op.done:op.done + piece] as part:
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


def at_offset(kind: str, offset: int, call: Callable[[int, int], Any]) -> Callable[[int], Any]:
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


def pread_all(fd: int, buffers: list[Any], offsets: list[int]) -> list[int]:
    """read_many in one worker's turn: every read is made; the first error is raised after."""
    counts: list[int] = []
    error: Optional[OSError] = None
    for buffer, offset in zip(buffers, offsets):
        try:
            counts.append(readinto(fd, buffer, offset))
        except OSError as exc:
            counts.append(0)
            error = error or exc
    if error is not None:
        raise error
    return counts


def open_now(path: bytes, flags: int, mode: int) -> Any:
    """In a worker: open, never blocking on a FIFO (see the package docstring).
    Returns the descriptor, or RETRY."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK, mode)
    except OSError as exc:
        # A FIFO opened for writing while nobody reads it: ENXIO.  Try again
        # later, unless the caller asked for O_NONBLOCK itself.
        if exc.errno == errno.ENXIO and not flags & os.O_NONBLOCK and flags & os.O_ACCMODE != os.O_RDONLY:
            try:
                if stat.S_ISFIFO(os.stat(path).st_mode):
                    return RETRY
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


def renameat2(src: bytes, dst: bytes, flags: int) -> None:
    """renameat2(2) with flags, which the os module does not offer."""
    import ctypes

    func = getattr(_libc(), "renameat2", None)
    if func is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    _check_libc(func(AT_FDCWD, src, AT_FDCWD, dst, ctypes.c_uint(flags)))


def link_following(src: bytes, dst: bytes) -> None:
    """linkat(2) with AT_SYMLINK_FOLLOW (os.link calls link(2), which does not follow)."""
    _check_libc(_libc().linkat(AT_FDCWD, src, AT_FDCWD, dst, _AT_SYMLINK_FOLLOW))
