"""Shared fixtures for the ringlet test suite.

Plain pytest: every test drives its coroutine with the ``run`` fixture
(``asyncio.run`` under the hood), no pytest-asyncio.  Every test runs once
per backend, io_uring and the thread fallback (the ``backend`` fixture).

The folders follow python/ringlet: engine/ (the backend choice, get_engine,
the engine's life: shutdown, fork, threads, loops, fairness, leaks; the
fuzzer of its raw entry points), threads/
(the thread fallback built by hand), file/ (open, the binary, text and line
APIs, errors, bad input, cancellation, O_DIRECT), os/ (ringlet.os), trace/,
cliff/, load/ (load, soak, fault injection), examples/ (the notebooks and
examples), tempfile/ (ringlet.tempfile), integrations/ (the web frameworks).
C tests: c/; the seccomp launcher: seccomp/.

Per-test timeouts: every test gets ``@pytest.mark.timeout(DEFAULT_TIMEOUT)``
unless it carries its own marker.  pytest-timeout enforces it when installed;
otherwise a SIGALRM fallback in this file does.
"""

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import io
import mmap
import os
import platform
import signal
import stat
import struct
import time
from pathlib import Path
from types import ModuleType
from typing import Any, AsyncIterator, Dict, Iterable, List, Mapping, Optional, Tuple

import pytest

try:
    import pytest_timeout  # noqa: F401

    HAVE_PYTEST_TIMEOUT = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_PYTEST_TIMEOUT = False

DEFAULT_TIMEOUT = 30

# Sizes around the page boundary plus one large, odd-sized file.
SIZES = [0, 1, 4095, 4096, 4097, 3 * 1024 * 1024 + 7]
SIZE_IDS = ["0", "1", "4095", "4096", "4097", "3MiB+7"]


# --------------------------------------------------------------------------
# timeouts
# --------------------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "timeout(seconds): per-test timeout (pytest-timeout or SIGALRM fallback)"
    )
    config.addinivalue_line("markers", "backends(*names): the test is about these backends only (see `backend`)")
    config.addinivalue_line(
        "markers", "own_backend: the test sets up its backend itself; it runs once, without a backend parameter"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


if not HAVE_PYTEST_TIMEOUT:

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item):
        marker = item.get_closest_marker("timeout")
        seconds = marker.args[0] if marker and marker.args else DEFAULT_TIMEOUT

        def _alarm(signum, frame):
            pytest.fail(f"test timed out after {seconds}s (SIGALRM fallback)", pytrace=True)

        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------
# the package under test
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ringlet():
    """The package under test.  Import failure is an error, never a skip."""
    import ringlet as _ringlet

    return _ringlet


# --------------------------------------------------------------------------
# the backend: a parameter of every test
# --------------------------------------------------------------------------
#
# One pytest run covers both backends: every test runs once per backend, and
# its id says which (test_x[io_uring], test_x[threads]).  Engines are per
# loop and each test runs its own loops, so the backend is set per test: the
# `backend` fixture makes ringlet choose again with RINGLET_BACKEND set to the
# parameter (ringlet._engine._choose() caches its choice in _engine._choice;
# the fixture clears it before and restores it after).  RINGLET_BACKEND stays
# set for the test, so a subprocess it starts runs on the same backend.
#
# A test about one backend only says so, and gets only that parameter:
#   @pytest.mark.backends("io_uring")   (or a require_io_uring argument)
#   @pytest.mark.backends("threads")    (or a require_threads argument)
# A test that sets up its backend itself (subprocesses with an environment of
# their own, engines built by hand) is marked @pytest.mark.own_backend: it
# runs once, without a backend parameter, on ringlet's own choice.
#
# --backend=auto (make test's seccomp pass) parametrizes nothing: ringlet
# chooses by itself, as it does for a user, and the ids say [auto].

BACKENDS = ("io_uring", "threads")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend", action="append", choices=BACKENDS + ("auto",), default=None,
        help="backend(s) to run every test on (repeatable; default: io_uring and threads); "
        "'auto': leave the choice to ringlet",
    )


