"""Shared fixtures for the ringlet test suite.

Plain pytest: every test drives its coroutine with the ``run`` fixture
(``asyncio.run`` under the hood), no pytest-asyncio.

Per-test timeouts: every test gets ``@pytest.mark.timeout(DEFAULT_TIMEOUT)``
unless it carries its own marker.  pytest-timeout enforces it when installed;
otherwise a SIGALRM fallback in this file does.
"""

import asyncio
import errno
import os
import signal
import stat
import time

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


@pytest.fixture(scope="session")
def backend_name(ringlet):
    """The backend string, or a skip with the reason if it cannot be obtained."""
    try:
        return ringlet.backend()
    except Exception as exc:  # noqa: BLE001 - we want the reason in the skip
        pytest.skip(f"ringlet.backend() raised {type(exc).__name__}: {exc}")


@pytest.fixture
def require_io_uring(backend_name):
    """Skip unless ringlet runs on io_uring: for what only io_uring does
    (inline completions and the ring's counters, no thread for I/O, the C
    engine's own types).  The reason names the backend in use instead."""
    if not backend_name.startswith("io_uring"):
        pytest.skip(f"io_uring-specific; ringlet runs on its fallback here: backend() = {backend_name!r}")
    return backend_name


@pytest.fixture
def require_threads(backend_name):
    """Skip unless ringlet runs on its thread fallback (RINGLET_BACKEND=threads,
    or io_uring refused): for the fallback's own promises, through the public API."""
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


async def wait_until(predicate, timeout=3.0, interval=0.005):
    """Poll ``predicate()`` with asyncio.sleep until true; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(interval)


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
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
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


def write_fifo(path, data):
    """Write data (at most a pipe's capacity) into a FIFO that a reader has
    open, without blocking."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
