"""Arguments, checked as the C engine checks them: the same exceptions, with
the contract's messages where ringlet words them and CPython's where the C
engine lets CPython's converters speak (``PyArg_ParseTuple``, ``PyLong_As*``)."""

from __future__ import annotations

import errno
import fcntl
import operator
import os
from typing import Any

from .. import _contract as contract

_INT32_MIN, _INT32_MAX = -0x80000000, 0x7FFFFFFF
_INT64_MIN, _INT64_MAX = -0x8000000000000000, 0x7FFFFFFFFFFFFFFF
_UINT32_MAX = 0xFFFFFFFF


def _index(obj: Any, refusal: str) -> int:
    """obj's __index__ (numpy.int64, say, as os.pread takes it), or TypeError(refusal)."""
    if not hasattr(type(obj), "__index__"):
        raise TypeError(refusal)
    return operator.index(obj)


def int32(obj: Any, what: str) -> int:
    """An fd or opcode: any __index__ within 32 bits (the C engine's parse_int)."""
    value = operator.index(obj)
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise OverflowError(contract.OUT_OF_RANGE.format(what=what))
    return value


def c_int(obj: Any) -> int:
    """The "i" format of PyArg_ParseTuple."""
    value = operator.index(obj)
    if value > _INT32_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if value < _INT32_MIN:
        raise OverflowError("signed integer is less than minimum")
    return value


def uint32(obj: Any, what: str) -> int:
    """Any __index__ from 0 to 2**32 - 1 (the C engine's parse_unsigned)."""
    value = _index(obj, contract.NOT_AN_INT.format(what=what, type=type(obj).__name__))
    if value < 0:
        raise OverflowError("can't convert negative value to unsigned int")
    if value > _UINT32_MAX:
        raise OverflowError(contract.TOO_LARGE.format(what=what, max=_UINT32_MAX))
    return value


def size(obj: Any) -> int:
    """PyLong_AsSsize_t, of any __index__."""
    value = _index(obj, "an integer is required")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return value


def int64(obj: Any) -> int:
    """PyLong_AsLongLong, of any __index__."""
    value = operator.index(obj)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise OverflowError("int too big to convert")
    return value


def offset(obj: Any) -> int:
    """An offset: -1 means the file position, other negatives are refused."""
    value = int64(obj)
    if value < -1:
        raise ValueError(contract.NEGATIVE_OFFSET)
    return value


def positional_offset(obj: Any) -> int:
    """pread's and preadinto's offset: any __index__, not negative (-1, the
    file position to offset(), is refused too)."""
    value = operator.index(obj)
    if value < 0:
        raise ValueError(contract.NEGATIVE_OFFSET)
    return value


def timeout(obj: Any) -> float:
    """The "d" format of PyArg_ParseTuple, and no NaN."""
    if hasattr(type(obj), "__float__"):
        value = float(obj)
    elif hasattr(type(obj), "__index__"):
        value = float(operator.index(obj))
    else:
        raise TypeError(f"must be real number, not {type(obj).__name__}")
    if value != value:
        raise ValueError(contract.TIMEOUT_NAN)
    return value


def align(obj: Any) -> int:
    """The align argument (PyLong_AsUnsignedLong of any __index__); too big
    becomes 2 MiB, refused later."""
    value = _index(obj, "an integer is required")
    if value < 0:
        raise OverflowError("can't convert negative value to unsigned int")
    if value > 0xFFFFFFFFFFFFFFFF:
        raise OverflowError("Python int too large to convert to C unsigned long")
    return 1 << 21 if value > 1 << 20 else value


def direct_offset(fd: int, offset: int, length: int, align: int, write: bool) -> tuple[int, bool]:
    """The offset a read or write uses, checked as the C engine checks it:
    (offset, whether the file position moves past the bytes moved)."""
    moves = False
    if offset < 0 and align:
        # O_DIRECT goes through a bounce buffer at an explicit offset: the
        # file position, which the operation then moves itself.
        try:
            appending = write and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
            if not appending:
                offset, moves = os.lseek(fd, 0, os.SEEK_CUR), True
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise  # said now, before O_DIRECT's "needs offsets"
            # a stream
    if offset >= 0 and offset + length > _INT64_MAX - (2 << 20 if align else 0):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # what pread(2)/pwrite(2) say of it
    if align:
        if align < 512 or align > 1 << 20 or align & (align - 1):
            raise ValueError(contract.BAD_ALIGN)
        if offset < 0:
            raise ValueError(contract.DIRECT_NEEDS_OFFSET)
        if write and (offset % align or length % align):
            raise ValueError(contract.DIRECT_WRITE_UNALIGNED.format(align=align))
    return offset, moves


def path(obj: Any) -> bytes:
    if not isinstance(obj, bytes):
        raise TypeError(contract.PATH_NOT_BYTES.format(type=type(obj).__name__))
    if b"\0" in obj:
        raise ValueError(contract.EMBEDDED_NULL)
    return obj


def request_list(requests: Any) -> list[Any]:
    """read_many's requests, copied: nothing the caller does meanwhile changes them."""
    try:
        return list(requests)
    except TypeError:
        raise TypeError(contract.REQUESTS_NOT_SEQUENCE) from None


def read_requests(items: list[Any]) -> list[tuple[int, int]]:
    """read_many's [(size, offset), ...]: each checked, sizes capped at MAX_RW."""
    checked = []
    for index, request in enumerate(items):
        if not isinstance(request, tuple) or len(request) != 2:
            raise TypeError(contract.REQUEST_NOT_TUPLE.format(index=index))
        length, at = size(request[0]), offset(request[1])
        if length < 0 or at < 0:
            raise ValueError(contract.REQUEST_NEGATIVE.format(index=index))
        checked.append((min(length, contract.MAX_RW), at))
    return checked