def _wanted_backends(config: pytest.Config) -> Tuple[str, ...]:
    return tuple(config.getoption("backend") or BACKENDS)


def _allowed_backends(definition: pytest.Item, fixturenames: Iterable[str]) -> List[str]:
    """The backends a test is about: its backends marker, its require_* fixture, or both."""
    allowed = set(BACKENDS)
    marker = definition.get_closest_marker("backends")
    if marker is not None:
        unknown = set(marker.args) - set(BACKENDS)
        if unknown or not marker.args:
            raise pytest.UsageError(f"{definition.nodeid}: backends() takes names from {BACKENDS}, not {marker.args}")
        allowed &= set(marker.args)
    if "require_io_uring" in fixturenames:
        allowed &= {"io_uring"}
    if "require_threads" in fixturenames:
        allowed &= {"threads"}
    return [name for name in BACKENDS if name in allowed]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("own_backend"):
        return
    wanted = _wanted_backends(metafunc.config)
    if "auto" in wanted:
        metafunc.parametrize("backend", ["auto"], indirect=True)
        return
    allowed = _allowed_backends(metafunc.definition, metafunc.fixturenames)
    if not allowed:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: its markers and fixtures allow no backend")
    params: List[Any] = [name for name in wanted if name in allowed]
    if not params:  # e.g. an io_uring-only test in a --backend=threads run: say so
        params = [pytest.param(name, marks=pytest.mark.skip(reason=f"about {name} only; this run: --backend "
                                                                   f"{' '.join(wanted)}")) for name in allowed]
    metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Optional[str]:
    """The backend this test runs on ("io_uring" or "threads"), chosen afresh
    for it; None for a test marked own_backend.  Where io_uring cannot be set
    up, the io_uring parameter skips with ringlet's reason."""
    from ringlet import _engine

    param = getattr(request, "param", None)
    if param is None:  # own_backend: leave ringlet's choice alone
        return None
    if param == "auto":
        name = _engine._choose()[0]
        allowed = _allowed_backends(request.node, request.fixturenames)
        if name not in allowed:
            pytest.skip(f"about {' and '.join(allowed)} only; ringlet chose here: {ringlet_backend()}")
        return name
    monkeypatch.setenv("RINGLET_BACKEND", param)
    monkeypatch.setattr(_engine, "_choice", None)
    name, why, _ = _engine._choose()
    if name != param:
        pytest.skip(f"{param} cannot be set up here: {why}")
    return name


# --------------------------------------------------------------------------
# an older kernel, emulated
# --------------------------------------------------------------------------
#
# RINGLET_TEST_KERNEL=5.11 (a release of ringlet._kernels.KERNEL_OPCODE_COUNTS)
# runs the tests as if on that kernel's io_uring: every ring set up in this
# process (the probe's and each engine's) reports only that release's
# opcodes, and an SQE of another one fails with EINVAL as that kernel fails
# an opcode it does not know (ringlet._ringlet._restrict_opcodes).  ringlet
# must then route that work around the ring and still give os's results.
# Subprocesses a test starts see the real kernel.

TEST_KERNEL = os.environ.get("RINGLET_TEST_KERNEL") or None


def emulate_kernel(kernel: Optional[str]) -> None:
    """Make rings set up from now on look like Linux ``kernel``'s (None: this
    kernel's), and let ringlet probe again."""
    from ringlet import _engine, _kernels, _ringlet

    _ringlet._restrict_opcodes(None if kernel is None else _kernels.opcodes_of(kernel))
    _engine.probe.cache_clear()


def pytest_sessionstart(session: pytest.Session) -> None:
    if TEST_KERNEL is not None:
        emulate_kernel(TEST_KERNEL)


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    if TEST_KERNEL is None:
        return None
    return f"RINGLET_TEST_KERNEL={TEST_KERNEL}: io_uring limited to Linux {TEST_KERNEL}'s opcodes"


def ringlet_backend() -> str:
    """ringlet.backend() of the running test, for messages."""
    import ringlet

    try:
        return ringlet.backend()
    except Exception as exc:  # noqa: BLE001 - a message, whatever happened
        return f"ringlet.backend() raised {type(exc).__name__}: {exc}"


