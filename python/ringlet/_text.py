"""AsyncTextFile: str in, str out, on an AsyncFile, as io.TextIOWrapper on a buffered file."""

from __future__ import annotations

import codecs
import io
import operator
import os
import re
from typing import Any, Iterable, List, Optional

from ._base import IOBASE, WRITE_CHUNK, FileBase, lines_to_take, write_batched
from ._binary import AsyncFile, _read_ahead_methods_in_c, _thread_id
from ._contract import argument_type
from ._cookie import COOKIE_BITS, COOKIE_MASK, DecodedReadAhead
from ._fdio import c_int_arg, size_arg, ssize_arg
from ._turns import Turns

_UNIVERSAL_EOL = re.compile(r"\r\n|\r|\n")
# Every line of a text, by newline= (None: translated to "\n"); the last
# alternative is the last line when it has no ending.
_LINES = {
    None: re.compile(r"[^\n]*\n|[^\n]+"),
    "\n": re.compile(r"[^\n]*\n|[^\n]+"),
    "\r": re.compile(r"[^\r]*\r|[^\r]+"),
    "\r\n": re.compile(r"(?:[^\r]|\r(?!\n))*\r\n|(?s:.+)"),
    "": re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+"),
}


_STRINGIO_MAX = 1 << 20  # characters


def _lines_of(text: str, newline: Optional[str]) -> List[str]:
    """text's lines as newline= ends them (None: translated to "\\n" already).
    Lines that end at "\\n" alone, in a text of up to _STRINGIO_MAX characters,
    are io.StringIO's, cut in C: 60 ns a line of 80 characters against 102
    for the regular expression.  StringIO copies the text, 4 bytes a
    character: at 8 MiB it took 303 ns a line against 175."""
    if (newline is None or newline == "\n") and len(text) <= _STRINGIO_MAX:
        return io.StringIO(text, newline="\n").readlines()
    return _LINES[newline].findall(text)


