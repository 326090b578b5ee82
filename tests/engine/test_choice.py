"""The backend: which one ringlet picks and why (ringlet/_engine.py's
choice), and each refusal of io_uring told apart in backend().

The other tests run on both backends as a parameter (see conftest.py);
`make test` also runs this file under a seccomp filter that refuses
io_uring_setup (tests/seccomp/no_io_uring.c), where ringlet must find the
fallback by itself.  The tests that start interpreters of their own
(own_backend) set up the environment they are about.
"""

import errno
import os
import shutil
import subprocess
import sys

import pytest

from conftest import child_env

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
ROOT = os.path.dirname(HERE)
EPERM_TEXT = "threads: io_uring_setup refused with EPERM (seccomp, e.g. Docker's default profile, or kernel.io_uring_disabled?)"
UNDER_SECCOMP = os.environ.get("RINGLET_SECCOMP_NO_IO_URING") == "1"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def no_io_uring(tmp_path_factory):
    """Path of the seccomp launcher (built by make, or here with cc)."""
    built = os.path.join(ROOT, "build", "seccomp", "no_io_uring")
    source = os.path.join(HERE, "seccomp", "no_io_uring.c")
    if os.access(built, os.X_OK) and os.stat(built).st_mtime >= os.stat(source).st_mtime:
        return built
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no seccomp launcher: run make test (it builds build/seccomp/no_io_uring), or install a C compiler")
    out = str(tmp_path_factory.mktemp("seccomp") / "no_io_uring")
    proc = subprocess.run([cc, "-O2", "-o", out, source],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot build the seccomp launcher: {proc.stderr.strip()[:300]}")
    return out


def python(source, env=None, launcher=(), timeout=60):
    """Run source in a fresh interpreter (the ringlet under test importable,
    RINGLET_BACKEND unset unless env sets it) started by the launcher command
    (a list), if any; the CompletedProcess."""
    unset = ("RINGLET_BACKEND", "RINGLET_SECCOMP_NO_IO_URING")
    full_env = child_env({k: v for k, v in os.environ.items() if k not in unset}, **(env or {}))
    cmd = list(launcher) + [sys.executable, "-c", source]
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}\n{proc.stderr}"
    return proc


def io_uring_here():
    """True if this kernel lets ringlet use io_uring (whatever this test forces)."""
    from ringlet import _engine

    return not _engine._io_uring_problem(_engine.probe())[0]



# --------------------------------------------------------------------------
# which backend, and why
# --------------------------------------------------------------------------


def test_backend_names_itself_and_why(ringlet, backend_name):
    if backend_name.startswith("io_uring"):
        assert backend_name.startswith("io_uring (setup flags: "), backend_name
    else:
        assert backend_name.startswith("threads: "), backend_name
        assert len(backend_name) > len("threads: ") + 5  # a reason follows


def test_engine_type_matches_backend(ringlet, run, backend_name):
    from ringlet import _ringlet
    from ringlet._threads import ThreadEngine

    async def main():
        return ringlet.get_engine()

    engine = run(main())
    want = _ringlet.Engine if backend_name.startswith("io_uring") else ThreadEngine
    assert type(engine) is want, (backend_name, type(engine))


@pytest.mark.own_backend  # nothing forced: what ringlet finds by itself
def test_seccomp_pass_uses_threads_because_of_eperm(ringlet, run, backend_name):
    """In the pass under tests/seccomp/no_io_uring: the refusal is detected, not forced."""
    if not UNDER_SECCOMP:
        pytest.skip("only under tests/seccomp/no_io_uring (make test's seccomp pass)")
    if os.environ.get("RINGLET_BACKEND"):
        pytest.skip("RINGLET_BACKEND is set: the choice is forced")
    assert backend_name == EPERM_TEXT

    async def main():
        await ringlet.write_file("/dev/null", b"x")
        return type(ringlet.get_engine()).__name__

    assert run(main()) == "ThreadEngine"


