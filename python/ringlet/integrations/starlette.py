"""Starlette and FastAPI without threads: FileResponse, StaticFiles and save_upload.

    from ringlet.integrations.starlette import FileResponse, StaticFiles, save_upload

    app.mount("/static", StaticFiles(directory="static"), name="static")

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
range parsing are inherited; only the I/O is replaced.  ``StaticFiles`` is
starlette.staticfiles.StaticFiles with its path lookups (a stat, and the
real path that keeps a request inside the directory) through the ring and
its files served by that ``FileResponse``.

Needs Starlette: ``pip install ringlet[starlette]`` (or ``ringlet[fastapi]``).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from typing import Awaitable, List, Optional, Tuple

from . import missing_framework

try:
    import anyio
    from starlette.datastructures import URL, Headers, MutableHeaders, UploadFile
    from starlette.exceptions import HTTPException
    from starlette.responses import FileResponse as _StockFileResponse
    from starlette.responses import RedirectResponse, Response
    from starlette.staticfiles import NotModifiedResponse
    from starlette.staticfiles import StaticFiles as _StockStaticFiles
    from starlette.types import Receive, Scope, Send
except ImportError as exc:
    raise missing_framework(__name__, "Starlette", "starlette") from exc

from .. import os as ringlet_os
from ._paths import PROC_FD_LINKS, look_up, symlink_on_the_way
from ._uploads import copy_file_object, save_atomically
from ._stream import OpenedFile

__all__ = ["FileResponse", "StaticFiles", "save_upload"]


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


# -- a served folder -------------------------------------------------------------


class StaticFiles(_StockStaticFiles):
    """starlette.staticfiles.StaticFiles (same arguments: directory=,
    packages=, html=, check_dir=, follow_symlink=) without worker threads.

    The stock class sends each request's lookup to a thread: the real path
    of the file and of the directory (a stat per path component), the check
    that the first lies inside the second, and a stat.  Here each path is
    opened with O_PATH through the ring (an open of a cached path completes
    at once; nothing is opened for reading, whatever it names), its real
    path is what the kernel reports for the descriptor
    (/proc/self/fd), and its stat is fstat(2): none of these waits for a
    device.  The same check then decides, and the file is served by
    ringlet's FileResponse.  Where the kernel finds nothing through a
    symbolic link, the stock lookup decides, in its thread: it reads a
    link's target as text (os.path.realpath), and a target such as
    "page.txt/" names a file to it and nothing to the kernel.  Statuses,
    headers and bodies are the stock class's: 405 for other methods, 401
    for a path it may not look up, index.html and the redirect to a
    trailing "/" with html=True, 404.html, 304 for a conditional request."""

    async def check_config(self) -> None:
        if self.directory is None:
            return
        try:
            stat_result = await ringlet_os.stat(self.directory)
        except FileNotFoundError:
            raise RuntimeError(f"StaticFiles directory '{self.directory}' does not exist.") from None
        if not (stat.S_ISDIR(stat_result.st_mode) or stat.S_ISLNK(stat_result.st_mode)):
            raise RuntimeError(f"StaticFiles path '{self.directory}' is not a directory.")

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        full_path, stat_result = await self._found(path)
        if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
            return self.file_response(full_path, stat_result, scope)
        if self.html:
            if stat_result is not None and stat.S_ISDIR(stat_result.st_mode):
                full_path, stat_result = await self._found(os.path.join(path, "index.html"))
                if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
                    if not scope["path"].endswith("/"):  # a directory's URL ends in "/"
                        url = URL(scope=scope)
                        return RedirectResponse(url=url.replace(path=url.path + "/"))
                    return self.file_response(full_path, stat_result, scope)
            full_path, stat_result = await self._found("404.html")
            if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
                return FileResponse(full_path, stat_result=stat_result, status_code=404)
        raise HTTPException(status_code=404)

    def file_response(self, full_path: "str | os.PathLike[str]", stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = FileResponse(full_path, status_code=status_code, stat_result=stat_result)
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response

    async def _found(self, path: str) -> Tuple[str, Optional[os.stat_result]]:
        """lookup_path's answer, with the stock class's errors as statuses:
        a path it may not look up is 401, one too long or holding a NUL 404."""
        try:
            return await self._lookup(path)
        except PermissionError:
            raise HTTPException(status_code=401) from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise HTTPException(status_code=404) from None
            raise
        except ValueError:
            raise HTTPException(status_code=404) from None

    async def _lookup(self, path: str) -> Tuple[str, Optional[os.stat_result]]:
        """lookup_path() through the ring: (the file's full path, its stat)
        from the first directory that holds path inside it, else ("", None)."""
        if type(self).lookup_path is not _StockStaticFiles.lookup_path or (
                not PROC_FD_LINKS and not self.follow_symlink):
            # A subclass's own lookup_path, or no /proc to ask for real
            # paths: lookup_path decides, in a thread as in the stock class.
            return await anyio.to_thread.run_sync(self.lookup_path, path)
        if path.startswith(("/", "\\")):  # absolute: it would leave the directory
            return "", None
        try:
            return await self._look_in_directories(path)
        except OSError as exc:
            if isinstance(exc, PermissionError) or exc.errno == errno.ENAMETOOLONG:
                raise  # a status: 401, 404
            # Any other error reaches the server as it is: the stock lookup
            # raises it, naming the file as it does (by its real path).
            return await anyio.to_thread.run_sync(self.lookup_path, path)

    async def _look_in_directories(self, path: str) -> Tuple[str, Optional[os.stat_result]]:
        for directory in self.all_directories:
            joined = os.path.join(directory, path)
            found: Optional[Tuple[str, os.stat_result]] = None
            if self.follow_symlink:  # inside by its spelling; its symlinks may lead anywhere
                full_path, directory = os.path.abspath(joined), os.path.abspath(directory)
                if os.path.commonpath([full_path, directory]) == directory:
                    found = await look_up(full_path)
            else:  # inside once every symlink is resolved
                real_directory, found = await look_up(directory, real=True), await look_up(joined, real=True)
                if found is None and real_directory and await symlink_on_the_way(real_directory[0], path):
                    # The kernel found nothing, but realpath may: the stock lookup decides, in a thread.
                    return await anyio.to_thread.run_sync(self.lookup_path, path)
                if found and not (real_directory and os.path.commonpath([found[0], real_directory[0]])
                                  == real_directory[0]):
                    found = None
            if found is not None:
                return found
        return "", None


# -- uploads --------------------------------------------------------------------


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
    return await save_atomically(path, lambda out: copy_file_object(upload.file, out), keep_partial, _shielded)


async def _shielded(cleanup: Awaitable[None]) -> None:
    """A save's clean-up, run to its end even in a cancelled scope (a request
    Starlette cancels)."""
    with anyio.CancelScope(shield=True):
        await cleanup
