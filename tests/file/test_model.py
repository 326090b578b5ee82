"""Model-based tests: random sequences of file operations on a ringlet file,
compared step by step with the same operations on a second file through
built-in open(..., buffering=0) (io.FileIO) and os.

After every step the two files must hold the same bytes, the two positions
must agree, and nothing may be left in flight.  It runs on both backends.
"""

import asyncio
import io
import itertools
import os
import shutil
import tempfile

import pytest

hypothesis = pytest.importorskip(
    "hypothesis",
    reason="hypothesis is not installed (make installs it with the test tools; in an older .venv "
    "remove .venv/.stamp-tools and run make test again)",
)

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import ringlet  # noqa: E402
from conftest import settled  # noqa: E402

MODES = ["rb", "r+b", "wb", "w+b", "ab", "a+b", "xb", "x+b"]
MAX_OFFSET = 70_000  # beyond one 64 KiB read-ahead chunk
STEP_TIMEOUT = 2.0  # no single step waits on anything: a hang is a bug

# Data with newlines now and then, so that readline() has lines to find.
DATA = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.sampled_from([b"\n", b"line", b"x" * 100, b"\r\n", b"\0"]), max_size=40).map(b"".join),
    # larger than one 64 KiB read-ahead chunk; deterministic, so hypothesis can replay it
    st.integers(0, 3).map(lambda k: bytes(range(251)) * 280 if k == 3 else b"ab\n" * (k * 700)),
)
SIZES = st.one_of(st.integers(0, 5000), st.sampled_from([-1, None, 65535, 65536, 65537, 100_000]))
OFFSETS = st.integers(0, MAX_OFFSET)


def outcome(fn, *args):
    """('ok', value) or ('raised', exception class, errno): comparable across files."""
    try:
        return ("ok", fn(*args))
    except io.UnsupportedOperation:  # before OSError and ValueError: it is both
        return ("raised", io.UnsupportedOperation, None)
    except OSError as exc:
        return ("raised", OSError, exc.errno)
    except (ValueError, TypeError, OverflowError) as exc:
        return ("raised", type(exc), None)
    except asyncio.TimeoutError:
        raise AssertionError(f"the step hung (more than {STEP_TIMEOUT}s)") from None
    except asyncio.CancelledError:
        return ("raised", asyncio.CancelledError, None)


def is_open(machine):
    """A rule's precondition: the machine's files are open."""
    return machine.f is not None


