"""ringlet.open(): the arguments of built-in open() checked and resolved,
the file opened through the ring, and the file object made."""

from __future__ import annotations

import asyncio
import codecs
import collections.abc
import io
import locale
import operator
import os
import stat
import warnings
from typing import Any, Callable, Coroutine, Generator, Optional, Tuple, Union

from ._base import WRITE_CHUNK
from ._binary import AsyncFile
from ._contract import PathArg
from ._engine import get_engine
from ._fdio import descriptor_offset, fspath, open_fd, stat_open_file
from ._text import AsyncTextFile

__all__ = ["open"]

_DIRECT_ALIGN = 4096             # O_DIRECT: memory, offsets and lengths aligned to this (any device's block)


def _mode_flags(mode: str) -> Tuple[int, bool, bool, bool]:
    """Validate a mode as built-in open() does; return (flags, readable, writable, text)."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    chars = set(mode)
    if chars - set("rwaxb+t") or len(chars) != len(mode):
        raise ValueError(f"invalid mode: {mode!r}")
    kinds = [c for c in "rwax" if c in chars]
    if len(kinds) != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if "t" in chars and "b" in chars:
        raise ValueError("can't have text and binary mode at once")
    update = "+" in chars
    kind = kinds[0]
    flags = {
        "r": 0,
        "w": os.O_CREAT | os.O_TRUNC,
        "a": os.O_CREAT | os.O_APPEND,
        "x": os.O_CREAT | os.O_EXCL,
    }[kind]
    readable = kind == "r" or update
    writable = kind != "r" or update
    flags |= os.O_RDWR if update else (os.O_RDONLY if kind == "r" else os.O_WRONLY)
    return flags, readable, writable, "b" not in chars


def _optional_str(value: Any, what: str) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"open() argument '{what}' must be str or None, not {type(value).__name__}")
    return value


def _text_options(encoding: Any, errors: Any, newline: Any) -> Tuple[str, str, Optional[str]]:
    """Check encoding, errors and newline as io.TextIOWrapper does; resolve the defaults."""
    encoding = _optional_str(encoding, "encoding")
    errors = _optional_str(errors, "errors")
    newline = _optional_str(newline, "newline")
    if newline not in (None, "", "\n", "\r", "\r\n"):
        raise ValueError(f"illegal newline value: {newline}")
    if encoding is None or encoding == "locale":
        encoding = locale.getpreferredencoding(False)
    if not codecs.lookup(encoding)._is_text_encoding:  # LookupError for unknown names
        raise LookupError(f"{encoding!r} is not a text encoding; use codecs.open() to handle arbitrary codecs")
    return encoding, "strict" if errors is None else errors, newline


async def _open_file(file: Any, mode: str, buffering: int, encoding: Optional[str], errors: Optional[str],
                     newline: Optional[str], closefd: bool, opener: Any, loop: Any,
                     direct: bool) -> Union[AsyncFile, AsyncTextFile]:
    flags, readable, writable, text = _mode_flags(mode)
    append = "a" in mode
    if direct:
        if text or append:
            raise ValueError("direct=True needs a binary mode other than append ('rb', 'wb', 'r+b', ...)")
        flags |= os.O_DIRECT
    if loop is not None and loop is not asyncio.get_running_loop():
        raise ValueError("ringlet.open(loop=...) must be the running loop: ringlet uses the running loop's engine")
    buffering = operator.index(buffering)
    if not -2**31 <= buffering < 2**31:  # a C int, as built-in open() takes it
        raise OverflowError("Python int too large to convert to C int")
    closefd = bool(operator.index(closefd))  # an int too: not None
    if text:
        if buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        text_encoding, text_errors, newline = _text_options(encoding, errors, newline)
    else:
        for value, what in ((encoding, "an encoding"), (errors, "an errors"), (newline, "a newline")):
            if value is not None:
                raise ValueError(f"binary mode doesn't take {what} argument")
        if buffering == 1:
            warnings.warn("line buffering (buffering=1) isn't supported in binary mode, "
                          "the default buffer size will be used", RuntimeWarning, stacklevel=2)
    engine = get_engine()
    binary_mode = mode.replace("t", "") + ("" if "b" in mode else "b")
    if isinstance(file, int) and not isinstance(file, bool):
        if file < 0:
            raise ValueError("negative file descriptor")
        fd, name, owned = file, file, closefd
        opened_by_engine = False
    else:
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        path, name = fspath(file)
        opened_by_engine = opener is None
        if opened_by_engine:
            fd = await open_fd(engine, path, flags, 0o666, name)
        else:
            fd = opener(name, flags | os.O_CLOEXEC)
            if not isinstance(fd, int):
                raise TypeError("expected integer from opener")
            if fd < 0:
                raise ValueError(f"opener returned {fd}")
        owned = True
    if not opened_by_engine:
        engine._adopt(fd)  # its number may have named another file before (os.close, os.open)
    # Small reads read ahead as much as io.BufferedReader buffers; not unbuffered, not
    # O_DIRECT (aligned reads only), not under a text file (which reads ahead itself).
    read_ahead = 0 if buffering == 0 or direct or text else buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
    raw = AsyncFile(engine, fd, name, binary_mode if text else mode, readable, writable, owned, append=append,
                    read_ahead=read_ahead)
    try:
        st = stat_open_file(fd, name, reject_directory=not writable and not isinstance(file, int))
        position = descriptor_offset(fd)
        if position is not None:
            # The position starts at 0; at the end in append mode, as built-in
            # open(); where the descriptor is for a descriptor given.
            raw._pos = st.st_size if append else position if isinstance(file, int) else 0
        if direct and not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise ValueError("direct=True needs a regular file or a block device")
        raw._align = _DIRECT_ALIGN if direct else 0
        if not text:
            return raw
        return AsyncTextFile(raw, mode, text_encoding, text_errors, newline, line_buffering=buffering == 1,
                             write_chunk=buffering if buffering > 1 else WRITE_CHUNK)
    except BaseException:
        await raw.close()
        raise


class _Opening(collections.abc.Coroutine[Any, Any, Union[AsyncFile, AsyncTextFile]]):
    """What ringlet.open() returns: a coroutine (await it, or pass it to
    asyncio.create_task) that is also an async context manager, closing the
    file at the end of the ``async with`` block."""

    __slots__ = ("_coro", "_file")

    def __init__(self, coro: Coroutine[Any, Any, Union[AsyncFile, AsyncTextFile]]) -> None:
        self._coro = coro
        self._file: Optional[Union[AsyncFile, AsyncTextFile]] = None

    def __await__(self) -> Generator[Any, None, Union[AsyncFile, AsyncTextFile]]:
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    async def __aenter__(self) -> Any:
        self._file = await self._coro
        return self._file

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._file is not None:
            await self._file.close()


def open(file: Union[PathArg, int], mode: str = "r", buffering: int = -1, encoding: Optional[str] = None,
         errors: Optional[str] = None, newline: Optional[str] = None, closefd: bool = True,
         opener: Optional[Callable[[Any, int], int]] = None, *, direct: bool = False, loop: Any = None,
         executor: Any = None) -> _Opening:
    """Open a file for asynchronous I/O through io_uring.

    The arguments are those of built-in open().  A binary mode ("rb", "wb",
    "r+b", ...) gives an AsyncFile; a text mode ("r", "w", "a", "x", with "+"
    or "t") gives an AsyncTextFile that decodes with encoding (default: the
    locale's, as open()), errors and newline as io.TextIOWrapper does.
    buffering=1 in text mode flushes at each line end; a value > 1 is the
    size at which buffered text writes are flushed.  Binary files buffer no
    writes.  opener(path, flags) is called, blocking, as built-in open() does.

    direct=True opens with O_DIRECT: the page cache is bypassed, reads and
    writes go through aligned memory ringlet manages (binary modes only; see
    AsyncFile).

    Use ``f = await ringlet.open(...)`` or ``async with ringlet.open(...) as
    f``.  Errors are those open() raises.  loop and executor are accepted for
    aiofiles compatibility: executor is ignored (there is no thread pool) and
    loop, if given, must be the running loop.
    """
    return _Opening(_open_file(file, mode, buffering, encoding, errors, newline, closefd, opener, loop, direct))
