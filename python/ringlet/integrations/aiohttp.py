"""aiohttp without an executor: FileResponse, static routes and uploads.

    from ringlet.integrations.aiohttp import FileResponse, save_upload, static

    async def download(request: web.Request) -> web.StreamResponse:
        return FileResponse(folder / request.match_info["name"])

    app.add_routes([static("/static", folder)])   # was: web.static("/static", folder)

    async def upload(request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()                 # streamed: never all in memory
        written = await save_upload(part, folder / "upload.bin")
        return web.json_response({"written": written})

``FileResponse`` is aiohttp.web.FileResponse with its file work moved onto
ringlet: the stats (of the file and of its pre-compressed ``.br``/``.gz``
siblings), the open, the reads and the close are io_uring operations
(the stat of the opened descriptor is an fstat(2), which never waits),
where the stock class runs them in the loop's executor.  The body goes as
the stock class sends it: by ``loop.sendfile`` (sendfile(2) from the loop's
thread, zero copy) where the transport allows it, and otherwise (TLS,
compression, AIOHTTP_NOSENDFILE, uvloop) by reads through the ring,
chunk_size bytes at a time, where the stock class reads in its executor.
Set ``use_sendfile = False`` on the class (or a subclass) to always read
through the ring: sendfile(2) of a file not in the page cache waits for the
disk in the loop's thread, as it does for the stock class.  Its
arguments, statuses, reasons and headers are the stock class's (ranges,
If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range,
HEAD, Accept-Encoding): the conditional logic below follows the stock
class's; the headers and ranges are the stock class's own code, inherited.

``static()`` (as ``web.static()``), ``add_static()`` (as
``router.add_static()``) and ``StaticResource`` serve a folder as aiohttp's
static route does, whose handler sends every request to the executor to
resolve the path and stat it.  Here the kernel resolves it (an O_PATH open
through the ring, its real path read from /proc/self/fd, fstat(2)), and
the file goes out by this module's FileResponse.  The stock lookup decides,
in the executor as there, only where the kernel's answer may differ from
its os.path.realpath: a path the kernel does not find with a symbolic link
on the way (realpath reads a link's target as text: "page.txt/" names a
file to it), an error other than "not found", a listing (show_index).

``save_upload()`` writes an uploaded file to a path through the ring: a
part of ``await request.multipart()`` as it arrives, or a FileField of
``await request.post()`` (which aiohttp has already written to a temporary
file, in its executor past 1 MiB).  The bytes go to a temporary name and
are renamed to the path once all are there: a failed or cancelled save
leaves the path as it was.

Needs aiohttp: ``pip install ringlet[aiohttp]``.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import stat
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import missing_framework

try:
    from aiohttp import hdrs, web
    from aiohttp.abc import AbstractStreamWriter
    from aiohttp.multipart import BodyPartReader
    from aiohttp.web_fileresponse import ENCODING_EXTENSIONS, NOSENDFILE
    from aiohttp.web_routedef import AbstractRouteDef
    from aiohttp.web_urldispatcher import AbstractRoute, StaticResource as _StockStaticResource, UrlDispatcher
except ImportError as exc:
    raise missing_framework(__name__, "aiohttp", "aiohttp") from exc

from .. import os as ringlet_os
from ._paths import PROC_FD_LINKS, look_up, symlink_on_the_way
from ._stream import OpenedFile
from ._uploads import CHUNK, copy_file_object, finish_shielded, save_atomically

if TYPE_CHECKING:
    from aiohttp.web_request import BaseRequest

__all__ = ["FileResponse", "StaticResource", "add_static", "save_upload", "static"]


class FileResponse(web.FileResponse):
    """aiohttp.web.FileResponse whose stats, open, reads and close go through
    ringlet instead of the executor (same arguments, same responses)."""

    # sendfile(2) where the stock class would use it (see the module docstring).
    use_sendfile = True

    async def _find(self, accept_encoding: str) -> Tuple[Optional[pathlib.Path], os.stat_result, Optional[str]]:
        """The file to send (a pre-compressed sibling the client accepts, or
        the file itself), its stat, and its content coding; None for the path
        when it is not a regular file (the stock class's order and rules)."""
        for extension, coding in ENCODING_EXTENSIONS.items():
            if coding not in accept_encoding:
                continue
            compressed = self._path.with_suffix(self._path.suffix + extension)
            try:
                st = await ringlet_os.lstat(compressed)  # a symbolic link is not followed
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                return compressed, st, coding
        st = await ringlet_os.stat(self._path)
        return (self._path if stat.S_ISREG(st.st_mode) else None), st, None

    async def prepare(self, request: "BaseRequest") -> Optional[AbstractStreamWriter]:
        headers_only = super(web.FileResponse, self).prepare  # StreamResponse's: status and headers as set
        accept_encoding = request.headers.get(hdrs.ACCEPT_ENCODING, "").lower()
        try:
            path, st, coding = await self._find(accept_encoding)
        except PermissionError:
            self.set_status(web.HTTPForbidden.status_code)
            return await headers_only(request)
        except OSError:  # not found, a symlink loop, ...: as the stock class
            self.set_status(web.HTTPNotFound.status_code)
            return await headers_only(request)
        if path is None:  # a socket, a FIFO, a device, a directory
            self.set_status(web.HTTPForbidden.status_code)
            return await headers_only(request)

        # Preconditions, in the order of RFC 9110 section 13.2.2, as the stock class.
        etag = f"{st.st_mtime_ns:x}-{st.st_size:x}"
        if_match = request.if_match
        if if_match is not None and not self._etag_match(etag, if_match, weak=False):
            return await self._precondition_failed(request)
        unmodified_since = request.if_unmodified_since
        if unmodified_since is not None and if_match is None and st.st_mtime > unmodified_since.timestamp():
            return await self._precondition_failed(request)
        if_none_match = request.if_none_match
        if if_none_match is not None and self._etag_match(etag, if_none_match, weak=True):
            return await self._not_modified(request, etag, st.st_mtime)
        modified_since = request.if_modified_since
        if modified_since is not None and if_none_match is None and st.st_mtime <= modified_since.timestamp():
            return await self._not_modified(request, etag, st.st_mtime)

        file = OpenedFile(path)
        try:
            await file.open()
            # The stat of the open file: what is sent is what was opened.
            # fstat(2) of an open descriptor reads the inode the open brought
            # in and never waits for a disk (ringlet.open does the same);
            # through the ring, statx always goes to a kernel worker (~30 us).
            opened = os.fstat(file.fileno())
        except OSError as exc:
            await file.close()
            self.set_status((web.HTTPForbidden if isinstance(exc, PermissionError) else web.HTTPNotFound).status_code)
            return await headers_only(request)
        try:
            # The stock class's own status, range and header logic, which
            # hands the body to _sendfile below.  It types the file as a
            # BufferedReader; here it is ringlet's, which only _sendfile reads.
            opened_file: Any = file
            return await self._prepare_open_file(request, opened_file, opened, coding)
        finally:
            await file.close()

    async def _sendfile(self, request: "BaseRequest", fobj: Any, offset: int, count: int) -> AbstractStreamWriter:
        """Send count bytes of the file from offset (for HEAD and empty bodies
        the stock class never gets here)."""
        writer = await super(web.FileResponse, self).prepare(request)
        assert writer is not None
        file: OpenedFile = fobj
        if self.use_sendfile and not NOSENDFILE and not self.compression:
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("Connection lost")
            try:
                descriptor: Any = _Descriptor(file.fileno())  # typed IO[bytes]; fileno and seek are what it uses
                await asyncio.get_running_loop().sendfile(transport, descriptor, offset, count, fallback=False)
            except (RuntimeError, NotImplementedError):
                # No sendfile(2) for this transport (asyncio says so with
                # SendfileNotAvailableError, a RuntimeError, before sending
                # anything; uvloop with NotImplementedError).  Its own
                # fallback would read in the executor: read through the ring.
                pass
            else:
                await super(web.FileResponse, self).write_eof()
                return writer
        async for chunk in file.chunks(offset, count, self._chunk_size):
            await writer.write(chunk)
        await writer.drain()
        return writer


class _Descriptor:
    """What loop.sendfile needs of a file: its descriptor, and a seek it
    calls to leave the position after what was sent (ringlet reads at
    explicit offsets: nothing to move)."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, whence: int = 0) -> int:
        return offset


# -- a served folder -------------------------------------------------------------


class StaticResource(_StockStaticResource):
    """aiohttp's static resource (the same arguments: prefix, directory,
    name=, expect_handler=, chunk_size=, show_index=, follow_symlinks=,
    append_version=) whose lookups the kernel makes (see the module
    docstring): same statuses, headers and bodies."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        if pathlib.Path(filename).is_absolute():  # as the stock handler: //host/share, say
            raise web.HTTPNotFound()
        unresolved = self._directory.joinpath(filename)
        response = await self._found(filename, unresolved) if PROC_FD_LINKS else None
        if response is None:  # the stock handler decides (in the executor), with this module's FileResponse
            response = await super()._handle(request)
            if type(response) is web.FileResponse:
                response = FileResponse(response._path, chunk_size=self._chunk_size)
        return response

    async def _found(self, filename: str, unresolved: pathlib.Path) -> Optional[web.StreamResponse]:
        """The stock lookup's answer where the kernel's lookup gives it, else None."""
        directory = self._directory  # a real path (resolved when the resource was made)
        normalized = pathlib.Path(os.path.normpath(unresolved))
        if self._follow_symlinks and not normalized.is_relative_to(directory):
            raise web.HTTPNotFound()  # inside by its spelling; its symbolic links may lead anywhere
        try:
            found = await look_up(normalized if self._follow_symlinks else unresolved, real=True)
        except (OSError, ValueError):  # a loop of links, a folder it may not search, a NUL: the stock's outcome
            return None
        if found is None:
            relative = os.path.normpath(filename)
            if relative.startswith("..") or await symlink_on_the_way(str(directory), relative):
                return None
            # Nothing there and no link on the way: the stock lookup's path, which its FileResponse answers 404.
            return FileResponse(normalized, chunk_size=self._chunk_size)
        real_path, st = found
        if not self._follow_symlinks and not pathlib.Path(real_path).is_relative_to(directory):
            raise web.HTTPNotFound()
        if stat.S_ISDIR(st.st_mode):
            if self._show_index:
                return None  # the listing reads the folder: in the executor, as the stock handler
            raise web.HTTPForbidden()
        return FileResponse(pathlib.Path(real_path), chunk_size=self._chunk_size)


