"""Memory for reads and for O_DIRECT, made on the loop thread so that
workers allocate nothing (what they allocate spreads over their malloc
arenas, and RSS grows)."""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING, Union

from .. import _contract as contract
from ._calls import write_all

if TYPE_CHECKING:
    from ._op import Op

_SMALL_READ = 256 * 1024  # larger read buffers are anonymous maps: no zero-filling, no malloc arena

ReadBuffer = Union[bytearray, mmap.mmap]


def read_buffer(size: int) -> ReadBuffer:
    """A buffer to read size bytes into."""
    if size <= _SMALL_READ:
        return bytearray(size)
    try:
        return mmap.mmap(-1, size)  # pages appear as the kernel writes them
    except OSError:
        raise MemoryError(f"cannot map {size} bytes for a read") from None


def take(buffer: ReadBuffer, n: int) -> bytes:
    """The first n bytes of a read buffer, as bytes; the buffer is done with."""
    if isinstance(buffer, bytearray):
        return bytes(buffer) if n == len(buffer) else bytes(memoryview(buffer)[:n])
    with memoryview(buffer) as view, view[:n] as part:
        data = bytes(part)
    buffer.close()
    return data


class Bounce:
    """O_DIRECT: memory aligned to align, covering the aligned range around
    [offset, offset + length), where the kernel reads or writes."""

    __slots__ = ("mm", "view", "start", "skip", "length", "moves")

    def __init__(self, offset: int, length: int, align: int, moves: bool) -> None:
        start = offset - offset % align
        end = -(-(offset + length) // align) * align
        size = max(end - start, align)
        extra = align if align > mmap.PAGESIZE else 0  # an anonymous map is page-aligned
        try:
            self.mm = mmap.mmap(-1, size + extra)
        except OSError:
            raise MemoryError(f"cannot map {size} bytes for O_DIRECT") from None
        at = -_address(self.mm) % align if extra else 0
        self.view = memoryview(self.mm)[at:at + size]
        self.start, self.skip, self.length = start, offset - start, length
        self.moves = moves  # offset -1 was given: move the file position past what was read

    def read(self, fd: int) -> int:
        """In a worker: one aligned read; how many of the bytes asked for came."""
        n = os.preadv(fd, [self.view], self.start)
        n = max(0, min(n - self.skip, self.length))
        if self.moves:
            os.lseek(fd, self.start + self.skip + n, os.SEEK_SET)
        return n

    def write(self, op: Op, fd: int) -> int:
        """In a worker: all of it at the aligned offset."""
        n = write_all(op, fd, self.start, contract.MAX_DIRECT)
        if self.moves:
            os.lseek(fd, self.start + n, os.SEEK_SET)
        return n

    def read_into(self, fd: int, buffer: memoryview) -> int:
        n = self.read(fd)
        with self.view[self.skip:self.skip + n] as part:
            buffer[:n] = part
        return n

    def copy_out(self, n: int) -> bytes:
        with self.view[self.skip:self.skip + n] as part:
            return bytes(part)

    def close(self) -> None:
        self.view.release()
        self.mm.close()


def _address(buffer: mmap.mmap) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
