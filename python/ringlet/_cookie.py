"""The decoded read-ahead of a text file, and tell() cookies computed from it.

A text file reads bytes in chunks and decodes them ahead of what it returns.
tell() must then say where the next character starts in the file: the
chunks decoded are kept (with the decoder state before each) until all their
characters are returned, and the cookie is found by decoding again the
fewest bytes that give the characters returned.  The cookie is the byte
offset, with the decoder flags above bit 64 (as CPython's).
"""

from __future__ import annotations

import bisect
import io
import os
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from ._fdio import READ_CHUNK

if TYPE_CHECKING:
    from ._binary import AsyncFile

TEXT_CHUNK = 8 * 1024            # bytes decoded at a time by a text file (as io.TextIOWrapper)
COOKIE_BITS = 64                 # a text tell() cookie: byte offset | decoder flags << 64 (as CPython)
COOKIE_MASK = (1 << COOKIE_BITS) - 1

# A decoded chunk, kept while its characters may still be returned: the
# decoder state before it, the byte offset it was read at (None if the file
# cannot seek), its bytes, and where its characters start and end in _decoded.
Chunk = Tuple[Tuple[bytes, int], Optional[int], bytes, int, int]


class DecodedReadAhead:
    """The read side of AsyncTextFile: decoded characters read ahead, the
    chunks they came from, and the tell() cookie of the next character."""

    __slots__ = ("_decoder_factory", "_decoder", "_decoded", "_dpos", "_chunks")

    # Set by AsyncTextFile.
    errors: str
    _newline: Optional[str]
    _decoder_factory: Callable[[str], Any]
    _decoder: Any                # None if the file is not readable
    _decoded: str                # decoded characters; those before _dpos are returned
    _dpos: int
    _chunks: List[Chunk]         # what _decoded came from, for tell()

    @property
    def buffer(self) -> "AsyncFile":
        raise NotImplementedError

    def _reset_encoder(self, cookie: int) -> None:
        raise NotImplementedError

    def _new_decoder(self) -> Any:
        decoder = self._decoder_factory(self.errors)
        if self._newline is None or self._newline == "":
            decoder = io.IncrementalNewlineDecoder(decoder, translate=self._newline is None)
        return decoder


    def _decoder_state(self, decoder: Any) -> Tuple[bytes, int, int]:
        """(bytes the decoder holds, its flags without the pending-CR bit, pending CR 0/1)."""
        pending, flags = decoder.getstate()
        if isinstance(decoder, io.IncrementalNewlineDecoder):
            return pending, flags & ~1, flags & 1
        return pending, flags, 0

    def _reset_reading(self, flags: Optional[int] = None) -> None:
        """Forget the decoded read-ahead; restart the decoder (with flags, if given)."""
        self._decoded, self._dpos, self._chunks = "", 0, []
        if self._decoder is not None:
            if flags is None:
                self._decoder.reset()
            else:
                self._decoder.setstate((b"", flags))

    def _all_returned(self) -> bool:
        """True if every character decoded was returned and the decoder holds nothing back."""
        if self._dpos != len(self._decoded):
            return False
        held, _, cr = self._decoder_state(self._decoder)
        return not held and not cr

    def _forget_returned(self) -> None:
        """After a read to end of file, all of whose characters are returned:
        its text and bytes go now (kept, they would double what a large read
        costs until the next call).  tell() is then the file position.  (A
        write that follows writes no byte order mark there: _bom_due.)"""
        self._decoded, self._dpos, self._chunks = "", 0, []

    def _trim(self) -> None:
        """Drop the chunks whose characters have all been returned."""
        chunks, k = self._chunks, self._dpos
        if not chunks:
            return
        if self._all_returned():  # tell() is then the file position
            self._decoded, self._dpos, self._chunks = "", 0, []
            return
        first = 0
        while chunks[first][4] < k:
            first += 1
        cut = chunks[first][3]
        if cut:
            self._decoded = self._decoded[cut:]
            self._dpos -= cut
            self._chunks = [(s, p, d, a - cut, b - cut) for s, p, d, a, b in chunks[first:]]

    async def _read_chunk(self, size: int = TEXT_CHUNK) -> bool:
        """Read and decode up to size bytes (to end of file if size < 0);
        False at end of file.  The bytes are kept in pieces of at most
        TEXT_CHUNK, so that tell() decodes one piece again however much was
        read at once (callers that need more read more at once: appending
        to _decoded copies it)."""
        self._trim()
        try:
            position: Optional[int] = self.buffer._position()
        except OSError:
            position = None
        data = await self.buffer.read(size)
        final = size < 0 or not data
        # read() (size < 0) returns all it decodes here: one piece, never decoded again.
        step = TEXT_CHUNK if size >= 0 else max(len(data), 1)
        start = len(self._decoded)
        texts = []
        for at in range(0, max(len(data), 1), step):  # once for b"": the end flushes the decoder
            piece = data[at:at + step]
            state = self._decoder.getstate()
            text = self._decoder.decode(piece, final=final and at + step >= len(data))
            self._chunks.append((state, None if position is None else position + at, piece, start, start + len(text)))
            start += len(text)
            texts.append(text)
        self._decoded += texts[0] if len(texts) == 1 else "".join(texts)
        return bool(data)

    def _wanted(self, characters: int = 0) -> int:
        """How many bytes to read when the read-ahead lacks what a call needs:
        at least what it lacks (characters), and at least as much as is
        read ahead already, so that a long line or many lines take a few
        doubling reads, not one read (and one copy of _decoded) per TEXT_CHUNK.
        The first refill after an open or a seek takes TEXT_CHUNK (a seek and
        a small read read and decode no more than they need); the next ones
        at least the binary file's read-ahead (READ_CHUNK): each refill runs
        in Python, and at TEXT_CHUNK a time they cost a line of 80 characters
        ~30% of its time."""
        least = READ_CHUNK if self._chunks else TEXT_CHUNK
        return max(least, characters, len(self._decoded) - self._dpos)

    def _decode_from(self, state: Tuple[bytes, int], data: bytes) -> Tuple[int, bytes, int, int]:
        """Decode data from state: (characters out, counting a held-back CR; bytes held; flags; CR held)."""
        decoder = self._new_decoder()
        decoder.setstate(state)
        count = len(decoder.decode(data))
        pending, flags, cr = self._decoder_state(decoder)
        return count + cr, pending, flags, cr

    def _resumes_at(self, index: int, offset: int, flags: int, k: int) -> bool:
        """Does a fresh decoder started at offset into chunk index give back _decoded[k:]?"""
        chunks = self._chunks
        tail = chunks[index][2][offset:offset + 64]
        while len(tail) < 64 and index + 1 < len(chunks):
            index += 1
            tail += chunks[index][2][:64]
        decoder = self._new_decoder()
        decoder.setstate((b"", flags))
        return self._decoded.startswith(decoder.decode(tail), k)

    def _cookie(self) -> int:
        """tell() of a text file: see the class docstring."""
        if not self._chunks or self._all_returned():
            return self.buffer._position()  # nothing read ahead: as CPython, the plain byte offset
        k = self._dpos
        index = bisect.bisect_left(self._chunks, k, key=lambda chunk: chunk[4])  # the first that ends at k or after
        state, position, data, start, _ = self._chunks[index]
        if position is None:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        want = k - start
        low, high = 0, len(data)  # the fewest bytes that decode to `want` characters
        while low < high:
            middle = (low + high) // 2
            if self._decode_from(state, data[:middle])[0] >= want:
                high = middle
            else:
                low = middle + 1
        for offset in range(low, len(data) + 1):
            count, held, flags, _ = self._decode_from(state, data[:offset])
            if count > want:
                break
            if count == want and not held and self._resumes_at(index, offset, flags, k):
                position += offset  # 0 is the start of the file, where the decoder starts afresh
                return position | (flags << COOKIE_BITS) if position else 0
        raise io.UnsupportedOperation("tell(): the read position is not on a byte boundary a decoder can start from")

    def _rewind(self) -> None:
        """Before a write or truncate: put the file position back where the reads reached."""
        if self._chunks:
            cookie = self._cookie()
            self.buffer._seek(cookie & COOKIE_MASK, os.SEEK_SET)
            self._reset_reading(cookie >> COOKIE_BITS)
            self._reset_encoder(cookie)
