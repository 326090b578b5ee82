"""What the framework integrations share: a file opened through ringlet for
the length of one response, and closed through the ring even when the
response is cancelled.

It talks to the engine directly rather than through ringlet.open(): a
response reads at explicit offsets and needs none of AsyncFile's position
keeping, so the open is one openat and nothing more (a server opens a file
per request, and every system call there counts)."""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator, Awaitable, Optional

from .._contract import PathArg
from .._engine import get_engine
from .._fdio import fspath as _fspath


# O_NONBLOCK: a path stat'ed as a regular file but replaced by a FIFO before
# the open would otherwise hold a kernel worker until a writer came (on a
# regular file the flag changes nothing).
_READ = os.O_RDONLY | os.O_NONBLOCK


class OpenedFile:
    """A file opened through ringlet for one response or one upload.

    ``async with OpenedFile(path) as f`` opens it (io_uring openat; flags
    and mode as os.open's, read-only by default, never waiting on a FIFO); ``f.pread``, ``f.chunks``
    and ``f.pwrite`` work at explicit offsets; leaving the block closes it
    through the ring."""

    __slots__ = ("_path", "_flags", "_mode", "_engine", "_fd")

    @classmethod
    def borrowing(cls, fd: int) -> "OpenedFile":
        """An OpenedFile for a descriptor open elsewhere: usable at once,
        left open by the block."""
        self = cls(fd)
        self._engine = get_engine()
        self._fd = fd
        return self

    def __init__(self, path: "PathArg | int", flags: int = _READ, mode: int = 0o666) -> None:
        self._path = path
        self._flags = flags
        self._mode = mode
        self._engine: Any = None
        self._fd = -1

    async def __aenter__(self) -> "OpenedFile":
        if self._fd < 0:  # not borrowed
            await self.open()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def open(self) -> None:
        raw, name = _fspath(self._path)
        self._engine = get_engine()
        self._fd = await self._engine._open(raw, self._flags, self._mode, name)

    async def close(self) -> None:
        """Close the file (a borrowed descriptor is left open); again: nothing."""
        fd, self._fd = self._fd, -1
        if fd >= 0 and not isinstance(self._path, int):
            await close_shielded(self._engine._close(fd))

    def fileno(self) -> int:
        return self._fd

    async def pread(self, size: int, offset: int) -> bytes:
        data: bytes = await self._engine._read(self._fd, size, offset)
        return data

    async def pwrite(self, data: bytes, offset: int) -> int:
        """Write all of data at offset; return its length."""
        written: int = await self._engine._write(self._fd, data, offset)
        return written

    async def chunks(self, offset: int, count: int, chunk_size: int) -> AsyncIterator[bytes]:
        """The bytes [offset, offset + count) in reads of at most chunk_size,
        ending early at end of file."""
        while count > 0:
            chunk = await self.pread(min(chunk_size, count), offset)
            if not chunk:
                return
            offset += len(chunk)
            count -= len(chunk)
            yield chunk


async def close_shielded(closing: Awaitable[None]) -> None:
    """Wait for a close already submitted to the ring (the engine's _close:
    a future, or an awaitable holding the result when the kernel completed
    it at once).  A cancellation that
    arrives meanwhile is raised once the close has completed, so that a
    cancelled response never leaves its descriptor open (cancelling the wait
    itself would ask the kernel to cancel the close)."""
    if not asyncio.isfuture(closing):
        await closing  # done already: nothing to wait for
        return
    cancelled: Optional[BaseException] = None
    while not closing.done():
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError as exc:
            if closing.done():  # the close itself was cancelled
                raise
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    closing.result()
