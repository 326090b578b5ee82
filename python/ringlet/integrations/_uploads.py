"""Saving an upload to a file, as the framework integrations do it: the
bytes go to a temporary name beside the target, renamed to it once all are
written; a save that fails or is cancelled removes it (or, with
keep_partial, moves what it holds to the target), so that the target is
either the whole upload or untouched.  No thread: an upload in memory is
copied from there, one on disk is read through the ring, and the file is
written through it."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
from typing import Any, Awaitable, BinaryIO, Callable, Optional

from .. import os as ringlet_os
from ._stream import OpenedFile

# How much of an upload is copied per read and write: large enough that a
# big upload takes few ring operations, small enough not to hold it all at once.
CHUNK = 1 << 20


async def save_atomically(path: "str | os.PathLike[str]", fill: Callable[[OpenedFile], Awaitable[int]],
                          keep_partial: bool, shielded: Callable[[Awaitable[None]], Awaitable[None]]) -> int:
    """fill(out) writes the upload into out (a new file beside path) and
    gives the bytes written; the file then becomes path.  shielded(cleanup)
    runs the clean-up of a failed or cancelled save to its end, whatever
    cancels the saving task meanwhile (each framework's way)."""
    target = os.fspath(path)
    head, tail = os.path.split(target)
    temp = os.path.join(head, f".{tail}.{secrets.token_hex(6)}.part")  # hidden, and no other save's
    done = False
    try:
        async with OpenedFile(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL) as out:
            written = await fill(out)
        await ringlet_os.rename(temp, target)
        done = True
        return written
    finally:
        if not done:
            await shielded(_discard(temp, target, keep_partial))


async def _discard(temp: str, target: str, keep_partial: bool) -> None:
    """Remove the temporary file, or with keep_partial move what it holds to the target."""
    try:
        if keep_partial:
            await ringlet_os.rename(temp, target)
        else:
            await ringlet_os.unlink(temp)
    except FileNotFoundError:  # the open itself failed
        pass


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


async def copy_file_object(file: Any, out: OpenedFile) -> int:
    """Copy a file object's bytes from its position to its end into out; its
    position ends at its end, as after file.read()."""
    written = 0
    fd = _disk_descriptor(file)
    if fd is None:
        while True:
            chunk = file.read(CHUNK)
            if not chunk:
                return written
            written += await out.pwrite(chunk, written)
    file.flush()  # bytes left in its write buffer would not be seen through the descriptor
    start = file.tell()
    async with OpenedFile.borrowing(fd) as source:
        async for chunk in source.chunks(start, sys.maxsize, CHUNK):
            written += await out.pwrite(chunk, written)
    file.seek(start + written)  # an lseek: no disk to wait for
    return written


async def finish_shielded(cleanup: Awaitable[None]) -> None:
    """Run cleanup to its end even if the calling task is cancelled
    meanwhile (each cancel waits for it), then let the cancel through."""
    task = asyncio.ensure_future(cleanup)
    cancelled: Optional[BaseException] = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    task.result()