@pytest.fixture
def backend_name(ringlet: ModuleType, backend: Optional[str]) -> str:
    """ringlet.backend() for this test's backend, or a skip with the reason."""
    try:
        name: str = ringlet.backend()
    except Exception as exc:  # noqa: BLE001 - we want the reason in the skip
        pytest.skip(f"ringlet.backend() raised {type(exc).__name__}: {exc}")
    return name


@pytest.fixture
def require_io_uring(backend_name: str) -> str:
    """For what only io_uring does (inline completions and the ring's
    counters, no thread for I/O, the C engine's own types): such a test gets
    only the io_uring parameter (see pytest_generate_tests)."""
    if not backend_name.startswith("io_uring"):
        pytest.skip(f"io_uring-specific; ringlet runs on its fallback here: backend() = {backend_name!r}")
    return backend_name


@pytest.fixture
def require_threads(backend_name: str) -> str:
    """For the fallback's own promises, through the public API: such a test
    gets only the threads parameter."""
    if not backend_name.startswith("threads"):
        pytest.skip(f"checks the thread fallback; ringlet runs on io_uring here: backend() = {backend_name!r}")
    return backend_name


# --------------------------------------------------------------------------
# running coroutines
# --------------------------------------------------------------------------


# RINGLET_TEST_LOOP=uvloop runs the suite on uvloop: the run fixture makes
# uvloop loops, and so does every asyncio.run() and asyncio.new_event_loop()
# in the tests (the event loop policy is uvloop's).  Unset or "asyncio": the
# stock loop.
TEST_LOOP = os.environ.get("RINGLET_TEST_LOOP") or "asyncio"


def _test_loop_factory():
    if TEST_LOOP == "asyncio":
        return None
    if TEST_LOOP != "uvloop":
        raise pytest.UsageError(f"RINGLET_TEST_LOOP must be 'asyncio' or 'uvloop', not {TEST_LOOP!r}")
    try:
        import uvloop
    except ImportError as exc:
        raise pytest.UsageError(f"RINGLET_TEST_LOOP=uvloop, but uvloop cannot be imported: {exc}") from None
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # The first uvloop loop of a process opens a pipe that stays for good:
    # open it now, so that no test counts it as a descriptor leak.
    uvloop.new_event_loop().close()
    return uvloop.new_event_loop


LOOP_FACTORY = _test_loop_factory()


def asyncio_run(coro):
    """asyncio.run(coro) on the loop RINGLET_TEST_LOOP names."""
    if LOOP_FACTORY is not None and hasattr(asyncio, "Runner"):
        with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
            return runner.run(coro)
    return asyncio.run(coro)  # the policy makes the loop


@pytest.fixture
def run():
    """``run(coro)`` -> result, on a fresh event loop (asyncio.run; uvloop
    with RINGLET_TEST_LOOP=uvloop)."""

    def _run(aw):
        if not asyncio.iscoroutine(aw):
            # e.g. a Future-returning call made inside a running loop elsewhere
            async def _wrap():
                return await aw

            return asyncio_run(_wrap())
        return asyncio_run(aw)

    return _run


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------


def write_os(path, data):
    """Write ``data`` to ``path`` with plain os calls (the reference)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def read_os(path):
    """Read all of ``path`` with plain os calls (the reference)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@pytest.fixture
def make_file(tmp_path):
    """``make_file(size_or_bytes, name=None)`` -> (str path, data) of a file with random content."""
    counter = iter(range(1_000_000))

    def _make(content, name=None):
        data = os.urandom(content) if isinstance(content, int) else bytes(content)
        path = tmp_path / (name or f"file{next(counter)}.bin")
        write_os(path, data)
        return str(path), data

    return _make


@pytest.fixture(params=SIZES, ids=SIZE_IDS)
def size(request):
    return request.param


@pytest.fixture
def sized_file(make_file, size):
    """(path, data) of a random file of each size in SIZES."""
    return make_file(size)


