"""What binary and text files share: lines, iteration, the context manager,
and aiofiles' awaitable readable()/writable()/seekable()/isatty()."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Coroutine, Generic, Iterable, List, Optional, TypeVar

if TYPE_CHECKING:
    from ._binary import AsyncFile

WRITE_CHUNK = 64 * 1024         # a text file writes once this much is pending; writelines() batches

# The name of io.IOBase's own checks (readlines, writelines, iteration, a text file's calls)
# where a call names itself to say the built-in file's error: their message ends in a period.
IOBASE = "IOBase"
Line = TypeVar("Line", bytes, str)  # what a file's lines are: bytes for binary files, str for text files


async def write_batched(write: Callable[[Any], Coroutine[Any, Any, int]], lines: Iterable[Any], empty: Any) -> None:
    """writelines(): the lines joined into writes of about WRITE_CHUNK each.
    io's writelines writes line by line, so what comes before a line that
    cannot be written, or before an error of the iterable, is written before
    the error is raised: here too (write_lines)."""
    batch: List[Any] = []  # lines not yet handed to a write
    size = 0
    try:
        for line in lines:
            batch.append(line)
            try:
                size += len(line)
            except TypeError:  # no len(): written now (where write() raises if it cannot take it)
                size = WRITE_CHUNK
            if size >= WRITE_CHUNK:
                full, batch, size = batch, [], 0
                await write_lines(write, full, empty)
    except Exception:  # the iterable's (a failed write left batch empty; a cancel is a BaseException)
        await write_lines(write, batch, empty)
        raise
    await write_lines(write, batch, empty)


async def write_lines(write: Callable[[Any], Coroutine[Any, Any, int]], batch: List[Any], empty: Any) -> None:
    """One write of the lines joined.  Lines that cannot be joined (one is
    not bytes, or not str) or encoded (a text write encodes before anything
    is written) are written one by one: those before the bad one are
    written, and it raises as write() does."""
    if not batch:
        return
    try:
        data = empty.join(batch)
    except TypeError:
        data = None
    if data is not None:
        try:
            await write(data)
            return
        except UnicodeEncodeError:
            pass
    for line in batch:
        await write(line)


def lines_to_take(ahead: Line, newline: Line, start: int, room: int) -> int:
    """Where the whole lines of ahead[start:] that readlines(hint), with room
    left of its hint, takes at once end: just after the line that holds the
    byte (character) past room, else after the last whole line; 0 or start
    when there is none."""
    return ahead.find(newline, start + room) + 1 or ahead.rfind(newline, start) + 1


class FileBase(Generic[Line]):
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
        if raw._readable or raw._unbuffered:  # else False even closed: io's buffered writer has no readable()
            raw._open_fd()
        return raw._readable

    async def writable(self) -> bool:
        """True if the file was opened for writing."""
        raw = self._raw()
        if raw._writable or raw._unbuffered:  # else False even closed: io's buffered reader has no writable()
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

    async def readline(self, size: Optional[int] = -1) -> Line:
        """Read one line, up to and including its ending (b"\\n" in a binary
        file; in a text file as newline= says, "\\n" after translation when
        newline is None); at most size bytes (characters) when size >= 0.
        Empty at end of file.  Reads ahead in chunks: a line already read
        ahead is given at once, without waiting for the call's turn."""
        if type(size) is int and size == -1:  # other sizes (None too: text refuses it) are checked in turn
            line = self._buffered_line()
            if line is not None:
                return line
        return await self._readline_in_turn(size)

    async def _readline_in_turn(self, size: Optional[int]) -> Line:  # pragma: no cover - overridden
        raise NotImplementedError

    async def readlines(self, hint: Optional[int] = -1) -> List[Line]:  # pragma: no cover - overridden
        """Read lines to end of file; when hint > 0, stop after the line that
        takes the total size beyond hint (as io.IOBase.readlines).  A
        cancelled readlines returns nothing, so it consumes nothing.
        The fast way through many lines: `while lines := await
        f.readlines(65536)` cuts every line read ahead at once, where
        `async for` awaits each line."""
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[Line]:
        self._raw()._open_fd(IOBASE)
        return self

    def _buffered_line(self) -> Optional[Line]:
        """The next line if it is already read ahead (no I/O), else None."""
        return None

    async def __anext__(self) -> Line:
        # A coroutine, not a call that takes the line at once: a line is taken
        # only once the call runs (a task cancelled before it ran took nothing).
        line = self._buffered_line()
        if line is None:
            line = await self._readline_in_turn(-1)
            if not line:
                raise StopAsyncIteration
        return line

    async def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
