"""One engine per running event loop: found or created on first use.

The loop owns its engine: the engine's ring fd is watched with
``loop.add_reader`` and the reader (a ``_Watch``) is the only strong
reference from the loop side.  The engine holds just a weak reference to the
loop.  When the loop is closed it drops its readers, the ``_Watch`` goes with
them and shuts the engine down: what is in flight is cancelled, and memory the
kernel may still write is never freed under it.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import threading
import weakref

from . import _ringlet

__all__ = ["get_engine", "backend", "probe"]

_engines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.ref]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()  # guards _engines: loops may run in several threads
_current = threading.local()  # per thread: weak reference to the last engine used


class _Watch:
    """The loop's reader callback for the ring fd: drains completions."""

    __slots__ = ("engine",)

    def __init__(self, engine: _ringlet.Engine) -> None:
        self.engine = engine

    def __call__(self) -> None:
        self.engine.drain()

    def __del__(self) -> None:
        # The loop let go of its reader (loop closed, or interpreter exit).
        try:
            self.engine.shutdown()
        except Exception:  # pragma: no cover - nothing sensible to do in __del__
            pass


def get_engine() -> _ringlet.Engine:
    """Return the engine of the running event loop, creating it on first use.

    Raises RuntimeError when called without a running loop, and OSError when
    io_uring cannot be set up here (see ringlet.backend()).
    """
    loop = asyncio.get_running_loop()
    ref = getattr(_current, "ref", None)
    engine = ref() if ref is not None else None
    if engine is not None and engine.loop is loop and not engine.closed:
        return engine
    with _lock:
        ref = _engines.get(loop)
        engine = ref() if ref is not None else None
        if engine is None or engine.closed:
            engine = _ringlet.Engine(loop, future_type=_future_type(loop))
            loop.add_reader(engine.fileno(), _Watch(engine))
            _engines[loop] = weakref.ref(engine)
    _current.ref = weakref.ref(engine)
    return engine


def _future_type(loop: asyncio.AbstractEventLoop) -> "type | None":
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
def probe() -> dict:
    """What this kernel allows, from a throw-away ring; {'error': ...} if refused."""
    try:
        return _ringlet.probe()
    except OSError as exc:
        return {"error": exc.errno}


_REFUSALS = {
    errno.EPERM: "refused with EPERM (seccomp, e.g. Docker's default profile, or kernel.io_uring_disabled?)",
    errno.ENOSYS: "not in this kernel (ENOSYS)",
    errno.ENOMEM: "out of locked memory (ENOMEM: raise RLIMIT_MEMLOCK?)",
}


def backend() -> str:
    """Name the backend in use here and why, e.g.
    'io_uring (setup flags: SINGLE_ISSUER|DEFER_TASKRUN)'."""
    info = probe()
    if "error" in info:
        code = info["error"]
        why = _REFUSALS.get(code, f"failed with {errno.errorcode.get(code, code)}")
        return f"unavailable: io_uring_setup {why}"
    return f"io_uring (setup flags: {info['setup_flags']})"
