"""The contract between ringlet's front end and its two backends.

The C engine (``ringlet._ringlet.Engine``, io_uring) and the thread engine
(``ringlet._threads.ThreadEngine``) must behave the same; this module says
what "the same" is, once: the operation codes, the limits (exported by the
C module, never restated), the keys of stats and trace records, and the
argument types shared by the front end.
"""

from __future__ import annotations

import enum
import os
from typing import Union

from . import _ringlet

# The most the kernel moves in one read or write; O_DIRECT pieces; copy depth.
MAX_RW: int = _ringlet.MAX_RW
MAX_DIRECT: int = _ringlet.MAX_DIRECT
COPY_MAX_SLOTS: int = _ringlet.COPY_MAX_SLOTS

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# The stamps of a trace record, in the order they happen (Timeline A, then B).
STAMPS = ("submitted", "returned", "reaped", "resolved", "resumed")


class Opcode(enum.IntEnum):
    """The IORING_OP_* numbers ringlet uses (include/uapi/linux/io_uring.h)."""

    FSYNC = 3
    ASYNC_CANCEL = 14
    OPENAT = 18
    CLOSE = 19
    STATX = 21
    READ = 22
    WRITE = 23
    RENAMEAT = 35
    UNLINKAT = 36
    MKDIRAT = 37
    SYMLINKAT = 38
    LINKAT = 39
    FTRUNCATE = 55


# What ringlet cannot do without: an io_uring lacking one of these is not used.
NEEDED_OPCODES = frozenset({Opcode.READ, Opcode.WRITE, Opcode.OPENAT, Opcode.CLOSE, Opcode.STATX,
                            Opcode.FSYNC, Opcode.ASYNC_CANCEL})
