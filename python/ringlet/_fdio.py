"""What ringlet's files and one-shot helpers share at the descriptor level:
paths as the kernel takes them, reading to end of file, the checks made on a
file just opened, and truncate through the ring where the kernel has it."""

from __future__ import annotations

import errno
import operator
import os
import stat
from typing import Any, List, Optional, Tuple

from ._contract import MAX_DIRECT, MAX_RW, Opcode

READ_CHUNK = 64 * 1024          # read() to EOF of a file whose size is unknown; readline() read-ahead
_MAX_READ_CHUNK = 16 * 1024 * 1024


def fspath(path: Any) -> Tuple[bytes, Any]:
    """(bytes for the kernel, the path as given for error messages)."""
    path = os.fspath(path)  # TypeError for anything that is not a path
    return os.fsencode(path), path


def isdir_error(filename: Any) -> IsADirectoryError:
    return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), filename)


def size_arg(size: Optional[int]) -> int:
    """A read size as io accepts it: None or negative means 'all'."""
    return -1 if size is None else operator.index(size)


async def read_to_end(engine: Any, fd: int, offset: int, align: int = 0) -> bytes:
    """Read from offset (-1: a stream) until the end of the file.

    A regular file with a size is sized once (fstat) and read in one read of
    one byte more than is left, into one bytes object of that size: a short
    read then is its end, as for any regular file.  Otherwise (pipes, /proc
    files with st_size 0, a file that grew meanwhile) chunks are read until
    a read returns b"": pipes and /proc files give short reads before their end."""
    chunks: List[bytes] = []
    want = READ_CHUNK
    if offset >= 0:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size > offset:
            want = min(st.st_size - offset + 1, MAX_DIRECT if align else MAX_RW)
            data: bytes = await engine._read(fd, want, offset, align)
            if len(data) < want:
                return data
            chunks.append(data)  # it grew, or is larger than one read: go on
            offset += len(data)
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