@pytest.mark.own_backend
def test_choice_is_made_at_first_use_not_at_import():
    """Importing ringlet sets up no ring; what the first use finds decides."""
    proc = python("""
import ringlet
from ringlet import _engine, _ringlet
assert _engine._choice is None, _engine._choice
assert _engine.probe.cache_info().currsize == 0   # no probe ring at import
real = _ringlet.probe
_ringlet.probe = lambda: {**real(), "opcodes": [op for op in real()["opcodes"] if op != 21]}
print(ringlet.backend())
""")
    assert proc.returncode == 0, proc.stderr
    if "io_uring_setup" in proc.stdout:
        pytest.skip(f"io_uring refused here: {proc.stdout.strip()}")
    assert proc.stdout.startswith("threads: this kernel's io_uring lacks IORING_OP_STATX (Linux "), proc.stdout


@pytest.mark.own_backend
def test_missing_opcode_selects_threads_and_works():
    proc = python("""
import asyncio, os, ringlet
from ringlet import _ringlet
real = _ringlet.probe
_ringlet.probe = lambda: {**real(), "opcodes": [op for op in real()["opcodes"] if op not in (14, 18)]}
async def main():
    await ringlet.write_file("missing-op.tmp", b"data")
    try:
        return await ringlet.read_file("missing-op.tmp"), type(ringlet.get_engine()).__name__
    finally:
        os.unlink("missing-op.tmp")
print(ringlet.backend())
print(asyncio.run(main()))
""")
    assert proc.returncode == 0, proc.stderr
    if "io_uring_setup" in proc.stdout:
        pytest.skip(f"io_uring refused here: {proc.stdout.strip()}")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("threads: this kernel's io_uring lacks IORING_OP_ASYNC_CANCEL, IORING_OP_OPENAT")
    assert lines[1] == "(b'data', 'ThreadEngine')"


@pytest.mark.own_backend
@pytest.mark.parametrize("value", ["threads", "io_uring"])
def test_forced_backend(value):
    proc = python("""
import asyncio, ringlet
async def main():
    return await ringlet.read_file("/dev/null"), type(ringlet.get_engine()).__name__
print(ringlet.backend())
print(asyncio.run(main()))
""", env={"RINGLET_BACKEND": value})
    if value == "io_uring" and not io_uring_here():
        assert proc.returncode != 0 and "RINGLET_BACKEND=io_uring" in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    backend, result = proc.stdout.splitlines()
    if value == "threads":
        assert backend == "threads: forced by RINGLET_BACKEND=threads"
        assert result == "(b'', 'ThreadEngine')"
    else:
        assert backend.startswith("io_uring (setup flags: ")
        assert result == "(b'', 'Engine')"


@pytest.mark.own_backend
def test_bad_backend_value_is_a_clear_error():
    proc = python("import ringlet; ringlet.backend()", env={"RINGLET_BACKEND": "uring"})
    assert proc.returncode != 0
    assert "ValueError: RINGLET_BACKEND must be 'io_uring' or 'threads' (or unset), not 'uring'" in proc.stderr


@pytest.mark.own_backend
def test_seccomp_refusal_selects_threads(no_io_uring):
    """A real seccomp filter refusing io_uring_setup (as Docker's default profile)."""
    proc = python("""
import asyncio, os, ringlet
async def main():
    n = await ringlet.write_file("seccomp.tmp", b"under seccomp")
    try:
        return n, await ringlet.read_file("seccomp.tmp"), type(ringlet.get_engine()).__name__
    finally:
        os.unlink("seccomp.tmp")
print(ringlet.backend())
print(asyncio.run(main()))
""", launcher=[no_io_uring])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [EPERM_TEXT, "(13, b'under seccomp', 'ThreadEngine')"]


@pytest.mark.own_backend
def test_seccomp_refusal_with_io_uring_forced_is_a_clear_oserror(no_io_uring):
    proc = python("""
import asyncio, ringlet
print(ringlet.backend())
async def main():
    try:
        ringlet.get_engine()
    except OSError as exc:
        print(type(exc).__name__, exc.errno, exc)
asyncio.run(main())
""", env={"RINGLET_BACKEND": "io_uring"}, launcher=[no_io_uring])
    assert proc.returncode == 0, proc.stderr
    backend, error = proc.stdout.splitlines()
    assert backend == ("unavailable: RINGLET_BACKEND=io_uring, but io_uring_setup refused with EPERM "
                       "(seccomp, e.g. Docker's default profile, or kernel.io_uring_disabled?)")
    assert error.startswith(f"PermissionError {errno.EPERM} [Errno 1] ringlet: RINGLET_BACKEND=io_uring, but ")