class PairedFiles(RuleBasedStateMachine):
    """A ringlet file (self.f on self.path) and a built-in one (self.ref on
    self.ref_path), in a directory of their own, and one event loop for the
    machine's whole run (so one engine serves every step)."""

    suffix = ""  # of the files' names

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.mkdtemp(prefix="ringlet-model-")
        self.path = os.path.join(self.dir, "ringlet" + self.suffix)
        self.ref_path = os.path.join(self.dir, "reference" + self.suffix)
        self.f = self.ref = self.mode = None

    def run(self, coro):
        """Run coro on the machine's loop; a step that hangs fails (TimeoutError)."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT))

    def ring(self, make):
        """Outcome of the coroutine make() builds, run on the persistent loop."""
        return outcome(lambda: self.run(make()))

    def teardown(self):
        try:
            if self.f is not None:
                self.run(self.f.close())
            if self.ref is not None:
                self.ref.close()
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


# Each model test's: only a failure's shrinking takes long, and needs no deadline.
# derandomize: the suite's examples are the same in every run, so that CI
# cannot fail on a new draw (hunts pass settings of their own).
MODEL_SETTINGS = settings(deadline=None, database=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class FileModel(PairedFiles):
    """ringlet against io.FileIO."""

    suffix = ".bin"

    def compare(self, what, got, want):
        assert got == want, f"{what} in mode {self.mode!r}: ringlet {got!r}, built-in {want!r}"
        return got

    def readable(self):
        return self.mode is not None and ("r" in self.mode or "+" in self.mode)

    def writable(self):
        return self.mode is not None and self.mode != "rb"

    def ref_checked(self, fn, *args, writing=False):
        """os.pread/os.pwrite on the reference, with the mode checks a file object makes."""
        def call():
            if self.ref.closed:
                raise ValueError("I/O operation on closed file")
            if writing and not self.ref.writable():
                raise io.UnsupportedOperation("File not open for writing")
            if not writing and not self.ref.readable():
                raise io.UnsupportedOperation("File not open for reading")
            return fn(self.ref.fileno(), *args)

        return outcome(call)

    # -- opening and closing ----------------------------------------------------

    def create_files(self, content):
        for path in (self.path, self.ref_path):
            with open(path, "wb") as f:
                f.write(content)

    @initialize(content=DATA, mode=st.sampled_from(MODES))
    def start(self, content, mode):
        """Both files start with the same content, and open in the same mode."""
        self.create_files(content)
        self.open_files(mode)

    @rule(mode=st.sampled_from(MODES))
    def open_files(self, mode):
        self.close_files()
        got = self.ring(lambda: ringlet.open(self.path, mode))
        want = outcome(open, self.ref_path, mode, 0)
        g = got[:1] + (None,) if got[0] == "ok" else got
        w = want[:1] + (None,) if want[0] == "ok" else want
        self.compare(f"open({mode!r})", g, w)
        if got[0] == "ok":
            self.f, self.ref, self.mode = got[1], want[1], mode

    @precondition(lambda self: self.f is not None)
    @rule()
    def close_files(self):
        if self.f is not None:
            self.compare("close", self.ring(lambda: self.f.close()), outcome(self.ref.close))
            # close twice does nothing, on both
            self.compare("close again", self.ring(lambda: self.f.close()), outcome(self.ref.close))
            assert self.f.closed and self.ref.closed
        self.f = self.ref = self.mode = None

    @precondition(lambda self: self.f is None and os.path.exists(self.path))
    @rule()
    def unlink_files(self):
        for path in (self.path, self.ref_path):
            if os.path.exists(path):
                os.unlink(path)

    @precondition(lambda self: self.f is not None)
    @rule(op=st.sampled_from(["read", "readinto", "write", "pread", "pwrite", "seek", "tell", "truncate",
                              "fsync"]))
    def operation_after_close(self, op):
        """Close both, then one operation on the closed files: the same error,
        but for a read of a file not open for reading or a write of one not
        open for writing: ringlet's default layer is a buffered file's, and
        io.BufferedWriter's read (BufferedReader's write) refuses before it
        looks at the file, where the reference, a FileIO, says closed."""
        f, ref = self.f, self.ref
        refused_first = self.writable() if op == "write" else self.readable()
        refused_first = op in ("read", "readinto", "write") and not refused_first
        self.close_files()
        calls = {
            "read": (lambda: f.read(1), lambda: ref.read(1)),
            "readinto": (lambda: f.readinto(bytearray(1)), lambda: ref.readinto(bytearray(1))),
            "write": (lambda: f.write(b"x"), lambda: ref.write(b"x")),
            "pread": (lambda: f.pread(1, 0), lambda: ref.read(1)),
            "pwrite": (lambda: f.pwrite(b"x", 0), lambda: ref.write(b"x")),
            "seek": (lambda: f.seek(0), lambda: ref.seek(0)),
            "tell": (lambda: f.tell(), lambda: ref.tell()),
            "truncate": (lambda: f.truncate(0) if hasattr(f, "truncate") else _closed(), lambda: ref.truncate(0)),
            "fsync": (lambda: f.fsync(), lambda: os.fsync(ref.fileno())),
        }
        mine, theirs = calls[op]
        want = ("raised", io.UnsupportedOperation, None) if refused_first else outcome(theirs)
        self.compare(f"{op} after close", self.ring(mine), want)

    # -- reading ------------------------------------------------------------------

    @precondition(is_open)
    @rule(size=SIZES)
    def read(self, size):
        self.compare(f"read({size})", self.ring(lambda: self.f.read(size)), outcome(self.ref.read, size))

    @precondition(is_open)
    @rule(n=st.integers(0, 5000))
    def readinto(self, n):
        a, b = bytearray(b"\xee" * n), bytearray(b"\xee" * n)
        got = self.ring(lambda: self.f.readinto(a))
        want = outcome(self.ref.readinto, b)
        self.compare(f"readinto({n})", got, want)
        self.compare("readinto buffer", a, b)

    @precondition(is_open)
    @rule(size=st.one_of(st.just(-1), st.integers(0, 200)))
    def readline(self, size):
        self.compare(f"readline({size})", self.ring(lambda: self.f.readline(size)), outcome(self.ref.readline, size))

    @precondition(is_open)
    @rule(hint=st.one_of(st.integers(0, 3000), st.sampled_from([-1, None, 65_536])))
    def readlines(self, hint):
        self.compare(f"readlines({hint})", self.ring(lambda: self.f.readlines(hint)),
                     outcome(self.ref.readlines, hint))

    @precondition(is_open)
    @rule(count=st.integers(1, 30))
    def iterate(self, count):
        """count steps of `async for`, against the built-in's next()."""
        self.compare(f"{count} lines of async for", self.ring(lambda: first_lines(self.f, count)),
                     outcome(lambda: list(itertools.islice(self.ref, count))))

    @precondition(is_open)
    @rule(size=st.integers(0, 5000), offset=OFFSETS)
    def pread(self, size, offset):
        got = self.ring(lambda: self.f.pread(size, offset))
        want = self.ref_checked(os.pread, size, offset)
        self.compare(f"pread({size}, {offset})", got, want)

    @precondition(is_open)
    @rule(requests=st.lists(st.tuples(st.integers(0, 3000), OFFSETS), min_size=2, max_size=20))
    def concurrent_preads(self, requests):
        async def many():
            return await asyncio.gather(*(self.f.pread(n, off) for n, off in requests))

        got = self.ring(many)
        want = outcome(lambda: [self.ref_checked(os.pread, n, off) for n, off in requests])
        if want[1] and all(w[0] == "ok" for w in want[1]):
            want = ("ok", [w[1] for w in want[1]])
        else:
            want = next(w for w in want[1] if w[0] != "ok")
        self.compare("gather(pread...)", got, want)

    # -- writing ------------------------------------------------------------------

    @precondition(is_open)
    @rule(data=DATA)
    def write(self, data):
        self.compare(f"write({len(data)} bytes)", self.ring(lambda: self.f.write(data)), outcome(self.ref.write, data))

    @precondition(is_open)
    @rule(lines=st.lists(DATA, max_size=5))
    def writelines(self, lines):
        self.compare("writelines", self.ring(lambda: self.f.writelines(lines)), outcome(self.ref.writelines, lines))

    @precondition(is_open)
    @rule(call=st.sampled_from(["read", "readline", "readlines", "readinto", "pread", "write", "pwrite"]),
          turns=st.integers(0, 4), size=SIZES, data=DATA, offset=OFFSETS)
    def cancelled(self, call, turns, size, data, offset):
        """A call cancelled after `turns` turns of the loop loses and tears
        nothing (AsyncFile's docstring): a read that raised CancelledError did
        not happen (the invariants check the position), a write landed whole
        or not at all; a call done before the cancel is as the built-in's."""
        n = 0 if size is None or size < 0 else size
        mine, theirs = {  # ringlet's coroutine, the built-in's outcome
            "read": (lambda: self.f.read(size), lambda: outcome(self.ref.read, size)),
            "readline": (lambda: self.f.readline(size), lambda: outcome(self.ref.readline, size)),
            "readlines": (lambda: self.f.readlines(size), lambda: outcome(self.ref.readlines, size)),
            "readinto": (lambda: _filled(self.f.readinto, n), lambda: outcome(_filled_now, self.ref.readinto, n)),
            "pread": (lambda: self.f.pread(n, offset), lambda: self.ref_checked(os.pread, n, offset)),
            "write": (lambda: self.f.write(data), lambda: outcome(self.ref.write, data)),
            "pwrite": (lambda: self.f.pwrite(data, offset),
                       lambda: self.ref_checked(os.pwrite, data, offset, writing=True)),
        }[call]

        before = self.ref.tell()  # ringlet's too (same_position)
        got = self.ring(lambda: cancelled_after(turns, mine))
        self.run(settled())
        if got[1] is not asyncio.CancelledError:
            self.compare(f"{call} not cancelled in time", got, theirs())
        elif call == "write" and self.run(self.f.tell()) != before or \
                call == "pwrite" and _read_path(self.path) != _read_path(self.ref_path):
            theirs()  # it landed: whole, or the invariants see the difference

    @precondition(is_open)
    @rule(data=DATA, offset=OFFSETS)
    def pwrite(self, data, offset):
        got = self.ring(lambda: self.f.pwrite(data, offset))
        want = self.ref_checked(os.pwrite, data, offset, writing=True)
        self.compare(f"pwrite({len(data)} bytes, {offset})", got, want)

    @precondition(is_open)
    @rule(pieces=st.lists(st.binary(min_size=1, max_size=3000), min_size=2, max_size=10), start=OFFSETS)
    def concurrent_pwrites(self, pieces, start):
        """Disjoint pwrites at once: the result is as if written one by one."""
        offsets, at = [], start
        for p in pieces:
            offsets.append(at)
            at += len(p) + 10

        async def many():
            return await asyncio.gather(*(self.f.pwrite(p, o) for p, o in zip(pieces, offsets)))

        got = self.ring(many)
        want = outcome(lambda: [self.ref_checked(os.pwrite, p, o, writing=True) for p, o in zip(pieces, offsets)])
        if want[1] and all(w[0] == "ok" for w in want[1]):
            want = ("ok", [w[1] for w in want[1]])
        else:
            want = next(w for w in want[1] if w[0] != "ok")
        self.compare("gather(pwrite...)", got, want)

    @precondition(is_open)
    @rule(size=st.one_of(st.none(), st.integers(-1, MAX_OFFSET)))
    def truncate(self, size):
        if hasattr(self.f, "truncate"):
            got = self.ring(lambda: self.f.truncate(size))
        elif not self.writable():  # no truncate yet: what the engine does, behind the same mode check
            got = ("raised", io.UnsupportedOperation, None)
        else:
            n = size if size is not None else os.lseek(self.f.fileno(), 0, os.SEEK_CUR)
            got = outcome(os.ftruncate, self.f.fileno(), n)
            got = ("ok", n) if got[0] == "ok" else got
        self.compare(f"truncate({size})", got, outcome(self.ref.truncate, size))

    @precondition(lambda self: self.writable() and self.f is not None and not self.f.closed)
    @rule(size=st.integers(0, MAX_OFFSET))
    def engine_ftruncate(self, size):
        """The engine's ftruncate on the file's descriptor: a change behind the
        file object's back.  As with a buffered file, seek first (here
        seek(0, SEEK_CUR)), so that no read-ahead of readline() outlives it."""
        engine = self.run(_get_engine())
        if not engine.supports(55):  # IORING_OP_FTRUNCATE: kernel 6.9+
            return
        self.compare("seek(0, SEEK_CUR)", self.ring(lambda: self.f.seek(0, os.SEEK_CUR)),
                     outcome(self.ref.seek, 0, os.SEEK_CUR))
        got = self.ring(lambda: _await(engine.ftruncate(self.f.fileno(), size)))
        self.compare(f"engine.ftruncate({size})", got, outcome(os.ftruncate, self.ref.fileno(), size))

    @precondition(is_open)
    @rule(datasync=st.booleans())
    def fsync(self, datasync):
        got = self.ring(lambda: self.f.fdatasync() if datasync else self.f.fsync())
        want = outcome(os.fdatasync if datasync else os.fsync, self.ref.fileno())
        self.compare("fsync", got, want)

    # -- position -----------------------------------------------------------------

    @precondition(is_open)
    @rule(offset=st.integers(-100, MAX_OFFSET), whence=st.sampled_from([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END]))
    def seek(self, offset, whence):
        got = self.ring(lambda: self.f.seek(offset, whence))
        self.compare(f"seek({offset}, {whence})", got, outcome(self.ref.seek, offset, whence))

    @precondition(is_open)
    @rule()
    def tell(self):
        self.compare("tell", self.ring(lambda: self.f.tell()), outcome(self.ref.tell))

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def same_content(self):
        a = _read_path(self.path)
        b = _read_path(self.ref_path)
        assert a == b, (
            f"content differs (mode {self.mode!r}): ringlet {len(a)} bytes, built-in {len(b)} bytes; "
            f"first difference at {_first_difference(a, b)}"
        )

    @invariant()
    def same_position(self):
        if self.f is not None:
            self.compare("position", self.ring(lambda: self.f.tell()), outcome(self.ref.tell))

    @invariant()
    def nothing_in_flight(self):
        engine = self.run(_get_engine())
        assert engine.stats()["in_flight"] == 0


