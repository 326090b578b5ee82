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
from typing import Any, Callable, Coroutine, Generator, NamedTuple, Optional, Tuple, Union

from ._base import WRITE_CHUNK
from ._binary import AsyncFile
from ._contract import PathArg
from ._engine import get_engine
from ._fdio import descriptor_offset, fspath, open_fd, stat_open_file
from ._text import AsyncTextFile

__all__ = ["open"]

_DIRECT_ALIGN = 4096             # O_DIRECT: memory, offsets and lengths aligned to this (any device's block)


# Built-in open()'s checks come in its order, so that where several
# arguments are wrong the error raised is the one it raises: the arguments'
# types (in the signature's order), the file (a number, or a path), the mode,
# the file's own checks (FileIO's), then the buffering and the text layer's
# (TextIOWrapper's).  open() makes those last ones after the open, once a
# file is created or truncated; here they come before it, and so before an
# error of the open (docs/text-mode.md).


def _c_string(value: Any, what: str) -> Optional[str]:
    """encoding, errors, newline: str or None, with no NUL (a C string)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"open() argument '{what}' must be str or None, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError("embedded null character")
    return value


def _c_int(value: Any) -> int:
    number: int = operator.index(value)  # TypeError: "'str' object cannot be interpreted as an integer"
    if not -2**31 <= number < 2**31:
        raise OverflowError("Python int too large to convert to C int")
    return number


def _is_number(file: Any) -> bool:
    """As PyNumber_Check: built-in open() takes a number for a descriptor."""
    kind = type(file)
    if kind is str or kind is bytes or kind is int:  # the usual ones at once: a failed hasattr costs ~0.6 us
        return kind is int
    return any(hasattr(kind, m) for m in ("__index__", "__int__", "__float__")) or isinstance(file, complex)


def _mode_flags(mode: str) -> Tuple[str, int, bool, bool, bool]:
    """io.open()'s checks of a mode (FileIO's "exactly one" comes later, in
    _check); returns (kind: one of "rwax", or "" for none, flags, readable,
    writable, text)."""
    chars = set(mode)
    if len(chars) != len(mode) or chars - set("rwaxb+t"):
        raise ValueError(f"invalid mode: '{mode}'")  # '%s', as open() formats it
    if "t" in mode and "b" in mode:
        raise ValueError("can't have text and binary mode at once")
    kinds = [c for c in "rwax" if c in mode]
    if len(kinds) > 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    update = "+" in mode
    kind = kinds[0] if kinds else ""
    flags = {
        "": 0,
        "r": 0,
        "w": os.O_CREAT | os.O_TRUNC,
        "a": os.O_CREAT | os.O_APPEND,
        "x": os.O_CREAT | os.O_EXCL,
    }[kind]
    readable = kind == "r" or update
    writable = kind not in ("r", "") or update
    flags |= os.O_RDWR if update else (os.O_RDONLY if kind == "r" else os.O_WRONLY)
    return kind, flags, readable, writable, "b" not in mode


def _descriptor(file: Any) -> int:
    """A number given for a file, as FileIO takes it: a C int that is not
    negative (one it cannot take as an int it tries as a path, and refuses)."""
    if isinstance(file, bool):  # open(True) takes descriptor 1: almost always a mistake, refused here
        raise TypeError("expected str, bytes or os.PathLike object, not bool")
    try:
        fd = _c_int(file)
    except (TypeError, OverflowError):
        raise TypeError(f"expected str, bytes or os.PathLike object, not {type(file).__name__}") from None
    if fd < 0:
        raise ValueError("negative file descriptor")
    return fd


def _text_options(encoding: Optional[str], errors: Optional[str], newline: Optional[str]
                  ) -> Tuple[str, str, Optional[str]]:
    """TextIOWrapper's checks, in its order; the defaults resolved."""
    if newline not in (None, "", "\n", "\r", "\r\n"):
        raise ValueError(f"illegal newline value: {newline}")
    if encoding is None or encoding == "locale":
        encoding = locale.getpreferredencoding(False)
    if not codecs.lookup(encoding)._is_text_encoding:  # LookupError for unknown names
        raise LookupError(f"{encoding!r} is not a text encoding; use codecs.open() to handle arbitrary codecs")
    return encoding, "strict" if errors is None else errors, newline