@pytest.mark.own_backend
def test_engine_refused_after_a_good_probe_falls_back():
    """The probe's tiny ring is allowed but the engine's is not (ENOMEM:
    RLIMIT_MEMLOCK on older kernels): threads from then on, with the reason."""
    proc = python("""
import asyncio, errno, os, ringlet
from ringlet import _ringlet
class Refused:
    def __init__(self, *args, **kwargs):
        raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
_ringlet.Engine = Refused
async def main():
    return await ringlet.read_file("/dev/null"), type(ringlet.get_engine()).__name__
print(asyncio.run(main()))
print(ringlet.backend())
""")
    assert proc.returncode == 0, proc.stderr
    if not io_uring_here():
        pytest.skip("io_uring is refused here already")
    assert proc.stdout.splitlines() == [
        "(b'', 'ThreadEngine')",
        "threads: io_uring_setup of the engine's ring out of locked memory (ENOMEM: raise RLIMIT_MEMLOCK?)",
    ]


@pytest.mark.own_backend
def test_cli_info_names_the_fallback(no_io_uring):
    env = child_env({k: v for k, v in os.environ.items() if k != "RINGLET_BACKEND"})
    proc = subprocess.run([no_io_uring, sys.executable, "-m", "ringlet", "info"], capture_output=True, text=True,
                          timeout=60, cwd="/", env=env)
    assert proc.returncode == 0, proc.stderr
    assert EPERM_TEXT in proc.stdout


# --------------------------------------------------------------------------
# each refusal told apart
# --------------------------------------------------------------------------

REFUSED_SCRIPT = """
import asyncio, ringlet
async def main():
    return await ringlet.read_file("/dev/null"), type(ringlet.get_engine()).__name__
print(ringlet.backend())
print(asyncio.run(main()))
"""


@pytest.mark.own_backend
def test_each_refusal_has_its_own_reason(no_io_uring: str) -> None:
    """io_uring_setup refused by a seccomp filter with each errno a real
    system gives: ENOSYS (no io_uring, or hidden as gVisor does), EPERM
    (Docker's profile, kernel.io_uring_disabled), ENOMEM (RLIMIT_MEMLOCK
    before Linux 5.12): the fallback each time, with a reason naming it."""
    reasons: dict[str, str] = {}
    for name in ("ENOSYS", "EPERM", "ENOMEM"):
        proc = python(REFUSED_SCRIPT, launcher=[no_io_uring, "-e", name])
        assert proc.returncode == 0, (name, proc.stderr)
        reason, result = proc.stdout.splitlines()
        assert reason.startswith("threads: io_uring_setup ") and name in reason, (name, reason)
        assert result == "(b'', 'ThreadEngine')", (name, result)
        reasons[name] = reason
    assert reasons["EPERM"] == EPERM_TEXT
    assert "seccomp" in reasons["ENOSYS"] and "RLIMIT_MEMLOCK" in reasons["ENOMEM"], reasons
    assert len(set(reasons.values())) == 3, reasons


@pytest.mark.own_backend
def test_no_descriptor_left_for_the_ring_is_its_own_reason() -> None:
    """EMFILE (RLIMIT_NOFILE reached at the first use) is named as such."""
    proc = python("""
import asyncio, errno, os, resource
import ringlet
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
while True:
    try:
        held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE
        break
print(ringlet.backend())
for fd in held:
    os.close(fd)
async def main():
    return await ringlet.read_file("/dev/null")
print(asyncio.run(main()))
""")
    assert proc.returncode == 0, proc.stderr
    reason, result = proc.stdout.splitlines()
    if not io_uring_here():
        pytest.skip(f"io_uring is refused here already: {reason}")
    assert reason.startswith("threads: io_uring_setup failed with EMFILE (") and "RLIMIT_NOFILE" in reason, reason
    assert result == "b''"