async def first_lines(f, count):
    """The next count lines of `async for` over f (fewer at its end)."""
    got = []
    async for line in f:
        got.append(line)
        if len(got) == count:
            break
    return got


async def cancelled_after(turns, call):
    """Await call() as a task cancelled after `turns` turns of the loop."""
    task = asyncio.ensure_future(call())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    return await task


async def _filled(readinto, n):
    buffer = bytearray(b"\xee" * n)
    count = await readinto(buffer)
    return bytes(buffer[:count])


def _filled_now(readinto, n):
    buffer = bytearray(b"\xee" * n)
    return bytes(buffer[:readinto(buffer)])


async def _closed():
    raise ValueError("I/O operation on closed file")


async def _get_engine():
    return ringlet.get_engine()


async def _await(future):
    return await future


def _read_path(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _first_difference(a, b):
    if a is None or b is None:
        return "(one file is missing)"
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


@pytest.mark.timeout(600)  # only a failure's shrinking takes long, and its report must not be cut off
def test_binary_files_behave_as_built_in_ones():
    run_state_machine_as_test(FileModel, settings=settings(MODEL_SETTINGS, max_examples=200, stateful_step_count=40))


# --------------------------------------------------------------------------
# the model's own sanity: it must be able to see a difference
# --------------------------------------------------------------------------


def test_model_detects_a_wrong_write(tmp_path, monkeypatch):
    """Feed the model a ringlet file whose write() drops a byte: it must fail.
    (Guards against a model that compares nothing.)"""
    machine = FileModel()
    try:
        machine.create_files(b"hello")
        machine.open_files("r+b")
        real_write = machine.f.write

        async def lossy_write(data):
            return await real_write(data[1:]) + 1 if data else 0

        monkeypatch.setattr(machine, "f", _Proxy(machine.f, write=lossy_write))
        machine.write(b"abc")
        with pytest.raises(AssertionError):
            machine.same_content()
    finally:
        machine.teardown()


def test_model_detects_a_wrong_position(tmp_path):
    machine = FileModel()
    try:
        machine.create_files(b"0123456789")
        machine.open_files("rb")
        machine.read(3)
        machine.ref.seek(5)  # move the reference's position behind the model's back
        with pytest.raises(AssertionError):
            machine.same_position()
    finally:
        machine.teardown()


def test_model_detects_a_cancelled_read_that_consumed(tmp_path, monkeypatch):
    """A read that raises CancelledError must not have moved the position."""
    machine = FileModel()
    try:
        machine.create_files(b"0123456789")
        machine.open_files("rb")
        real_read = machine.f.read

        async def consumes_when_cancelled(size=-1):
            try:
                await asyncio.sleep(STEP_TIMEOUT)  # the rule cancels it here
            finally:
                await real_read(2)

        monkeypatch.setattr(machine, "f", _Proxy(machine.f, read=consumes_when_cancelled))
        machine.cancelled("read", 4, 5, b"", 0)
        with pytest.raises(AssertionError, match="position"):
            machine.same_position()
    finally:
        machine.teardown()


class _Proxy:
    def __init__(self, target, **overrides):
        self._target = target
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._target, name)
