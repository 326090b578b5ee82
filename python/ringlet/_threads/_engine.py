"""ThreadEngine: the operations of the C engine, each checked as C checks
its arguments, then started in a worker (regular files, paths) or on the
loop thread with readiness waiting (pipes, FIFOs, sockets, devices)."""

from __future__ import annotations

import asyncio
import operator
import os
import threading
from typing import Any, Callable, Coroutine, Optional, TypeVar

from .. import _contract as contract
from .._buffers import hold_buffer
from . import _args, _calls
from ._calls import kind_of
from ._core import EngineCore
from ._memory import Bounce, read_buffer, take
from ._op import Op

T = TypeVar("T")

_UNSET: Any = object()  # "argument not given" (None given means None, as in C)

# The IORING_OP_* whose work this backend does, for supports(): all ringlet uses
# (ASYNC_CANCEL: a cancelled wait is dropped).
OPCODES = frozenset(contract.Opcode)


class ThreadEngine(EngineCore):
    """ringlet's engine on worker threads and loop readiness, for one event
    loop.  Use ringlet.get_engine() rather than creating one: it also
    registers the engine's fileno() with the loop.  sq_entries is accepted
    as the C engine's (no ring here); cq_entries bounds the completions one
    callback of the loop resolves."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sq_entries: int = 256, cq_entries: int = 4096,
                 future_type: Optional[type] = None, max_workers: Optional[int] = None) -> None:
        super().__init__(loop, cq_entries, future_type, max_workers)
        # The copies not over yet and their duplicates: the engine holds the
        # tasks (a task nobody holds may be collected unfinished, its
        # descriptors never closed) and closes what a shutdown leaves.
        self._copies: dict[asyncio.Task[int], list[int]] = {}

    def shutdown(self, timeout: float = 1.0) -> int:
        """shutdown(timeout=1.0) -> int: as EngineCore.shutdown; a copy under
        way ends too (cancelled), its duplicates closed unless a worker may
        still use them.  Returns how many calls were left running."""
        running = super().shutdown(timeout)
        copies, self._copies = self._copies, {}
        for task, owned in copies.items():
            if not running:  # else a worker's next write could reach a file that took the number
                for fd in owned:
                    os.close(fd)
            try:
                task.cancel()  # (it ends at the loop's next turn)
            except RuntimeError:  # the loop is closed (this is its close): the task never runs again
                pass
        return running

    # -- read, readinto, write ----------------------------------------------

    def read(self, fd: int = _UNSET, size: int = _UNSET, offset: int = -1, align: int = 0, /,
             *more: Any) -> asyncio.Future[bytes]:
        """read(fd, size, offset=-1, align=0, /) -> Future[bytes]: up to size
        bytes at offset (-1: the file position); shorter only at end of file.
        align > 0: the descriptor is O_DIRECT; an aligned range is read into
        aligned memory and the part asked for returned."""
        if size is _UNSET or more:
            raise TypeError(contract.USAGE_READ)
        fd = _args.int32(fd, "fd")
        size = _args.size(size)
        if size < 0:
            raise ValueError(contract.NEGATIVE_SIZE)
        offset, align = _args.offset(offset), _args.align(align)
        self._check()
        size = min(size, contract.MAX_DIRECT if align else contract.MAX_RW)
        offset, moves = _args.direct_offset(fd, offset, size, align, False)
        op = Op(self, "read", fd)
        try:
            st = os.fstat(fd)
        except OSError as exc:
            return self._failed(op, exc)
        kind = kind_of(st.st_mode)
        if size == 0:
            return self._nothing_read(op, b"", offset)
        if kind != "file":
            return self.ready.start(op, st, "read", _calls.at_offset(kind, offset,
                                                                      lambda f, at: _calls.read(f, size, at)))
        if align:
            bounce = op.bounce = Bounce(offset, size, align, moves)
            op.convert = bounce.copy_out
            return self._to_pool(op, lambda: bounce.read(fd))
        # The memory is taken here, on the loop thread, and so are the bytes.
        buffer = read_buffer(size)
        op.convert = lambda n: take(buffer, n)
        return self._to_pool(op, lambda: _calls.readinto(fd, buffer, offset))

    def readinto(self, fd: int = _UNSET, buffer: Any = _UNSET, offset: int = -1, align: int = 0, /,
                 *more: Any) -> asyncio.Future[int]:
        """readinto(fd, buffer, offset=-1, align=0, /) -> Future[int]: read into
        a writable, contiguous buffer, held (not resizable) until the read is
        over, even if the wait is cancelled.  align > 0: O_DIRECT, as for read()."""
        if buffer is _UNSET or more:
            raise TypeError(contract.USAGE_READINTO)
        op, st, offset = self._buffer_op("readinto", fd, buffer, offset, align)
        if st is None:
            return op.future
        fd, kind, view = op.fd, kind_of(st.st_mode), op.view
        assert view is not None
        if len(view) == 0:
            return self._nothing_read(op, 0, offset)
        if kind != "file":
            return self.ready.start(op, st, "read",
                                    _calls.at_offset(kind, offset, lambda f, at: _calls.readinto(f, view, at)))
        bounce = op.bounce
        if bounce is not None:
            return self._to_pool(op, lambda: bounce.read_into(fd, view))
        return self._to_pool(op, lambda: _calls.readinto(fd, view, offset))

    def write(self, fd: int = _UNSET, data: Any = _UNSET, offset: int = -1, align: int = 0, /,
              *more: Any) -> asyncio.Future[int]:
        """write(fd, data, offset=-1, align=0, /) -> Future[int]: write all of
        data at offset (-1: the file position); short writes are continued,
        the result is len(data) or an OSError.  align > 0: O_DIRECT; offset and
        length must be multiples of align, and data is copied into aligned
        memory (the caller's buffer is free at once)."""
        if data is _UNSET or more:
            raise TypeError(contract.USAGE_WRITE)
        op, st, offset = self._buffer_op("write", fd, data, offset, align)
        if st is None:
            return op.future
        fd, kind = op.fd, kind_of(st.st_mode)
        if kind != "file":
            at = -1 if kind == "stream" else offset
            return self.ready.start(op, st, "write", lambda f: _calls.write_all(op, f, at))
        key = (st.st_dev, st.st_ino)  # writes to one file are made in order, as io_uring does
        bounce = op.bounce
        if bounce is not None:
            assert op.view is not None
            length = len(op.view)
            bounce.view[:length] = op.view
            op.release_caller()  # copied: the caller's buffer is free at once
            op.view = bounce.view[:length]
            return self._to_pool(op, lambda: bounce.write(op, fd), key)
        return self._to_pool(op, lambda: _calls.write_all(op, fd, offset), key)

    def _nothing_read(self, op: Op, value: Any, offset: int) -> asyncio.Future[Any]:
        """A read of 0 bytes: the kernel's answer (EBADF, EISDIR) at once, as
        os.read's; a wait for readiness would wait for a FIFO's data."""
        try:
            _calls.read(op.fd, 0, offset)
        except OSError as exc:
            return self._failed(op, exc)
        return self._done_now(op, value)

    def _buffer_op(self, name: str, fd: Any, obj: Any, offset: Any, align: Any) -> tuple[Op, Any, int]:
        """What readinto and write share: the arguments checked, the caller's
        buffer held, the file looked at, O_DIRECT memory taken.  Returns
        (op, stat of fd, offset); stat None: the op failed already (op.future)."""
        fd = _args.int32(fd, "fd")
        offset, align = _args.offset(offset), _args.align(align)
        self._check()
        write = name == "write"
        op = Op(self, name, fd)
        op.holder, op.view = hold_buffer(obj, not write, name)
        try:
            length = len(op.view)
            if not write:  # a read may be short; a write goes on past the cap
                length = min(length, contract.MAX_DIRECT if align else contract.MAX_RW)
            offset, moves = _args.direct_offset(fd, offset, length, align, write)
            st = os.fstat(fd)
            if align and kind_of(st.st_mode) == "file":
                op.bounce = Bounce(offset, length, align, moves)
        except OSError as exc:
            self._failed(op, exc)
            return op, None, offset
        except BaseException:
            op.release()
            raise
        return op, st, offset

    # -- descriptors and paths ---------------------------------------------

    def open(self, path: bytes, flags: int, mode: int = 0o666, filename: Any = _UNSET) -> asyncio.Future[int]:
        """open(path, flags, mode=0o666, filename=None) -> Future[int]: openat(2)
        in a worker, never blocking on a FIFO.  OSError carries filename
        (default: path).  If the wait is cancelled and the open still succeeds,
        the descriptor is closed."""
        path = _args.path(path)
        flags, mode = _args.c_int(flags), _args.c_int(mode)
        self._check()
        op = Op(self, "open", -1, path if filename is _UNSET else filename)
        return self._to_pool(op, lambda: _calls.open_now(path, flags, mode))

    def close(self, fd: int, /) -> asyncio.Future[None]:
        """close(fd, /) -> Future[None]: close(2), once the operations already
        started on fd in a worker are over.  Operations waiting on the file (a
        pipe, say) go on: they hold a descriptor of their own.  Cancelling the
        wait does not stop the close."""
        fd = _args.int32(fd, "fd")
        self._check()
        op = Op(self, "close", fd)
        if fd in self._fd_users:
            return self._close_in_pool(op, lambda: os.close(fd))
        try:
            kind = kind_of(os.fstat(fd).st_mode)
        except OSError as exc:
            return self._failed(op, exc)
        if kind == "file":
            return self._close_in_pool(op, lambda: os.close(fd))
        self._begin(op)
        op.ran = True
        try:
            os.close(fd)
        except OSError as exc:
            op.error = exc.errno
        self._finish(op, inline=True)
        return self._returned(op)

    def fsync(self, fd: int = _UNSET, datasync: bool = False, /, *more: Any) -> asyncio.Future[None]:
        """fsync(fd, datasync=False, /) -> Future[None]: fsync(2), or fdatasync(2)."""
        if fd is _UNSET or more:
            raise TypeError(contract.USAGE_FSYNC)
        fd = _args.int32(fd, "fd")
        call = os.fdatasync if datasync else os.fsync
        self._check()
        return self._to_pool(Op(self, "fsync", fd), lambda: call(fd))

    def statx(self, target: Any, filename: Any = _UNSET,
              follow_symlinks: bool = True) -> asyncio.Future[os.stat_result]:
        """statx(target, filename=None, follow_symlinks=True) -> Future[os.stat_result]:
        target is a descriptor (int) or a path (bytes)."""
        follow = bool(follow_symlinks)
        if isinstance(target, int):
            fd = _args.int32(target, "fd")
            self._check()
            op = Op(self, "statx", fd, None if filename is _UNSET else filename)
            return self._to_pool(op, lambda: os.fstat(fd))
        path = _args.path(target)
        self._check()
        op = Op(self, "statx", _calls.AT_FDCWD, path if filename is _UNSET else filename)
        return self._to_pool(op, lambda: os.stat(path, follow_symlinks=follow))

    def _path_op(self, name: str, work: Callable[[], Any], path: bytes, path2: Optional[bytes], filename: Any,
                 filename2: Any) -> asyncio.Future[None]:
        self._check()
        op = Op(self, name, -1, path if filename is _UNSET else filename,
                None if path2 is None else (path2 if filename2 is _UNSET else filename2))
        return self._to_pool(op, work)

    def rename(self, src: bytes, dst: bytes, flags: int = 0, filename: Any = _UNSET,
               filename2: Any = _UNSET) -> asyncio.Future[None]:
        """rename(src, dst, flags=0, filename=None, filename2=None) -> Future[None]:
        renameat2(2) (flags: RENAME_NOREPLACE=1, RENAME_EXCHANGE=2)."""
        flags = _args.uint32(flags, "flags")
        src, dst = _args.path(src), _args.path(dst)
        work = (lambda: os.rename(src, dst)) if flags == 0 else (lambda: _calls.renameat2(src, dst, flags))
        return self._path_op("rename", work, src, dst, filename, filename2)

    def unlink(self, path: bytes, rmdir: bool = False, filename: Any = _UNSET) -> asyncio.Future[None]:
        """unlink(path, rmdir=False, filename=None) -> Future[None]: unlinkat(2)."""
        call = os.rmdir if rmdir else os.unlink
        path = _args.path(path)
        return self._path_op("unlink", lambda: call(path), path, None, filename, None)

    def mkdir(self, path: bytes, mode: int = 0o777, filename: Any = _UNSET) -> asyncio.Future[None]:
        """mkdir(path, mode=0o777, filename=None) -> Future[None]: mkdirat(2)."""
        mode = _args.c_int(mode)
        path = _args.path(path)
        return self._path_op("mkdir", lambda: os.mkdir(path, mode), path, None, filename, None)

    def symlink(self, target: bytes, linkpath: bytes, filename: Any = _UNSET,
                filename2: Any = _UNSET) -> asyncio.Future[None]:
        """symlink(target, linkpath, filename=None, filename2=None) -> Future[None]: symlinkat(2)."""
        target, linkpath = _args.path(target), _args.path(linkpath)
        return self._path_op("symlink", lambda: os.symlink(target, linkpath), target, linkpath, filename,
                             filename2)

    def link(self, src: bytes, dst: bytes, follow_symlinks: bool = True, filename: Any = _UNSET,
             filename2: Any = _UNSET) -> asyncio.Future[None]:
        """link(src, dst, follow_symlinks=True, filename=None, filename2=None) -> Future[None]: linkat(2)."""
        follow = bool(follow_symlinks)
        src, dst = _args.path(src), _args.path(dst)
        if follow:
            work: Callable[[], None] = lambda: _calls.link_following(src, dst)  # noqa: E731
        else:
            work = lambda: os.link(src, dst, follow_symlinks=False)  # noqa: E731
        return self._path_op("link", work, src, dst, filename, filename2)

    def ftruncate(self, fd: int = _UNSET, length: int = _UNSET, /, *more: Any) -> asyncio.Future[None]:
        """ftruncate(fd, length, /) -> Future[None]: ftruncate(2)."""
        if length is _UNSET or more:
            raise TypeError(contract.USAGE_FTRUNCATE)
        fd = _args.int32(fd, "fd")
        length = _args.int64(length)
        if length < 0:
            raise ValueError(contract.NEGATIVE_LENGTH)
        self._check()
        return self._to_pool(Op(self, "ftruncate", fd), lambda: os.ftruncate(fd, length))

    # -- composite operations ----------------------------------------------

    def copy(self, src_fd: int, dst_fd: int, chunk_size: int = 1048576, depth: int = 4) -> asyncio.Future[int]:
        """copy(src_fd, dst_fd, chunk_size=1048576, depth=4) -> Future[int]:
        copy src to dst from offset 0 until end of file; the result is the
        number of bytes copied.  Regular files: copy_file_range(2) on a worker
        (a copy in the kernel, or shared extents); else, or where it is
        refused, chunk by chunk (each read, then its write).  The copy keeps its
        two files until it ends: it works on duplicates of the descriptors,
        made before it returns, so a close of either number after the call
        neither stops it nor sends it to a file opened on the number.  It is
        one operation in flight until it ends, as the ring's copy is."""
        src_fd, dst_fd = _args.c_int(src_fd), _args.c_int(dst_fd)
        chunk, depth = _args.uint32(chunk_size, "chunk_size"), _args.uint32(depth, "depth")
        if chunk == 0 or chunk > contract.MAX_RW or depth == 0 or depth > contract.COPY_MAX_SLOTS:
            raise ValueError(contract.COPY_LIMITS.format(max_rw=contract.MAX_RW, max_slots=contract.COPY_MAX_SLOTS))
        self._check()
        owned: list[int] = []
        try:
            for fd in (src_fd, dst_fd):
                owned.append(os.dup(fd))  # EBADF raised here, as the ring's copy raises it
                self._adopt(owned[-1])
            task = self._task(self._copy(owned[0], owned[1], chunk))
        except BaseException:
            for fd in owned:
                os.close(fd)
            raise
        self._count_in_flight()
        self._copies[task] = owned
        task.add_done_callback(self._copy_ended)
        return task

    def _copy_ended(self, task: asyncio.Task[int]) -> None:
        """A copy is over: out of flight, and its duplicates closed if its own
        finally did not close them (a task cancelled before its first step
        never runs it)."""
        self._in_flight -= 1
        self._close_copy_fds(task)

    def _close_copy_fds(self, task: asyncio.Task[int]) -> list[asyncio.Future[None]]:
        """The closes of a copy's duplicates (none if a shutdown took them): in
        a worker, as close() does (a regular file's last release may start its
        writeback), once the operations begun on them there are over."""
        closes = []
        for fd in self._copies.pop(task, ()):
            try:
                closes.append(self.close(fd))
            except RuntimeError:  # closed without a shutdown (in a forked child): nobody else will
                os.close(fd)
        return closes

    async def _copy(self, src_fd: int, dst_fd: int, chunk: int) -> int:
        task = asyncio.current_task()
        assert task is not None
        try:
            copied = await self._copy_data(src_fd, dst_fd, chunk)
        finally:  # closed before the caller resumes: a copy that has ended holds nothing
            closes = self._close_copy_fds(task)
            # None when a shutdown took them: then the task may be being destroyed, its loop
            # closed, where gather() of nothing would make the thread a new event loop.
            closed = await asyncio.gather(*closes, return_exceptions=True) if closes else []
        for outcome in closed:  # the last close of a file may report its writeback's error
            if isinstance(outcome, BaseException):
                raise outcome
        return copied

    async def _copy_data(self, src_fd: int, dst_fd: int, chunk: int) -> int:
        copied = 0
        if _calls.kernel_copy_suits(src_fd, dst_fd):  # in the kernel, on a worker, range by range
            while True:
                at = copied
                n = await self._to_pool(Op(self, "copy_file_range", src_fd),
                                        lambda: _calls.kernel_copy(src_fd, dst_fd, at))
                if n is None:
                    break  # refused: read and write (from offset 0: nothing was copied)
                if n == 0:
                    return copied
                copied += n
        while True:  # a device's reads and writes on the loop's thread yield once the turn's budget is spent
            data = await self.read(src_fd, chunk, copied)
            if not data:
                return copied
            await self.write(dst_fd, data, copied)
            copied += len(data)

    def _task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        loop = self._loop_ref()
        if loop is None:
            coro.close()
            raise RuntimeError(contract.LOOP_GONE)
        return loop.create_task(coro)

    def read_many(self, fd: int = _UNSET, requests: Any = _UNSET, /, *more: Any) -> asyncio.Future[list[bytes]]:
        """read_many(fd, requests, /) -> Future[list[bytes]]: positional reads
        [(size, offset), ...], in one worker's turn; the bytes in request
        order.  If any read fails, the first error is raised once all are over."""
        if requests is _UNSET or more:
            raise TypeError(contract.USAGE_READ_MANY)
        fd = _args.int32(fd, "fd")
        items = _args.request_list(requests)
        self._check()
        checked = _args.read_requests(items)
        op = Op(self, "read_many", fd)
        if not checked:
            return self._done_now(op, [])
        try:
            kind = kind_of(os.fstat(fd).st_mode)
        except OSError as exc:
            return self._failed(op, exc)
        if kind != "file":
            return self._task(self._read_each(fd, checked))
        buffers = [read_buffer(size) for size, _ in checked]  # on the loop thread: see read()
        op.convert = lambda counts: [take(b, n) for b, n in zip(buffers, counts)]
        offsets = [offset for _, offset in checked]
        return self._to_pool(op, lambda: _calls.pread_all(fd, buffers, offsets))

    async def _read_each(self, fd: int, requests: list[tuple[int, int]]) -> list[bytes]:
        """read_many on a pipe or device: all the reads wait at once, served in order."""
        futures = [self.read(fd, size, offset) for size, offset in requests]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        results: list[bytes] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
        return results

    # ringlet's own coroutines call these; here they simply return futures.
    _read = read
    _readinto = readinto

    def _on_its_loop(self) -> bool:
        """Whether the caller runs on this engine's thread, its loop running."""
        return self._thread == threading.get_ident() and asyncio.events._get_running_loop() is self._loop_ref()

    def _pread(self, fd: int, size: int, offset: int, align: int = 0, /) -> Optional[Coroutine[Any, Any, bytes]]:
        """AsyncFile.pread's entry: a coroutine, as the C engine's _pread; None
        when not called on this engine's loop (the caller raises)."""
        if not self._on_its_loop():
            return None
        return self._pread_on_loop(fd, size, offset, align)

    async def _pread_on_loop(self, fd: int, size: int, offset: int, align: int = 0, /) -> bytes:
        size, offset = operator.index(size), _args.positional_offset(offset)  # any __index__, as os.pread
        return await self.read(fd, size, offset, align)

    def _preadinto(self, fd: int, buffer: Any, offset: int, align: int = 0, /) -> Optional[Coroutine[Any, Any, int]]:
        """AsyncFile.preadinto's entry: a coroutine, as the C engine's; None
        when not called on this engine's loop (the caller raises)."""
        if not self._on_its_loop():
            return None
        return self._preadinto_on_loop(fd, buffer, offset, align)

    async def _preadinto_on_loop(self, fd: int, buffer: Any, offset: int, align: int = 0, /) -> int:
        return await self.readinto(fd, buffer, _args.positional_offset(offset), align)

    _write = write
    _open = open

    def _read_file(self, path: bytes, filename: Any, /) -> None:
        """read_file's attempt without waiting: none here (every open goes to a worker)."""
        return None

    def _write_file(self, path: bytes, data: Any, filename: Any, exclusive: bool = False, /) -> None:
        """write_file as one operation: not here (the caller opens, writes and closes in turn)."""
        return None

    def _write_stop(self, future: Any, /) -> None:
        """The caller awaiting this write was cancelled, and awaits it to its
        end all the same: a write still waiting for a worker (behind another
        write to the same file) is withdrawn and ends with ECANCELED, nothing
        written; one a worker has begun lands whole."""
        for op in self.pool.waiting():
            if op.future is future:
                self._cancel(op)
                return

    def _closes_at_once(self, fd: int, /) -> bool:
        """False: nothing here is chosen by it (_write_file makes no chain)."""
        return False

    def _close(self, fd: int, release_in_worker: bool = False, /) -> asyncio.Future[None]:
        """close(): a regular file's close, and so its release, runs in a worker here anyway."""
        return self.close(fd)

    _read_many = read_many

    def _adopt(self, fd: int, /) -> None:
        """A descriptor the engine did not open: its number may have been
        closed through the engine before, by a close whose completion has not
        been delivered yet; operations on the new file are not turned away."""
        self._number_reused(fd)

    def supports(self, opcode: int, /) -> bool:
        """supports(opcode, /) -> bool: whether this backend does the work of IORING_OP_<opcode>."""
        return _args.int32(opcode, "opcode") in OPCODES


# The type checker holds ThreadEngine to the contract (tests/test_contract.py at run time).
_IS_AN_ENGINE: type[contract.Engine] = ThreadEngine