class _Checked(NamedTuple):
    """open()'s arguments, checked: all that the open and the file need."""

    flags: int
    readable: bool
    writable: bool
    text: Optional[Tuple[str, str, Optional[str]]]  # a text mode's encoding, errors, newline; None: binary
    buffering: int
    closefd: bool
    fd: Optional[int]  # a descriptor given for the file, else None
    path: bytes  # else the path to open, and its name as given
    name: Any


def _check(file: Any, mode: Any, buffering: Any, encoding: Any, errors: Any, newline: Any, closefd: Any,
           loop: Any, direct: bool) -> _Checked:
    """Every check of open() but the open's own, in built-in open()'s order."""
    # The arguments' types, in the signature's order (Argument Clinic's conversions).
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {'None' if mode is None else type(mode).__name__}")
    if "\0" in mode:
        raise ValueError("embedded null character")
    buffering = _c_int(buffering)
    encoding = _c_string(encoding, "encoding")
    errors = _c_string(errors, "errors")
    newline = _c_string(newline, "newline")
    closefd = bool(_c_int(closefd))  # an int too: not None
    # io.open()'s: the file (a number, or a path), the mode, a binary mode's arguments.
    number = _is_number(file)
    path, name = (b"", file) if number else fspath(file)  # TypeError for anything that is not a path
    kind, flags, readable, writable, text = _mode_flags(mode)
    if not text:
        for value, what in ((encoding, "an encoding"), (errors, "an errors"), (newline, "a newline")):
            if value is not None:
                raise ValueError(f"binary mode doesn't take {what} argument")
        if buffering == 1:
            warnings.warn("line buffering (buffering=1) isn't supported in binary mode, "
                          "the default buffer size will be used", RuntimeWarning, stacklevel=3)
    if direct:
        if text or "a" in mode:
            raise ValueError("direct=True needs a binary mode other than append ('rb', 'wb', 'r+b', ...)")
        flags |= os.O_DIRECT
    if loop is not None and loop is not asyncio.get_running_loop():
        raise ValueError("ringlet.open(loop=...) must be the running loop: ringlet uses the running loop's engine")
    # FileIO's checks: the file, its mode, closefd.
    fd = _descriptor(file) if number else None
    if b"\0" in path:
        raise ValueError("embedded null byte")
    if not kind:
        raise ValueError("Must have exactly one of create/read/write/append mode and at most one plus")
    if not number and not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    text_options = None
    if text:  # open() checks these once the file is open (created, truncated): here before it is touched
        if buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        text_options = _text_options(encoding, errors, newline)
    return _Checked(flags, readable, writable, text_options, buffering, closefd, fd, path, name)


async def _open_file(file: Any, mode: Any, buffering: Any, encoding: Any, errors: Any,
                     newline: Any, closefd: Any, opener: Any, loop: Any,
                     direct: bool) -> Union[AsyncFile, AsyncTextFile]:
    flags, readable, writable, text, buffering, closefd, given_fd, path, name = _check(
        file, mode, buffering, encoding, errors, newline, closefd, loop, direct)
    number = given_fd is not None
    append = "a" in mode
    engine = get_engine()
    binary_mode = mode.replace("t", "") + ("" if "b" in mode else "b")
    if given_fd is not None:
        fd, owned = given_fd, closefd
        opened_by_engine = False
    else:
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
                    read_ahead=read_ahead, unbuffered=buffering == 0)
    try:
        st = stat_open_file(fd, name, reject_directory=not writable and not number)
        position = descriptor_offset(fd)
        if position is not None:
            # The position starts at 0; at the end in append mode, as built-in
            # open(); where the descriptor is for a descriptor given.
            raw._pos = st.st_size if append else position if number else 0
        if direct and not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise ValueError("direct=True needs a regular file or a block device")
        raw._align = _DIRECT_ALIGN if direct else 0
        if text is None:
            return raw
        text_encoding, text_errors, newline = text
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
