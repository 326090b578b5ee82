"""One engine per running event loop: found or created on first use, on
io_uring or, where the kernel refuses it, on worker threads.

The backend is chosen once per process, at first use (``get_engine()`` or
``backend()``), never at import: ``RINGLET_BACKEND=threads|io_uring`` forces
one; otherwise io_uring, unless ``io_uring_setup`` fails (EPERM under a
seccomp filter such as Docker's default profile or with
``kernel.io_uring_disabled``, ENOSYS, ENOMEM, ...) or the kernel lacks an
opcode ringlet needs.  Then the thread backend (``_threads.ThreadEngine``),
which keeps the same API and contract.  ``backend()`` says which, and why.

The loop owns its engine: the engine's fd (the ring's eventfd, or the thread
engine's wake-up pipe) is watched with ``loop.add_reader`` and the reader (a ``_Watch``)
is the only strong reference from the loop side.  The engine holds just a
weak reference to the loop.  When the loop is closed it drops its readers,
the ``_Watch`` goes with them and shuts the engine down: what is in flight is
cancelled, and memory the kernel may still write is never freed under it.

An engine belongs to the thread running its loop and to the process that
made it: from another thread, or in a forked child, it raises RuntimeError.
A forked child starts with no engines (``os.register_at_fork``) and makes its
own on first use.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import platform
import threading
import weakref
from typing import Any, Callable, Optional

from . import _contract as contract
from . import _ringlet
from ._contract import NEEDED_OPCODES, Engine
from ._kernels import describe, lacking
from ._threads import ThreadEngine

__all__ = ["get_engine", "backend", "probe"]

# loop -> (weak references to its engine and to the _Watch the loop holds for it)
_engines: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[weakref.ref[Engine], weakref.ref[_Watch]]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()  # guards _engines and the choice of backend: loops may run in several threads
_current = threading.local()  # per thread: weak reference to the last engine used

# Errors of io_uring_setup after which the thread backend takes over, each
# with its own reason for backend().
_REFUSALS = {
    errno.EPERM: "refused with EPERM (seccomp, e.g. Docker's default profile, or kernel.io_uring_disabled?)",
    errno.ENOSYS: "not available (ENOSYS: a kernel without io_uring, or a seccomp filter that hides it, as gVisor's)",
    errno.ENOMEM: "out of locked memory (ENOMEM: raise RLIMIT_MEMLOCK?)",
}
# Errors of io_uring_setup that say something about this process, not about
# io_uring, named in backend() when the probe meets them.  Not refusals: an
# engine's ring failing so raises the error, as the built-in call would.
_SETUP_FAILURES = {
    errno.EMFILE: "failed with EMFILE (no descriptor left for the ring: RLIMIT_NOFILE reached)",
}

_BACKENDS = ("io_uring", "threads")

# The choice, once made.  backend is "io_uring", "threads", or "unavailable"
# (io_uring forced but refused); why is "" (io_uring, nothing forced) or the reason.
_choice: Optional[tuple[str, str, int]] = None  # (backend, why, errno), see _choose()


class _Watch:
    """The loop's reader callback for the engine's fd: drains completions.

    The loop watches a duplicate of the engine's fd, which the _Watch owns:
    engine.shutdown() closes the engine's own fd at once, and a loop must
    never be left watching a closed number (uvloop aborts, and the number
    may come back as another file).  A _Watch whose engine was shut down
    by hand takes itself off the loop the next time the fd wakes it."""

    __slots__ = ("engine", "drain", "fd", "loop", "generation", "__weakref__")

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        # The C engine wakes the tasks its drain completes from the drain itself (a loop callback).
        self.drain: Callable[[], int] = getattr(engine, "_drain_and_wake", engine.drain)
        self.fd = os.dup(engine.fileno())
        self.loop = weakref.ref(loop)
        self.generation = contract.fork_generation

    def __call__(self) -> None:
        if self.generation != contract.fork_generation:
            # A forked child running its copy of the parent's loop: the epoll
            # instance is shared with the parent, so leave everything alone.
            return
        engine = self.engine
        if engine.closed:
            loop = self.loop()
            if loop is not None:
                loop.remove_reader(self.fd)
            return
        drain = self.drain
        # The tasks the drain wakes run under this frame, and a frame of theirs
        # that outlives them keeps it: it must not keep the _Watch (whose
        # __del__ shuts the engine down once the loop lets go of it).
        del self, engine
        drain()

    def __del__(self) -> None:
        # The loop let go of its reader (loop closed, interpreter exit, or
        # the engine was shut down by hand): the engine goes too.
        try:
            self.engine.shutdown()
        except Exception:  # pragma: no cover - nothing sensible to do in __del__
            pass
        try:
            os.close(self.fd)
        except OSError:  # pragma: no cover
            pass


def get_engine() -> Engine:
    """Return the engine of the running event loop, creating it on first use.

    Raises RuntimeError when called without a running loop, and OSError when
    RINGLET_BACKEND=io_uring forces io_uring where it cannot be set up (see
    ringlet.backend())."""
    loop = asyncio.get_running_loop()
    ref: Optional[weakref.ref[Engine]] = getattr(_current, "ref", None)
    engine = ref() if ref is not None else None
    if engine is not None and engine.loop is loop and not engine.closed:
        return engine
    with _lock:
        engine_ref, watch_ref = _engines.get(loop, (None, None))
        engine = engine_ref() if engine_ref is not None else None
        if engine is None or engine.closed:
            old_watch = watch_ref() if watch_ref is not None else None
            if old_watch is not None:
                # The previous engine was shut down by hand and its loop went
                # on: stop watching its fd (a duplicate the _Watch still owns).
                loop.remove_reader(old_watch.fd)
                del old_watch
            engine = _new_engine(loop)
            try:
                watch = _Watch(engine, loop)
                loop.add_reader(watch.fd, watch)
            except BaseException:
                engine.shutdown(0)
                raise
            _engines[loop] = (weakref.ref(engine), weakref.ref(watch))
    _current.ref = weakref.ref(engine)
    return engine


def _new_engine(loop: asyncio.AbstractEventLoop) -> Engine:
    global _choice
    name, why, code = _choose()
    future_type = _future_type(loop)
    if name == "threads":
        return ThreadEngine(loop, future_type=future_type)
    if name == "unavailable":
        raise OSError(code, f"ringlet: {why}")
    try:
        return _ringlet.Engine(loop, future_type=future_type)
    except OSError as exc:
        # The probe's small ring was allowed, this one is not (RLIMIT_MEMLOCK
        # counts ring memory on older kernels): threads from now on.
        if why or exc.errno not in _REFUSALS:  # forced, or not a refusal
            raise
        _choice = ("threads", f"io_uring_setup of the engine's ring {_REFUSALS[exc.errno]}", exc.errno)
        return ThreadEngine(loop, future_type=future_type)


def _future_type(loop: asyncio.AbstractEventLoop) -> Optional[type]:
    # The stock create_future() is just Future(loop=self); calling the class
    # from C skips its Python frame.  Any other loop keeps its own method.
    if type(loop).create_future is asyncio.BaseEventLoop.create_future:
        return asyncio.Future
    return None


def _forget_engines() -> None:
    # A forked child must never touch its parent's rings: start afresh.
    global _lock
    _lock = threading.Lock()
    _engines.clear()
    _current.__dict__.clear()


os.register_at_fork(after_in_child=_forget_engines)


@functools.lru_cache(maxsize=1)
def probe() -> dict[str, Any]:
    """What this kernel allows, from a throw-away ring; {'error': errno} if refused."""
    try:
        return _ringlet.probe()
    except OSError as exc:
        return {"error": exc.errno}


def _io_uring_problem(info: dict[str, Any]) -> tuple[str, int]:
    """Why io_uring cannot serve ringlet here ('' if it can), and the errno."""
    if "error" in info:
        code = info["error"]
        why = _REFUSALS.get(code) or _SETUP_FAILURES.get(code) or f"failed with {errno.errorcode.get(code, code)}"
        return f"io_uring_setup {why}", code
    missing = [op for op in _probe_lacks(info) if op in NEEDED_OPCODES]
    if missing:  # (all of them are 5.6's: no "since" to tell)
        ops = ", ".join("IORING_OP_" + op.name for op in missing)
        return f"this kernel's io_uring lacks {ops} (Linux {platform.release()})", errno.ENOSYS
    return "", 0


def _probe_lacks(info: dict[str, Any]) -> list[contract.Opcode]:
    """The opcodes ringlet uses that the probed kernel lacks."""
    offered = frozenset(info.get("opcodes", ()))
    return lacking(offered.__contains__)


def _choose() -> tuple[str, str, int]:
    """The backend of this process: chosen at the first call, then kept."""
    global _choice
    if _choice is not None:
        return _choice
    forced = os.environ.get("RINGLET_BACKEND", "").strip()
    if forced not in ("",) + _BACKENDS:
        raise ValueError(f"RINGLET_BACKEND must be 'io_uring' or 'threads' (or unset), not {forced!r}")
    if forced == "threads":
        choice = ("threads", "forced by RINGLET_BACKEND=threads", 0)
    else:
        problem, code = _io_uring_problem(probe())
        if not problem:
            choice = ("io_uring", "forced by RINGLET_BACKEND=io_uring" if forced else "", 0)
        elif forced:
            choice = ("unavailable", f"RINGLET_BACKEND=io_uring, but {problem}", code)
        else:
            choice = ("threads", problem, code)
    _choice = choice
    return choice


def backend() -> str:
    """Name the backend in use here and why, e.g.
    'io_uring (setup flags: SINGLE_ISSUER|DEFER_TASKRUN)' or
    'threads: io_uring_setup refused with EPERM (seccomp, e.g. Docker's
    default profile, or kernel.io_uring_disabled?)'.  On io_uring, what the
    kernel lacks of the opcodes ringlet would use is named too: that work
    is done outside the ring (ftruncate in the loop's thread, the path
    operations of ringlet.os in the executor)."""
    name, why, _ = _choose()
    if name == "io_uring":
        info = probe()
        missing = _probe_lacks(info)
        lacks = f"; lacks {describe(missing)}, done outside the ring" if missing else ""
        return f"io_uring (setup flags: {info['setup_flags']}{lacks})"
    return f"{name}: {why}"