@pytest.fixture
def fifo(tmp_path):
    """Path (str) of a fresh FIFO."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    return str(path)


# --------------------------------------------------------------------------
# helpers usable from tests (import from conftest)
# --------------------------------------------------------------------------


def fd_count():
    return len(os.listdir("/proc/self/fd"))


async def wait_until(predicate, timeout=20.0, interval=0.005):
    """Poll ``predicate()`` with asyncio.sleep until true; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(interval)


async def settled(engine: Any = None, timeout: float = 20.0) -> None:
    """Until the engine (the running loop's by default) has nothing in flight,
    or is closed: a cancelled call's kernel or worker work may end after its
    task, holding its buffer until then.  The bound only catches a hang (a
    2 GiB read cancelled in a worker takes seconds on a loaded machine)."""
    if engine is None:
        import ringlet

        engine = ringlet.get_engine()
    assert await wait_until(lambda: engine.closed or not engine.stats()["in_flight"], timeout), \
        f"still in flight after {timeout} s: {engine.stats()}"


async def open_fifo_writer(path, timeout=3.0):
    """Open the write end of a FIFO without blocking the loop.

    O_WRONLY|O_NONBLOCK fails with ENXIO until some reader has the FIFO open
    (for instance a reader whose open is pending in the kernel); retry until
    then.  The returned fd is switched back to blocking mode.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.002)
            continue
        os.set_blocking(fd, True)
        return fd


async def feed_pipe(wfd, data):
    """Write data into a pipe's write end from the loop as its reader takes
    it (the descriptor made non-blocking), then close it."""
    view = memoryview(data)
    try:
        os.set_blocking(wfd, False)
        while view:
            try:
                view = view[os.write(wfd, view):]
            except BlockingIOError:
                await asyncio.sleep(0.001)
    finally:
        os.close(wfd)


# --------------------------------------------------------------------------
# fixtures for the robustness tests (full disk, bad input in a subprocess)
# --------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """Path (str) of a freshly mounted 1 MiB tmpfs, unmounted afterwards.

    Needs root (or CAP_SYS_ADMIN); otherwise the test is skipped with the
    exact reason mount gave."""
    import shutil
    import subprocess

    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command here")
    where = tmp_path / "tmpfs-1m"
    where.mkdir()
    proc = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", str(where)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        pytest.skip(f"cannot mount a 1 MiB tmpfs (uid {os.getuid()}): mount: {reason}")
    try:
        yield str(where)
    finally:
        umount = subprocess.run(["umount", str(where)], capture_output=True, text=True)
        if umount.returncode != 0:  # something still holds it open: detach lazily
            subprocess.run(["umount", "-l", str(where)], capture_output=True, text=True)


class StalledPage:
    """One page of memory that stalls the first thread touching it until
    release(): userfaultfd(2), missing mode.  A write whose data is this
    page waits inside the kernel (its copy from the page faults) for as
    long as the test wants: a write the kernel has begun and cannot finish."""

    _SYSCALL = {"x86_64": 323, "aarch64": 282}
    _API, _REGISTER, _COPY = 0xC018AA3F, 0xC020AA00, 0xC028AA03  # UFFDIO_* ioctls
    size = mmap.PAGESIZE

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        number = self._SYSCALL.get(platform.machine())
        if number is None:
            raise OSError(errno.ENOSYS, f"no userfaultfd syscall number known for {platform.machine()}")
        fd = libc.syscall(ctypes.c_long(number), ctypes.c_int(os.O_CLOEXEC | os.O_NONBLOCK))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = fd
        self.memory = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._anchor = ctypes.c_char.from_buffer(self.memory)  # its address; keeps it mapped
        self.address = ctypes.addressof(self._anchor)
        fcntl.ioctl(fd, self._API, bytearray(struct.pack("QQQ", 0xAA, 0, 0)))
        fcntl.ioctl(fd, self._REGISTER, bytearray(struct.pack("QQQQ", self.address, self.size, 1, 0)))

    async def touched(self) -> None:
        """Until a thread (a kernel worker, a pool thread) waits on the page."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                os.read(self.fd, 32)  # a struct uffd_msg: the fault
                return
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_reader(self.fd, lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    loop.remove_reader(self.fd)

    def release(self, content: bytes) -> None:
        """Fill the page with content; whoever waits on it goes on."""
        source = ctypes.create_string_buffer(content, self.size)
        copy = struct.pack("QQQQq", self.address, ctypes.addressof(source), self.size, 0, 0)
        try:
            fcntl.ioctl(self.fd, self._COPY, bytearray(copy))
        except FileExistsError:
            pass  # filled already (by the test, or the guard)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def stalled_page():
    """A StalledPage, released (zeros) at teardown and, as a guard, after
    20 s: a test that went wrong fails instead of hanging a thread.  Skipped
    with the reason where userfaultfd(2) is refused (seccomp, no privilege)."""
    import threading

    try:
        page = StalledPage()
    except OSError as exc:
        pytest.skip(f"userfaultfd(2) refused here (uid {os.getuid()}): {exc}")
    guard = threading.Timer(20, page.release, (bytes(page.size),))
    guard.start()
    try:
        yield page
    finally:
        guard.cancel()
        page.release(bytes(page.size))
        page.close()


@pytest.fixture
def run_python(tmp_path):
    """``run_python(source, timeout=60)`` runs ``source`` in a fresh interpreter
    (same sys.path, cwd tmp_path) and returns the CompletedProcess.  A death
    by signal fails the calling test with the signal's name and the output,
    so a crash is reported as a failure instead of ending the test run."""
    import signal as _signal
    import subprocess
    import sys

    def _run(source, timeout=60):
        env = child_env()
        env.setdefault("PYTHONFAULTHANDLER", "1")
        proc = subprocess.run(
            [sys.executable, "-c", source], cwd=str(tmp_path), env=env,
            capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode < 0:
            try:
                name = _signal.Signals(-proc.returncode).name
            except ValueError:
                name = f"signal {-proc.returncode}"
            pytest.fail(
                f"the interpreter died with {name}\n--- stdout ---\n{proc.stdout[-4000:]}"
                f"\n--- stderr ---\n{proc.stderr[-4000:]}",
                pytrace=False,
            )
        return proc

    return _run


@contextlib.asynccontextmanager
async def watched(engine: Any) -> AsyncIterator[Any]:
    """An engine built by hand on the running loop, drained as get_engine()
    drains one; shut down at the end."""
    loop = asyncio.get_running_loop()
    fd = engine.fileno()
    loop.add_reader(fd, engine.drain)
    try:
        yield engine
    finally:
        loop.remove_reader(fd)
        engine.shutdown()


def thread_engine(**kwargs: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    """A ThreadEngine (ThreadEngine's keyword arguments) on the running loop,
    watched (for tests of the fallback built by hand)."""
    from ringlet._threads import ThreadEngine

    return watched(ThreadEngine(asyncio.get_running_loop(), **kwargs))


def child_env(base: Optional[Mapping[str, str]] = None, **extra: str) -> Dict[str, str]:
    """The environment for a subprocess of a test (run with sys.executable):
    it imports the ringlet under test, wherever that is (the .venv install,
    or the sanitizer or fault-injection build on PYTHONPATH), because it gets
    this process's sys.path, made absolute (the child may run elsewhere).
    ``base`` is the environment to start from (default: os.environ, which
    also carries the test's RINGLET_BACKEND); ``extra`` is added to it."""
    import sys

    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    env.update(extra)
    return env


def write_fifo(path, data):
    """Write data (at most a pipe's capacity) into a FIFO that a reader has
    open, without blocking."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


def http_scope(method: str, path: str, headers: Mapping[str, str] = {}) -> Dict[str, Any]:
    """The ASGI scope (spec 2.4) of an HTTP request for path, as a server
    passes it: path as it is, nothing cleaned up."""
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "server": ("testserver", 80), "client": ("127.0.0.1", 1234)}


async def asgi_request(app: Any, method: str, path: str, headers: Mapping[str, str] = {},
                       after_send: Any = None) -> List[Dict[str, Any]]:
    """Call an ASGI app for one request without a body, in this task; the
    messages it sent.  after_send(messages), if given, is awaited after each."""
    messages: List[Dict[str, Any]] = []

    async def receive() -> Dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Dict[str, Any]) -> None:
        messages.append(message)
        if after_send is not None:
            await after_send(messages)

    await app(http_scope(method, path, headers), receive, send)
    return messages


async def cancelled_request(app: Any, path: str, cancel_at: int) -> int:
    """GET path from an ASGI app in a task of its own, cancelled as it sends
    its cancel_at-th message; the number of messages sent (checked to end
    in CancelledError)."""
    async def cancel_at_count(messages: List[Dict[str, Any]]) -> None:
        sent.append(len(messages))
        if len(messages) == cancel_at:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
        await asyncio.sleep(0)

    sent: List[int] = []
    task = asyncio.ensure_future(asgi_request(app, "GET", path, after_send=cancel_at_count))
    try:
        await task
    except asyncio.CancelledError:
        return sent[-1] if sent else 0
    raise AssertionError(f"the request for {path} ended without being cancelled")


def random_link_tree(base: Any, rng: Any, names: List[str], files: Mapping[str, str]) -> Dict[str, str]:
    """A served folder for random comparisons: base/static (with sub/ and
    page.txt) and base/outside, files (path under base: text), and three
    symbolic links in static or static/sub whose targets join one to three
    of names, sometimes absolute, sometimes with a trailing "/".  Returns
    the links made: {"static/l0": target, ...}."""
    static = base / "static"
    (static / "sub").mkdir(parents=True)
    (base / "outside").mkdir()
    (static / "page.txt").write_text("page")
    for name, text in files.items():
        (base / name).write_text(text)
    links = {}
    for i in range(3):
        where = rng.choice(["static", "static/sub"])
        target = "/".join(rng.choice(names) for _ in range(rng.randint(1, 3))) or "."
        if rng.random() < 0.2:
            target = f"{static}/{target}"
        if rng.random() < 0.2:
            target += "/"
        if not (base / where / f"l{i}").is_symlink():
            (base / where / f"l{i}").symlink_to(target)
            links[f"{where}/l{i}"] = target
    return links


class FailingUpload(io.BytesIO):
    """An in-memory upload whose second read fails ("fail"), or cancels the
    task saving it ("cancel"): so the failure lands at a known point, mid-save."""

    def __init__(self, data: bytes, action: str) -> None:
        super().__init__(data)
        self.reads = 0
        self.action = action

    def read(self, size: Optional[int] = -1) -> bytes:
        self.reads += 1
        if self.reads == 2:
            if self.action == "fail":
                raise OSError(5, "Input/output error")
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return super().read(size)


def check_failed_save(run: Any, folder: Any, save: Any, data: bytes, action: str, keep_partial: bool) -> None:
    """save(upload, target) (a coroutine) of a FailingUpload of data to a
    target holding b"previous", which fails or is cancelled mid-save: it
    raises that, no temporary file is left, and the target holds what the
    promise says.  What was written before a failure is the first 1 MiB
    chunk.  A cancel lands at the save's next await that waits: the write of
    the second chunk, or a later one where writes complete before their
    submission returns, or none before the end.  The target is then a prefix
    of at least the first chunk with keep_partial, else untouched or the
    whole upload."""
    target = folder / "saved.bin"
    target.write_bytes(b"previous")
    with pytest.raises(OSError if action == "fail" else asyncio.CancelledError):
        run(save(FailingUpload(data, action), target))
    assert sorted(os.listdir(folder)) == [target.name]
    saved = target.read_bytes()
    if action == "fail":
        assert saved == (data[:1 << 20] if keep_partial else b"previous")
    elif keep_partial:
        assert len(saved) >= 1 << 20 and saved == data[:len(saved)]
    else:
        assert saved in (b"previous", data)


def no_thread(*args: Any, **kwargs: Any) -> Any:
    """Put in place of a way to a worker thread: a test that promises none fails on it."""
    raise AssertionError("a worker thread was asked for")


def refuse_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make anyio's thread pool and executors' submit (run_in_executor's way
    to a thread, whatever the loop, uvloop's too) fail for the test."""
    import concurrent.futures

    import anyio.to_thread

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", no_thread)


def load_example(name: str) -> ModuleType:
    """examples/<name>.py, imported as a module (the examples are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
