"""Starlette and FastAPI without threads: FileResponse and save_upload.

    from ringlet.integrations.starlette import FileResponse, save_upload

    @app.get("/files/{name}")
    async def download(name: str) -> FileResponse:
        return FileResponse(folder / name)

    @app.post("/upload")
    async def upload(file: UploadFile) -> dict:
        return {"written": await save_upload(file, folder / file.filename)}

``FileResponse`` is starlette.responses.FileResponse (which FastAPI
re-exports) with its file work moved onto ringlet: the stat, the open, each
read and the close are io_uring operations, where the stock class sends
each to a worker thread (anyio.to_thread).  Its constructor, status codes,
headers and bodies are the stock class's, for GET, HEAD, single and
multiple ranges, unsatisfiable ranges and If-Range: the headers and the
range parsing are inherited; only the I/O is replaced.

Needs Starlette: ``pip install ringlet[starlette]`` (or ``ringlet[fastapi]``).
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
import tempfile
from typing import BinaryIO, List, Optional, Tuple

from . import missing_framework

try:
    import anyio
    from starlette.datastructures import MutableHeaders, UploadFile
    from starlette.responses import FileResponse as _StockFileResponse
    from starlette.types import Receive, Scope, Send
except ImportError as exc:
    raise missing_framework(__name__, "Starlette", "starlette") from exc

from .. import os as ringlet_os
from ._stream import OpenedFile

__all__ = ["FileResponse", "save_upload"]


class FileResponse(_StockFileResponse):
    """starlette.responses.FileResponse whose stat, open, reads and close
    go through ringlet instead of worker threads (same arguments, same
    responses)."""

    # Bytes per read and per body message.  The stock class's 64 KiB makes a
    # 1 MiB file 17 reads and 17 messages through the server; a ring read
    # costs little, and each message costs the server a pass through its
    # protocol code, so fewer, larger ones serve faster (benchmarks/servers.py).
    chunk_size = 1 << 18

    # The file __call__ opened to stat it, which the body then reads; closed
    # when the response is done.
    _opened: Optional[OpenedFile] = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self.stat_result is None:
                # The stock class stats in a thread here; with the stat
                # result set, it goes straight on to its headers and ranges.
                self.stat_result = await self._open_and_stat()
            await super().__call__(scope, receive, send)
        finally:
            opened, self._opened = self._opened, None
            if opened is not None:
                await opened.close()

    async def _open_and_stat(self) -> os.stat_result:
        """The file's stat, with the stock class's checks and headers.

        The file is opened first and fstat'ed: a statx through io_uring
        always goes to a kernel worker (the costliest operation of a small
        response), while an open of a cached path completes at once, and
        fstat(2) of an open descriptor never waits.  Where the open fails
        (no permission to read, a socket), the path is stat'ed instead, as
        the stock class does, and the body's open then fails as its does."""
        file = OpenedFile(self.path)
        try:
            await file.open()
        except OSError:
            try:
                stat_result = await ringlet_os.stat(self.path)
            except FileNotFoundError:
                raise RuntimeError(f"File at path {self.path} does not exist.") from None
        else:
            self._opened = file
            stat_result = os.fstat(file.fileno())
        self.set_stat_headers(stat_result)
        if not stat.S_ISREG(stat_result.st_mode):
            raise RuntimeError(f"File at path {self.path} is not a file.")
        return stat_result

    def _body_file(self) -> OpenedFile:
        """The file to read the body from: the one __call__ opened (left
        open here: __call__ closes it), or a new one."""
        if self._opened is not None:
            return OpenedFile.borrowing(self._opened.fileno())
        return OpenedFile(self.path)

    # The three ways the stock class sends a file, with ringlet reads at
    # explicit offsets (no seek) of chunk_size bytes; each body ends where
    # the stock one does (a short read, the end of the range), so the bytes
    # on the wire are the same, in fewer messages.

    async def _handle_simple(self, send: Send, send_header_only: bool, send_pathsend: bool) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if send_header_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif send_pathsend:
            await send({"type": "http.response.pathsend", "path": str(self.path)})
        else:
            async with self._body_file() as file:
                offset, more_body = 0, True
                while more_body:
                    chunk = await file.pread(self.chunk_size, offset)
                    offset += len(chunk)
                    more_body = len(chunk) == self.chunk_size
                    await send({"type": "http.response.body", "body": chunk, "more_body": more_body})

    async def _handle_single_range(self, send: Send, start: int, end: int, file_size: int,
                                   send_header_only: bool) -> None:
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-range"] = f"bytes {start}-{end - 1}/{file_size}"
        headers["content-length"] = str(end - start)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        if send_header_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with self._body_file() as file:
            more_body = True
            while more_body:
                chunk = await file.pread(min(self.chunk_size, end - start), start)
                start += len(chunk)
                more_body = len(chunk) == self.chunk_size and start < end
                await send({"type": "http.response.body", "body": chunk, "more_body": more_body})

    async def _handle_multiple_ranges(self, send: Send, ranges: List[Tuple[int, int]], file_size: int,
                                      send_header_only: bool) -> None:
        boundary = secrets.token_hex(13)  # as the stock class: about 100 bits, as browsers use
        content_length, part_header = self.generate_multipart(ranges, boundary, file_size,
                                                              self.headers["content-type"])
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-type"] = f"multipart/byteranges; boundary={boundary}"
        headers["content-length"] = str(content_length)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        if send_header_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with self._body_file() as file:
            for start, end in ranges:
                await send({"type": "http.response.body", "body": part_header(start, end), "more_body": True})
                sent = 0
                async for chunk in file.chunks(start, end - start, self.chunk_size):
                    sent += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if sent < end - start:
                    raise RuntimeError(f"File at path {self.path} is shorter than expected.")
                await send({"type": "http.response.body", "body": b"\r\n", "more_body": True})
            await send({"type": "http.response.body", "body": f"--{boundary}--".encode("latin-1"),
                        "more_body": False})