class AsyncTextFile(DecodedReadAhead, FileBase[str]):
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
      whereas CPython writes after its read-ahead; a read after a write reads
      after it (CPython may read first and write at the end: cpython#117095).
    * A byte order mark (UTF-16, UTF-32, UTF-8-SIG) is written at the file's
      first byte and only there (CPython may write one mid-file after reads).
    * truncate(size) takes a byte offset (CPython passes the cookie on), and
      truncate() cuts at tell() (CPython, at its read-ahead's end).
    * readlines(hint) leaves tell() working (CPython's turns it off until the
      end of the file is reached).
    * An unknown encoding or bad newline is refused before the file is opened
      (built-in open() may already have created or truncated it).

    Writes are buffered (see write()); reads decode TEXT_CHUNK bytes at a
    time, and read that much after an open or a seek, else at least the
    binary file's read-ahead (64 KiB), or more when a call needs more (_wanted).
    """

    __slots__ = ("_buffer", "name", "mode", "encoding", "errors", "line_buffering", "_newline", "_encoder",
                 "_pending", "_turns", "_thread", "__weakref__", "_pending_size", "_write_chunk", "_bom_due")

    def __init__(self, raw: AsyncFile, mode: str, encoding: str, errors: str, newline: Optional[str],
                 line_buffering: bool = False, write_chunk: int = WRITE_CHUNK) -> None:
        self._buffer: Optional[AsyncFile] = raw  # None once detached
        self.name = raw.name
        self.mode = mode
        self.encoding = encoding
        self.errors = errors
        self.line_buffering = line_buffering
        self._newline = newline
        self._write_chunk = write_chunk
        self._decoder_factory = codecs.getincrementaldecoder(encoding)
        self._decoder = self._new_decoder() if raw._readable else None
        self._encoder: Any = None
        self._bom_due = False  # the encoder is fresh at byte 0: its next write may begin with a BOM
        if raw._writable:
            self._encoder = codecs.getincrementalencoder(encoding)(errors)
            try:
                self._reset_encoder(raw._position())  # no byte order mark in the middle of a file
            except OSError:  # not seekable: a pipe
                pass
        self._decoded = ""
        self._dpos = 0
        self._chunks = []
        self._pending: List[bytes] = []  # encoded writes not yet handed to the kernel
        self._pending_size = 0
        self._turns = Turns()  # text calls take turns too: they share the decoded read-ahead
        self._thread = raw._thread  # the thread the file's loop runs in

    def __repr__(self) -> str:
        raw = self._buffer
        state = "detached" if raw is None else "closed" if raw._fd < 0 else f"fd={raw._fd}"
        return (f"<ringlet.AsyncTextFile name={self.name!r} mode={self.mode!r} "
                f"encoding={self.encoding!r} {state}>")

    @property
    def buffer(self) -> AsyncFile:
        """The binary file underneath."""
        raw = self._buffer
        if raw is None:
            raise ValueError("underlying buffer has been detached")
        return raw

    def _raw(self) -> AsyncFile:
        return self.buffer

    def detach(self) -> AsyncFile:
        """Separate the binary file underneath and return it, as
        io.TextIOWrapper.detach(); the text file is unusable afterwards
        (ValueError).  A method, not a coroutine, as in aiofiles: text written
        but not yet flushed is written now with a blocking write(2), as at
        garbage collection.  As io, the binary file's position is where the
        text file's reads have read ahead to, not its tell()."""
        raw = self.buffer
        raw._open_fd()
        if self._turns.busy:
            raise RuntimeError("ringlet: detach() while a call on the text file is in progress")
        self._write_pending_now()
        self._reset_reading()  # no line read ahead is given after this either
        self._buffer = None
        return raw

    @property
    def newlines(self) -> Any:
        """The line endings seen so far when reading with universal newlines
        (newline None or ""): None, one of "\\r", "\\n", "\\r\\n", or a tuple."""
        return getattr(self._decoder, "newlines", None)


    def _check_readable(self) -> None:
        raw = self.buffer
        if raw._fd < 0:
            raise ValueError("I/O operation on closed file.")
        if self._decoder is None:
            raise io.UnsupportedOperation("not readable")
        raw._usable_fd()  # on its loop, even if what is read ahead would do: as a binary file


    # -- reading --------------------------------------------------------------

    async def read(self, size: Optional[int] = -1) -> str:
        """Read up to size characters; to end of file when size is -1 or None.
        "" at end of file."""
        size = size_arg(size)  # (as io's: the argument before the file's state)
        self._check_readable()
        async with self._turns:
            await self._flush_pending()
            if size < 0:
                await self._read_chunk(-1)
                text = self._decoded[self._dpos:]
                self._forget_returned()
                return text
            while len(self._decoded) - self._dpos < size and await self._read_chunk(
                    self._wanted(size - (len(self._decoded) - self._dpos))):
                pass
            start = self._dpos
            text = self._decoded[start:start + size]
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
        # Not for another thread: the slow path says why (see AsyncFile's);
        # detach() emptied _decoded.
        if self._pending or self._turns.busy or self._newline not in (None, "\n") or _thread_id() != self._thread:
            return None
        decoded, start = self._decoded, self._dpos
        end = decoded.find("\n", start) + 1
        if not end:
            return None
        self._dpos = end
        return decoded[start:end]

    async def _readline_in_turn(self, size: Optional[int]) -> str:
        size = ssize_arg(size)  # no None, as io.TextIOWrapper.readline's; before the file's state
        self._check_readable()
        async with self._turns:
            return await self._readline(size)

    async def _readline(self, size: int) -> str:
        await self._flush_pending()
        searched = 0  # characters after _dpos already searched for a line ending
        while True:
            end = self._line_end(self._dpos + searched)
            available = len(self._decoded) - self._dpos
            if end >= 0 or 0 <= size <= available:
                break
            searched = max(available - 1, 0)  # "\r\n" may straddle two chunks
            if not await self._read_chunk(self._wanted()):
                break
        start = self._dpos
        if end < 0:
            end = len(self._decoded)
        if 0 <= size < end - start:
            end = start + size
        self._dpos = end
        return self._decoded[start:end]

    async def readlines(self, hint: Optional[int] = -1) -> List[str]:
        # Lines are cut from the decoded read-ahead and consumed only once all
        # are read: a cancel leaves the position where it was (chunks before
        # the position are all that reading more trims).
        hint = size_arg(hint)
        self._check_readable()
        if hint <= 0:  # all of them: one read (a cancel consumes nothing), cut in C
            return _lines_of(await self.read(), self._newline)
        async with self._turns:
            await self._flush_pending()
            lines: List[str] = []
            total = 0
            ahead = searched = 0  # characters after _dpos taken as lines; of the rest, searched for an ending
            while not 0 < hint < total:
                if self._newline is None or self._newline == "\n":
                    # The whole lines decoded ahead, cut at once (one at a time
                    # here, 410 ns a line of 80).
                    decoded, start = self._decoded, self._dpos + ahead
                    cut = lines_to_take(decoded, "\n", start, hint - total)
                    if cut > start:
                        lines += _lines_of(decoded[start:cut], self._newline)
                        total += cut - start
                        ahead += cut - start
                        continue
                end = self._line_end(self._dpos + ahead + searched)
                if end < 0:
                    # "\r\n" may straddle two chunks
                    searched = max(len(self._decoded) - self._dpos - ahead - 1, 0)
                    if await self._read_chunk(self._wanted()):
                        continue
                    end = len(self._decoded)
                start = self._dpos + ahead  # after the read: it trims what lies before _dpos
                if end == start:
                    break
                lines.append(self._decoded[start:end])
                total += end - start
                ahead += end - start
                searched = 0
            self._dpos += ahead
            return lines

    readlines.__doc__ = FileBase.readlines.__doc__

    # -- writing --------------------------------------------------------------

    async def write(self, text: str) -> int:
        """Write text (newlines translated as newline= says); return its length
        in characters.  The encoded bytes are buffered until flush(), close(),
        a read or seek, WRITE_CHUNK bytes, or a line end with line buffering.
        A call cancelled while it writes what is buffered leaves what it did
        not write buffered, this call's text too: the next flush writes it."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {argument_type(text)}")
        if self.buffer._fd < 0:
            raise ValueError("I/O operation on closed file.")
        if self._encoder is None:
            raise io.UnsupportedOperation("not writable")
        async with self._turns:
            return await self._write(text)

    async def _write(self, text: str) -> int:
        if self._chunks:
            self._rewind()
        if self._bom_due:  # reads since the encoder's reset at byte 0 may have gone further
            self._bom_due = False
            if self.buffer._position() != 0:
                self._encoder.setstate(0)
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
        if self.buffer._fd < 0:  # as io's: before the lines are looked at
            raise ValueError("I/O operation on closed file.")
        await write_batched(self.write, lines, "")

    async def _flush_pending(self) -> None:
        """Write the buffered text.  Cancelled, what was not written stays
        buffered, for the next flush (the caller's cancel is raised): text
        that write() took is not lost to a cancel of a later call."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            written, cancel = await self.buffer._write_counted(data)
            if cancel is not None:
                if written < len(data):
                    self._pending, self._pending_size = [data[written:]], len(data) - written
                raise cancel

    async def flush(self) -> None:
        """Hand the buffered writes to the kernel (one write)."""
        self.buffer._open_fd(IOBASE)
        async with self._turns:
            await self._flush_pending()

    async def truncate(self, size: Optional[int] = None) -> int:
        """Flush, then resize the file to size bytes (default: tell()); the
        position does not change.  Returns size."""
        self.buffer._open_fd(IOBASE)
        self.buffer._writing_fd("truncate")
        async with self._turns:
            await self._flush_pending()
            if size is None:
                size = self._cookie() & COOKIE_MASK
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
        self.buffer._open_fd(IOBASE)
        async with self._turns:
            await self._flush_pending()
            return self._cookie()

    async def seek(self, cookie: int, whence: int = os.SEEK_SET) -> int:
        """Go to a cookie from tell() (or 0); whence SEEK_CUR and SEEK_END
        only with 0, as io.TextIOWrapper.  Returns the new cookie."""
        whence = c_int_arg(whence)
        self.buffer._open_fd(IOBASE)
        cookie = operator.index(cookie)
        async with self._turns:
            return await self._seek(cookie, whence)

    async def _seek(self, cookie: int, whence: int) -> int:
        if whence == os.SEEK_CUR:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero cur-relative seeks")
            await self._flush_pending()
            cookie = self._cookie()
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
        if cookie >> (2 * COOKIE_BITS):  # more than tell() ever gives; as CPython, whose cookies are 168 bits
            if cookie.bit_length() > 168:
                raise OverflowError("int too big to convert")
            raise OSError("can't restore logical file position")
        await self._flush_pending()
        self.buffer._seek(cookie & COOKIE_MASK, os.SEEK_SET)
        self._reset_reading(None if cookie == 0 else cookie >> COOKIE_BITS)
        self._reset_encoder(cookie)
        return cookie

    def _reset_encoder(self, cookie: int) -> None:
        """A byte order mark is written at the file's first byte and only there."""
        if self._encoder is not None:
            self._bom_due = cookie == 0
            if cookie == 0:
                self._encoder.reset()
            else:
                self._encoder.setstate(0)

    async def close(self) -> None:
        """Flush, then close the file.  Calling it again does nothing."""
        if self.closed:
            return
        try:
            await self._flush_pending()
        finally:
            try:
                if self._pending:  # a cancel stopped the flush: the rest is written before the close all the same
                    await self._flush_pending()
            finally:
                self._reset_reading()
                await self.buffer.close()

    def _write_pending_now(self) -> None:
        """Write the buffered text with blocking write(2) calls: at detach() and
        garbage collection, where no coroutine can run."""
        raw = self._buffer
        pending, self._pending, self._pending_size = self._pending, [], 0
        if raw is None or raw._fd < 0 or not pending:
            return
        view = memoryview(b"".join(pending))
        while view:
            if raw._pos is None or raw._append:
                written = os.write(raw._fd, view)
            else:
                written = os.pwrite(raw._fd, view, raw._pos)
                raw._pos += written
            view = view[written:]

    def __del__(self) -> None:
        # Like a built-in file, do not lose what was written but never flushed;
        # the binary file then warns (ResourceWarning) and closes the fd.
        if getattr(self, "_pending", None) and getattr(self, "_buffer", None) is not None:
            try:
                self._write_pending_now()
            except OSError:
                pass


_read_ahead_methods_in_c(AsyncTextFile, {"readline": FileBase.readline, "__anext__": FileBase.__anext__,
                                         "read": AsyncTextFile.read}, text=True)
