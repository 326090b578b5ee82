"""The contract between ringlet's front end and its two backends.

The C engine (``ringlet._ringlet.Engine``, io_uring) and the thread engine
(``ringlet._threads.ThreadEngine``) must behave the same; this module says
what "the same" is, once: the methods (``Engine``, a Protocol the type
checker holds both to), the operation codes, the limits (exported by the C
module, never restated), the keys of stats and trace records, the messages
of the errors both raise, and the argument types shared by the front end.
``tests/test_contract.py`` drives both engines into each error and checks
the message against this module, so the C strings cannot drift.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Optional, Protocol, Sequence, Union, runtime_checkable

from . import _ringlet

if TYPE_CHECKING:
    from typing_extensions import Buffer

# The most the kernel moves in one read or write; O_DIRECT pieces; copy depth.
MAX_RW: int = _ringlet.MAX_RW
MAX_DIRECT: int = _ringlet.MAX_DIRECT
COPY_MAX_SLOTS: int = _ringlet.COPY_MAX_SLOTS
# How long completions on the loop's thread may run in one turn of the loop
# before the next task yields (both engines).
INLINE_BUDGET_NS: int = _ringlet.INLINE_BUDGET_NS

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


# ---------------------------------------------------------------------------
# operations
# ---------------------------------------------------------------------------


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

# Every IORING_OP_* in kernel order, for naming what a kernel offers (the
# index is the number; Opcode's names are these).
KERNEL_OPCODE_NAMES = (
    "NOP READV WRITEV FSYNC READ_FIXED WRITE_FIXED POLL_ADD POLL_REMOVE SYNC_FILE_RANGE SENDMSG RECVMSG "
    "TIMEOUT TIMEOUT_REMOVE ACCEPT ASYNC_CANCEL LINK_TIMEOUT CONNECT FALLOCATE OPENAT CLOSE FILES_UPDATE "
    "STATX READ WRITE FADVISE MADVISE SEND RECV OPENAT2 EPOLL_CTL SPLICE PROVIDE_BUFFERS REMOVE_BUFFERS "
    "TEE SHUTDOWN RENAMEAT UNLINKAT MKDIRAT SYMLINKAT LINKAT MSG_RING FSETXATTR SETXATTR FGETXATTR "
    "GETXATTR SOCKET URING_CMD SEND_ZC SENDMSG_ZC READ_MULTISHOT WAITID FUTEX_WAIT FUTEX_WAKE FUTEX_WAITV "
    "FIXED_FD_INSTALL FTRUNCATE BIND LISTEN RECV_ZC EPOLL_WAIT READV_FIXED WRITEV_FIXED PIPE"
).split()


def argument_type(obj: Any) -> str:
    """obj's type as CPython's argument errors name it ("None", "int",
    "array.array", a Python class's own name): its C name, which Python
    code cannot read, so taken from such an error.  For error paths only."""
    if isinstance(obj, str):
        return type(obj).__name__  # str, or a Python class made from it
    try:
        sys.intern(obj)  # Argument Clinic's check of a str argument
    except TypeError as exc:
        return str(exc).rpartition(", not ")[2]
    raise AssertionError("sys.intern took a non-str")  # pragma: no cover


def opcode_name(op: int) -> str:
    """IORING_OP_* name of an opcode number (``op<N>`` for one newer than this list)."""
    return KERNEL_OPCODE_NAMES[op] if 0 <= op < len(KERNEL_OPCODE_NAMES) else f"op{op}"


# ---------------------------------------------------------------------------
# what both engines report
# ---------------------------------------------------------------------------

# The keys of Engine.stats(), in display order.
STATS_KEYS = ("submitted", "completed", "completed_inline", "completed_nowait", "completed_nowait_sqpoll", "files_nowait", "files_chained",
              "writes_quiet", "deferred", "cancelled", "enter_calls", "ops_per_enter", "in_flight", "peak_in_flight",
              "overflowed")

# The stamps of a trace record, in the order they happen (Timeline A, then B).
STAMPS = ("submitted", "returned", "reaped", "resolved", "resumed")

# The keys of a record given to Engine.tracer.
TRACE_KEYS = ("op", "fd", "result", "inline", "nowait") + STAMPS + ("thread", "reap_thread")


# ---------------------------------------------------------------------------
# the errors both engines raise, word for word (str.format fields in braces)
# ---------------------------------------------------------------------------

ENGINE_CLOSED = "ringlet: this engine is closed"  # RuntimeError (ValueError from fileno())
FORKED = "ringlet: this engine belongs to the parent process; a forked child gets its own"
WRONG_THREAD = "ringlet: an engine may only be used from the thread running its event loop"
LOOP_GONE = "ringlet: the engine's event loop is gone"
WRONG_LOOP = ("ringlet: this file belongs to another event loop (each loop has its own engine); "
              "use it from the loop that opened it")
TRACER_NOT_CALLABLE = "tracer must be callable or None"
TIMEOUT_NAN = "timeout must be a number"
OUT_OF_RANGE = "{what} is out of range"  # OverflowError: an fd or opcode beyond 32 bits
NOT_AN_INT = "{what} must be an int, not {type}"
TOO_LARGE = "{what} must be at most {max}"
NEGATIVE_OFFSET = "negative offset"
NEGATIVE_SIZE = "size must be >= 0"
NEGATIVE_LENGTH = "negative length"
BAD_ALIGN = "align must be a power of two from 512 to 1 MiB"
DIRECT_NEEDS_OFFSET = "O_DIRECT I/O needs a file with offsets (not a stream or append mode)"
DIRECT_WRITE_UNALIGNED = "an O_DIRECT write needs offset and length multiples of {align}"
# A buffer refused, as built-in files say it: a write's is the buffer
# protocol's own error (BufferError where it is not contiguous).
NOT_A_BUFFER = "a bytes-like object is required, not '{type}'"
NOT_CONTIGUOUS = "memoryview: underlying buffer is not C-contiguous"
NOT_WRITABLE_BUFFER = "{method}() argument must be read-write bytes-like object, not {type}"  # {type}: argument_type()
PATH_NOT_BYTES = "path must be bytes, not {type}"
EMBEDDED_NULL = "embedded null byte"
COPY_LIMITS = "chunk_size must be 1..{max_rw} and depth 1..{max_slots}"
REQUESTS_NOT_SEQUENCE = "requests must be a sequence of (size, offset)"
REQUEST_NOT_TUPLE = "requests[{index}] must be a (size, offset) tuple"
REQUEST_NEGATIVE = "requests[{index}]: size and offset must be >= 0"

# TypeError for a wrong number of arguments: the method's usage.
USAGE_READ = "read(fd, size, offset=-1, align=0)"
USAGE_READINTO = "readinto(fd, buffer, offset=-1, align=0)"
USAGE_WRITE = "write(fd, data, offset=-1, align=0)"
USAGE_FSYNC = "fsync(fd, datasync=False)"
USAGE_FTRUNCATE = "ftruncate(fd, length)"
USAGE_READ_MANY = "read_many(fd, requests)"


# ---------------------------------------------------------------------------
# fork: one count for the Python side (the C module keeps its own)
# ---------------------------------------------------------------------------

# How many forks separate this process from the one that imported ringlet.
# An engine remembers the count it was made under: in a forked child it
# refuses work (FORKED), and the loop's copy of its reader leaves it alone.
fork_generation = 0


def _after_fork_in_child() -> None:
    global fork_generation
    fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------

Tracer = Callable[[dict[str, Any]], Any]


@runtime_checkable
class Engine(Protocol):
    """What the front end may call on an engine: one per event loop, used
    from that loop's thread only (``ringlet.get_engine()``).  Each operation
    returns a future of the loop; errors are the OSError subclasses os
    raises, bad arguments TypeError/ValueError with the messages above."""

    tracer: Optional[Tracer]

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]: ...
    @property
    def setup_flags(self) -> str: ...
    @property
    def closed(self) -> bool: ...

    def read(self, fd: int, size: int, offset: int = -1, align: int = 0, /) -> asyncio.Future[bytes]: ...
    def readinto(self, fd: int, buffer: Buffer, offset: int = -1, align: int = 0, /) -> asyncio.Future[int]: ...
    def write(self, fd: int, data: Buffer, offset: int = -1, align: int = 0, /) -> asyncio.Future[int]: ...
    def open(self, path: bytes, flags: int, mode: int = 0o666, filename: Any = None) -> asyncio.Future[int]: ...
    def close(self, fd: int, /) -> asyncio.Future[None]: ...
    def fsync(self, fd: int, datasync: bool = False, /) -> asyncio.Future[None]: ...
    def statx(self, target: Union[int, bytes], filename: Any = None,
              follow_symlinks: bool = True) -> asyncio.Future[os.stat_result]: ...
    def rename(self, src: bytes, dst: bytes, flags: int = 0, filename: Any = None,
               filename2: Any = None) -> asyncio.Future[None]: ...
    def unlink(self, path: bytes, rmdir: bool = False, filename: Any = None) -> asyncio.Future[None]: ...
    def mkdir(self, path: bytes, mode: int = 0o777, filename: Any = None) -> asyncio.Future[None]: ...
    def symlink(self, target: bytes, linkpath: bytes, filename: Any = None,
                filename2: Any = None) -> asyncio.Future[None]: ...
    def link(self, src: bytes, dst: bytes, follow_symlinks: bool = True, filename: Any = None,
             filename2: Any = None) -> asyncio.Future[None]: ...
    def ftruncate(self, fd: int, length: int, /) -> asyncio.Future[None]: ...
    def copy(self, src_fd: int, dst_fd: int, chunk_size: int = 1048576, depth: int = 4) -> asyncio.Future[int]: ...
    def read_many(self, fd: int, requests: Sequence[tuple[int, int]], /) -> asyncio.Future[list[bytes]]: ...

    # For ringlet's own coroutines: the io_uring engine makes no future when
    # the kernel completed inline (the thread engine returns its future).
    def _read(self, fd: int, size: int, offset: int = -1, align: int = 0, /) -> Awaitable[bytes]: ...
    # _pread: None when not called on the engine's loop (the caller raises).
    def _pread(self, fd: int, size: int, offset: int, align: int = 0, /) -> Optional[Coroutine[Any, Any, bytes]]: ...
    def _preadinto(self, fd: int, buffer: Buffer, offset: int, align: int = 0, /) -> Optional[Coroutine[Any, Any, int]]: ...
    def _readinto(self, fd: int, buffer: Buffer, offset: int = -1, align: int = 0, /) -> Awaitable[int]: ...
    def _write(self, fd: int, data: Buffer, offset: int = -1, align: int = 0, /) -> Awaitable[int]: ...
    def _open(self, path: bytes, flags: int, mode: int = 0o666, filename: Any = None) -> Awaitable[int]: ...
    # release_in_worker: the file's last release runs in a worker, not the loop's thread (for a
    # file opened for writing, whose release may wait for the device on ext4: _fdio.close_fd).
    def _close(self, fd: int, release_in_worker: bool = False, /) -> Awaitable[None]: ...
    # A descriptor the engine did not open (ringlet.open(fd), an opener): what it
    # kept of the number, which may have named another file before, is dropped.
    def _adopt(self, fd: int, /) -> None: ...
    def _read_many(self, fd: int, requests: Sequence[tuple[int, int]], /) -> Awaitable[list[bytes]]: ...
    # write_file's open (O_WRONLY|O_CREAT|O_TRUNC), write and close as one operation (the
    # io_uring engine: each completion issues the next step): its count, or None where
    # this engine has no such operation (the caller then opens, writes and closes in turn).
    # exclusive: the path likely names no file yet (O_EXCL tried first, then O_TRUNC).
    def _write_file(self, path: bytes, data: Buffer, filename: Any, exclusive: bool = False, /) -> Optional[Awaitable[int]]: ...
    # The caller awaiting the future of a _write or _write_file was cancelled, and awaits it to
    # its end all the same (_fdio.settle): a write the kernel (a worker) has not begun is
    # withdrawn and ends with ECANCELED; one stopped part-way gives what it wrote.  write_file's:
    # an open not completed yet is cancelled (nothing is written); its write lands whole.
    def _write_stop(self, future: Any, /) -> None: ...
    # Whether closing fd completes at once (a regular file of a file system without
    # flush-on-close): write_file chains a directory's files only once one said so.
    # False where _write_file makes no chain (nothing is chosen by it).
    def _closes_at_once(self, fd: int, /) -> bool: ...
    # read_file's attempt without waiting: the content (or an awaitable of it),
    # an open descriptor to finish through the engine, or None (open it there).
    def _read_file(self, path: bytes, filename: Any, /) -> Union[bytes, Awaitable[Optional[bytes]], int, None,
                                                                 tuple[int, bytes, list[Union[asyncio.Future[int], int, None]]]]: ...

    def drain(self) -> int: ...
    def shutdown(self, timeout: float = 1.0) -> int: ...
    def stats(self) -> dict[str, Union[int, float]]: ...
    def fileno(self) -> int: ...
    def supports(self, opcode: int, /) -> bool: ...