# -- uploads --------------------------------------------------------------------

# How much of an upload is copied per read and write: large enough that a
# big upload takes few ring operations, small enough not to hold it all at once.
_UPLOAD_CHUNK = 1 << 20


def _disk_descriptor(file: BinaryIO) -> Optional[int]:
    """The descriptor of an upload's spooled file once it lives on disk, or
    None while it is in memory (read from it directly: no I/O to wait for).

    A SpooledTemporaryFile's fileno() would move an in-memory file to disk,
    so it is asked only once the file has rolled over (Starlette's own test,
    UploadFile._in_memory, looks at the same attribute)."""
    if isinstance(file, tempfile.SpooledTemporaryFile) and not getattr(file, "_rolled", True):
        return None
    try:
        return file.fileno()
    except (OSError, ValueError, AttributeError):  # io.BytesIO: io.UnsupportedOperation
        return None


def _temporary_name(path: str) -> str:
    """A name beside path, hidden, that no other save picks."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{secrets.token_hex(6)}.part")


async def _copy(file: BinaryIO, out: OpenedFile) -> int:
    """Copy the upload's bytes from its position to its end into out."""
    written = 0
    fd = _disk_descriptor(file)
    if fd is None:
        while True:
            chunk = file.read(_UPLOAD_CHUNK)
            if not chunk:
                return written
            written += await out.pwrite(chunk, written)
    file.flush()  # bytes left in its write buffer would not be seen through the descriptor
    start = file.tell()
    async with OpenedFile.borrowing(fd) as source:
        async for chunk in source.chunks(start, sys.maxsize, _UPLOAD_CHUNK):
            written += await out.pwrite(chunk, written)
    file.seek(start + written)  # an lseek: no disk to wait for
    return written


async def save_upload(upload: UploadFile, path: "str | os.PathLike[str]", *, keep_partial: bool = False) -> int:
    """Write an uploaded file (Starlette's or FastAPI's UploadFile) to path,
    from its current position to its end; return the number of bytes written.

    No thread is involved: an upload still in memory is copied from there,
    one that has spilled to disk is read with io_uring, and path is written
    through ringlet.  The bytes go to a temporary name in path's directory,
    renamed to path once all are written; a save that fails or is cancelled
    removes it, so that path is either the whole upload or untouched.  With
    keep_partial=True, what was written so far is moved to path instead.
    The upload's position ends at its end, as after upload.read()."""
    target = os.fspath(path)
    temp = _temporary_name(target)
    done = False
    try:
        async with OpenedFile(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL) as out:
            written = await _copy(upload.file, out)
        await ringlet_os.rename(temp, target)
        done = True
        return written
    finally:
        if not done:
            await _discard(temp, target, keep_partial)


async def _discard(temp: str, target: str, keep_partial: bool) -> None:
    """After a failed or cancelled save: remove the temporary file, or with
    keep_partial move what it holds to the target.  Shielded: a save
    cancelled by its scope (a request cancelled by Starlette) cleans up all
    the same."""
    with anyio.CancelScope(shield=True):
        try:
            if keep_partial:
                await ringlet_os.rename(temp, target)
            else:
                await ringlet_os.unlink(temp)
        except FileNotFoundError:  # the open itself failed
            pass