def add_static(router: UrlDispatcher, prefix: str, path: "str | os.PathLike[str]", **kwargs: Any) -> StaticResource:
    """router.add_static(prefix, path, **kwargs) with ringlet's StaticResource."""
    assert prefix.startswith("/")
    resource = StaticResource(prefix[:-1] if prefix.endswith("/") else prefix, path, **kwargs)
    router.register_resource(resource)
    return resource


class _StaticDef(AbstractRouteDef):
    """What static() gives: app.add_routes() registers it."""

    def __init__(self, prefix: str, path: "str | os.PathLike[str]", kwargs: Dict[str, Any]) -> None:
        self.prefix, self.path, self.kwargs = prefix, path, kwargs

    def __repr__(self) -> str:
        return f"<ringlet StaticDef {self.prefix} -> {self.path}>"

    def register(self, router: UrlDispatcher) -> List[AbstractRoute]:
        resource = add_static(router, self.prefix, self.path, **self.kwargs)
        return list(resource.get_info().get("routes", {}).values())


def static(prefix: str, path: "str | os.PathLike[str]", **kwargs: Any) -> AbstractRouteDef:
    """web.static(prefix, path, **kwargs) with ringlet's StaticResource:
    ``app.add_routes([static("/static", folder)])``."""
    return _StaticDef(prefix, path, kwargs)


# -- uploads --------------------------------------------------------------------


async def save_upload(upload: "BodyPartReader | web.FileField", path: "str | os.PathLike[str]", *,
                      keep_partial: bool = False) -> int:
    """Write an uploaded file to path; return the number of bytes written.

    upload is a part of ``await request.multipart()`` (read as it arrives,
    decoded as aiohttp's own request.post() decodes it: Content-Transfer-
    Encoding, Content-Encoding), or a FileField of ``await request.post()``
    (copied from its position to its end).  No thread: path is written
    through ringlet, under a temporary name in its directory renamed to path
    once all is written; a save that fails or is cancelled removes it, so
    that path is either the whole upload or untouched.  With
    keep_partial=True, what was written so far is moved to path instead."""
    if isinstance(upload, web.FileField):
        file = upload.file
        return await save_atomically(path, lambda out: copy_file_object(file, out), keep_partial, finish_shielded)
    if isinstance(upload, BodyPartReader):
        return await save_atomically(path, lambda out: _copy_part(upload, out), keep_partial, finish_shielded)
    raise TypeError(f"save_upload() takes a BodyPartReader or a FileField, not {type(upload).__name__}")


async def _copy_part(part: BodyPartReader, out: OpenedFile) -> int:
    written = 0
    decode_iter = getattr(part, "decode_iter", None)  # aiohttp 3.12+: decompression off the loop for big parts
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            return written
        if decode_iter is None:
            written += await out.pwrite(part.decode(chunk), written)
            continue
        async for decoded in decode_iter(chunk):
            written += await out.pwrite(decoded, written)
