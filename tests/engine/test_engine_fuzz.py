"""A fuzzer of the engine's raw entry points (engine.read, readinto, write,
_pread, read_many, copy, open, close, fsync, ftruncate, statx and their
lazy twins; the path calls rename, unlink, mkdir, symlink, link and
statx(path)) and of the whole-file helpers on top of Engine._read_file and
_write_file (read_file, write_file, copy_file), on both backends.

Each example is a list of steps on a fresh loop.  A step is one call, or a
group of calls made at once, with arguments drawn from valid and hostile
pools: descriptors of every kind (read-only, write-only, O_APPEND, O_DIRECT,
a directory, /dev/zero, /dev/null, a pipe, numbers nobody opened), sizes and
offsets at every edge, buffers of every kind (read-only, strided, released,
mmap, array), paths of every kind.  Its result is awaited, cancelled after
0-3 turns of the loop, or dropped unawaited and collected; a step may also
resize the buffer while the kernel holds it, close a descriptor under its
calls, or shut the engine down (with its dropped calls in flight); its calls
may be made from another thread, or with a tracer that records, raises,
makes reads of its own, replaces itself or shuts the engine down.

What must hold:
- a call with a hostile argument raises TypeError, ValueError,
  OverflowError, OSError, BufferError or MemoryError, and nothing else
  (RuntimeError too, for a call the engine's shutdown overtook);
- a valid call alone, awaited, gives what os.pread/os.pwrite/os.fstat and
  reading the file give (contents, errno, position); a path call gives the
  errno (and error filenames) and leaves the names, links and modes that os
  gives on a copy of its directory (tmp/ns, copied to tmp/ref);
- a call from another thread is refused, and begins nothing;
- a tracer's records have every key, their moments in order; what it
  raises reaches the loop's exception handler, once each; reads it makes end;
- a cancelled write lands whole or not at all;
- a buffer cannot be resized while its call is in flight, and a buffer
  dropped with its call keeps receiving the kernel's bytes, not whatever
  memory reused its place (canaries of the same size stay untouched);
- afterwards nothing is in flight, no Op or bounce buffer is alive and no
  descriptor leaked (what an open still returned at a shutdown included).

The suite runs the same 100 examples per backend in every run, and 100 of
the path calls alone (test_path_calls_do_what_os_does);
RINGLET_FUZZ_EXAMPLES=N runs N new ones,
RINGLET_FUZZ_STEPS=N makes examples of up to N steps (10),
RINGLET_FUZZ_SHRINK=0 reports a failure as found.  Its findings are the
plain tests at the end of this file.
"""

import array
import asyncio
import ctypes
import errno
import gc
import mmap
import os
import shutil
import stat
import sys
from dataclasses import dataclass, replace
from typing import Any, Optional, Tuple

import pytest

hypothesis = pytest.importorskip(
    "hypothesis",
    reason="hypothesis is not installed (make installs it with the test tools; in an older .venv "
    "remove .venv/.stamp-tools and run make test again)",
)

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import ringlet  # noqa: E402
from ringlet import _ringlet  # noqa: E402
from ringlet._contract import STAMPS, TRACE_KEYS  # noqa: E402

from conftest import asyncio_run, fd_count, settled, wait_until  # noqa: E402

EXAMPLES = int(os.environ.get("RINGLET_FUZZ_EXAMPLES", "100"))
STEPS_MAX = int(os.environ.get("RINGLET_FUZZ_STEPS", "10"))
# The suite's examples are the same in every run (CI must not fail on a new
# draw); a hunt (RINGLET_FUZZ_EXAMPLES set) draws new ones each time.
DERANDOMIZE = "RINGLET_FUZZ_EXAMPLES" not in os.environ
# RINGLET_FUZZ_SHRINK=0: report the first failures as found (a long hunt).
PHASES = [Phase.generate] + ([Phase.shrink] if os.environ.get("RINGLET_FUZZ_SHRINK", "1") != "0" else [])
ALLOWED = (TypeError, ValueError, OverflowError, OSError, BufferError, MemoryError)
CALL_TIMEOUT = 20.0   # a call on a file that is always ready: a hang is a bug
PIPE_TIMEOUT = 0.05   # a pipe may be empty (or full): waiting is its right
CANARIES = 8
SPARSE = 1 << 24  # a write beyond this makes a sparse file nobody reads whole (2**40: a TiB)

# ---------------------------------------------------------------------------
# argument pools: ("valid", value) or ("hostile", value)
# ---------------------------------------------------------------------------

READABLE = ("file", "rdonly", "dup", "direct", "out")
WRITABLE = ("file", "wronly", "append", "dup", "direct", "out")
REGULAR = READABLE + ("wronly", "append")
PIPES = ("pipe_r", "pipe_w")
FD_LABELS = REGULAR + ("dir", "devzero", "devnull") + PIPES
NOBODY = 987_654  # a number beyond every open descriptor
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def hostile_pool(values):
    return st.sampled_from([("hostile", v) for v in values])


# Each argument: (the valid pool, the pool with hostile values too).
def pool(valid, hostile):
    return valid, st.one_of(valid, hostile)


FDS = pool(st.one_of(st.sampled_from(FD_LABELS), st.sampled_from(FD_LABELS), st.sampled_from([NOBODY, -1])),
           hostile_pool([2**31, 2**63, None, "3", 1.5]))
SIZES = pool(st.one_of(st.integers(0, 70_000), st.sampled_from([0, 1, 4095, 4096, 4097, 65536, 2**20, sys.maxsize]))
             .map(lambda v: ("valid", v)),
             hostile_pool([-1, -2, 2**63, 2**64, 1.5, None, "1"]))
OFFSETS = pool(st.one_of(st.integers(0, 30_000), st.sampled_from([-1, -1, 0, 4096, 2**40, sys.maxsize]))
               .map(lambda v: ("valid", v)),
               hostile_pool([-2, -(2**63), 2**63, 2**64, 1.5, None]))
ALIGNS = pool(st.sampled_from([0, 0, 0, 0, 512, 4096]).map(lambda v: ("valid", v)),
              hostile_pool([1, 3, 511, 2**21, 2**40, -1, 2**64]))
LENGTHS = st.one_of(st.integers(0, 9000), st.sampled_from([512, 4096, 8192, 65536, 70_000]))
INTO = pool(st.tuples(st.sampled_from(["bytearray", "slice", "mmap", "array"]), LENGTHS),
            st.tuples(st.sampled_from(["bytes", "strided", "released", "str", "none"]), LENGTHS))
DATA = pool(st.tuples(st.sampled_from(["bytearray", "slice", "mmap", "array", "bytes"]), LENGTHS),
            st.tuples(st.sampled_from(["strided", "released", "str", "none"]), LENGTHS))
REQUESTS = pool(st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 30_000)), max_size=40)
                .map(lambda v: ("valid", v)),
                hostile_pool([5, None, [1], [(1, 2, 3)], [[1, 0]], [("1", 0)], [(-1, 0)], [(1, -1)], [(2**63, 0)],
                              [(1, 2**64)], [(1, 0)] * 10 + [(1, -5)]]))
LENGTHS_TRUNCATE = pool(st.integers(0, 30_000).map(lambda v: ("valid", v)), hostile_pool([-1, 2**63, None]))
CHUNKS = pool(st.sampled_from([512, 4096, 65536, 1 << 20, 2**31 - 4096]).map(lambda v: ("valid", v)),
              hostile_pool([0, -1, 2**32, 2**40, "x"]))
DEPTHS = pool(st.integers(1, 16).map(lambda v: ("valid", v)), hostile_pool([0, 17, -1, 2**32, None]))
COPY_SOURCES = pool(st.sampled_from(["file", "rdonly", "out", "dup", "devnull", "dir", "wronly", NOBODY]), st.nothing())
COPY_TARGETS = pool(st.sampled_from(["out", "file", "wronly", "dup", "rdonly", "devnull", NOBODY]),  # not append: endless
                    st.nothing())
OPEN_PATHS = pool(st.sampled_from(["file", "missing", "dir", "new"]), hostile_pool([b"", b"a\0b", "file", None]))
OPEN_FLAGS = pool(st.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR | os.O_CREAT,
                                   os.O_WRONLY | os.O_CREAT | os.O_EXCL, os.O_RDONLY | os.O_DIRECTORY,
                                   os.O_RDWR | os.O_DIRECT]),
                  hostile_pool([2**40, "r"]))
FILE_PATHS = pool(st.sampled_from(["file", "out", "new", "missing", "in_missing", "dir", "devnull"]),
                  hostile_pool([None, 1.5, "a\0b", b""]))
ANY = pool(st.booleans(), st.nothing())
# The path calls work in a namespace of their own, tmp/ns (ringlet's), mirrored in
# tmp/ref for the same call made by os; names relative to it.
NAMES = ("a", "b", "d", "d/x", "d/e", "l", "loop", "gone/x", "a/x")
NS_PATHS = pool(st.sampled_from(NAMES).map(lambda v: ("valid", v)),
                hostile_pool([b"", b"a\0b", "a", None, 7.5, b"n" * 5000, b"/" + b"n" * 300]))
LINK_TARGETS = pool(st.sampled_from([b"a", b"d", b"d/x", b"loop", b"nowhere", b"d/../a"]).map(lambda v: ("valid", v)),
                    hostile_pool([b"", b"a\0b", "a", None]))
RENAME_FLAGS = pool(st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]).map(lambda v: ("valid", v)),
                    hostile_pool([3, 8, -1, 2**32, None]))
MODES = pool(st.sampled_from([0o777, 0o755, 0o700, -1]).map(lambda v: ("valid", v)),
             hostile_pool([2**31, -(2**31) - 1, None, "7"]))
FILENAMES = pool(st.sampled_from([None, "default", "given"]).map(lambda v: ("valid", v)), st.nothing())
SEEDS = pool(st.integers(0, 255), st.nothing())


@dataclass(frozen=True)
class Call:
    name: str
    args: Tuple[Any, ...]

    def __repr__(self) -> str:
        return f"{self.name}{self.args!r}"


SIGNATURES = [(n, FDS, SIZES, OFFSETS, ALIGNS) for n in ("read", "_read", "_pread")]
SIGNATURES += [(n, FDS, INTO, OFFSETS, ALIGNS) for n in ("readinto", "_readinto", "_preadinto")]
SIGNATURES += [(n, FDS, DATA, OFFSETS, ALIGNS, SEEDS) for n in ("write", "_write")] * 2
SIGNATURES += [(n, FDS, REQUESTS) for n in ("read_many", "_read_many")]
SIGNATURES += [("fsync", FDS, ANY), ("ftruncate", FDS, LENGTHS_TRUNCATE), ("statx", FDS),
               ("copy", COPY_SOURCES, COPY_TARGETS, CHUNKS, DEPTHS),
               ("open", OPEN_PATHS, OPEN_FLAGS), ("_open", OPEN_PATHS, OPEN_FLAGS),
               ("close_dup", pool(st.sampled_from(["close", "_close"]), st.nothing())),
               # the whole-file helpers: Engine._read_file and _write_file, and the copy
               ("read_file", FILE_PATHS), ("write_file", FILE_PATHS, DATA, SEEDS),
               ("copy_file", FILE_PATHS, FILE_PATHS)]
PATH_SIGNATURES = [("rename", NS_PATHS, NS_PATHS, RENAME_FLAGS, FILENAMES), ("unlink", NS_PATHS, ANY, FILENAMES),
                   ("mkdir", NS_PATHS, MODES, FILENAMES), ("symlink", LINK_TARGETS, NS_PATHS, FILENAMES),
                   ("link", NS_PATHS, NS_PATHS, ANY, FILENAMES), ("statx_path", NS_PATHS, ANY, FILENAMES)]
PATH_CALLS = tuple(name for name, *_ in PATH_SIGNATURES)
SIGNATURES += PATH_SIGNATURES * 2


def calls(signatures) -> st.SearchStrategy[Call]:
    """Every call twice: with valid arguments only (checked against os when
    alone), and with hostile ones among them; the valid ones twice as often."""
    def make(name, parts):
        return st.tuples(*parts).map(lambda args: Call(name, args))

    valid = [make(name, [p[0] for p in pools]) for name, *pools in signatures]
    anything = [make(name, [p[1] for p in pools]) for name, *pools in signatures]
    return st.one_of(st.one_of(valid), st.one_of(valid), st.one_of(anything))


@dataclass(frozen=True)
class Step:
    calls: Tuple[Call, ...]
    how: str          # "await", "cancel", "drop"
    turns: int        # for "cancel": turns of the loop before it
    resize: bool      # try to resize each bytearray while its call is in flight
    close_under: bool  # os.close the dup descriptor right after the calls are made
    shutdown: bool    # shut the engine down: at once if the calls are dropped, else once they are over
    tracer: str = "none"  # engine.tracer while the step runs: see Tracer
    elsewhere: bool = False  # the calls are made from another thread: each must be refused
    stop: bool = False  # Engine._write_stop(what each call returned), as a cancelled writer asks


def steps(signatures, alone: int) -> st.SearchStrategy[Step]:
    """Steps of these calls: (alone - 1) in alone of them a single call, alone in
    (alone + 2) awaited."""
    return st.builds(
        Step,
        calls=st.tuples(st.integers(0, alone - 1), st.lists(calls(signatures), min_size=2, max_size=5))
        .map(lambda k_calls: tuple(k_calls[1][:1] if k_calls[0] else k_calls[1])),
        how=st.sampled_from(["await"] * alone + ["cancel", "drop"]),
        turns=st.integers(0, 3),
        resize=st.booleans(),
        close_under=st.integers(0, 9).map(lambda k: k == 0),
        shutdown=st.integers(0, 14).map(lambda k: k == 0),
        tracer=st.sampled_from(["none"] * 5 + ["record", "raise", "reenter", "swap", "shutdown"]),
        elsewhere=st.integers(0, 14).map(lambda k: k == 0),
        stop=st.integers(0, 7).map(lambda k: k == 0),
    )


STEPS = steps(SIGNATURES, alone=2)
PATH_STEPS = steps(PATH_SIGNATURES, alone=4)  # the path calls alone, mostly checked


# ---------------------------------------------------------------------------
# the world an example runs in
# ---------------------------------------------------------------------------


class World:
    """Two regular files and descriptors of every kind; contents read from disk."""

    def __init__(self, tmp, first: bytes, second: bytes):
        self.tmp = tmp
        self.paths = {"file": os.path.join(tmp, "file"), "out": os.path.join(tmp, "out"),
                      "dir": tmp, "missing": os.path.join(tmp, "missing"), "new": os.path.join(tmp, "new"),
                      "in_missing": os.path.join(tmp, "missing", "x"), "devnull": os.devnull}
        for name, data in (("file", first), ("out", second)):
            with open(self.paths[name], "wb") as f:
                f.write(data)
        file, out = self.paths["file"], self.paths["out"]
        self.fds = {
            "file": os.open(file, os.O_RDWR), "rdonly": os.open(file, os.O_RDONLY),
            "wronly": os.open(file, os.O_WRONLY), "append": os.open(file, os.O_WRONLY | os.O_APPEND),
            "out": os.open(out, os.O_RDWR), "dir": os.open(tmp, os.O_RDONLY | os.O_DIRECTORY),
            "devzero": os.open("/dev/zero", os.O_RDWR), "devnull": os.open("/dev/null", os.O_RDWR),
        }
        self.fds["dup"] = os.dup(self.fds["file"])
        try:
            self.fds["direct"] = os.open(file, os.O_RDWR | os.O_DIRECT)
        except OSError:  # this file system refuses O_DIRECT: the label names a file without it
            self.fds["direct"] = os.open(file, os.O_RDWR)
        self.fds["pipe_r"], self.fds["pipe_w"] = os.pipe()
        os.set_blocking(self.fds["pipe_w"], False)
        os.write(self.fds["pipe_w"], b"p" * 100)
        self.ns, self.ref = os.path.join(tmp, "ns"), os.path.join(tmp, "ref")
        os.makedirs(os.path.join(self.ns, "d"))
        os.mkdir(self.ref)
        for name, data in (("a", b"A" * 10), ("d/x", b"X")):
            with open(os.path.join(self.ns, name), "wb") as f:
                f.write(data)
        os.symlink("a", os.path.join(self.ns, "l"))
        self.closed_dup = False
        self.dropped_opens: list = []
        self.canaries: list = []  # bytearrays that must not change until the step has settled
        self.tracer: Optional[Tracer] = None  # the step's
        self.reported: list = []  # TracerErrors reported

    def fd(self, spec):
        if isinstance(spec, tuple):
            return spec[1]
        return self.fds[spec] if isinstance(spec, str) else spec

    def content(self, label: str) -> bytes:
        """The bytes of a file: out's, new's, or file's (every other descriptor's)."""
        name = label if label in ("out", "new") else "file"
        with open(self.paths[name], "rb") as f:
            return f.read()

    def path(self, spec):
        return spec[1] if isinstance(spec, tuple) else self.paths[spec]

    def ns_path(self, spec, root=None) -> Any:
        """A name of the path calls' namespace (tmp/ns, or root) as bytes; a hostile value as it is."""
        return os.fsencode(os.path.join(root or self.ns, value(spec))) if spec[0] == "valid" else value(spec)

    def mirror(self):
        """tmp/ref made again as tmp/ns is now: the same names, kinds, modes, bytes,
        link targets and hard links."""
        shutil.rmtree(self.ref)
        os.mkdir(self.ref)
        made = {}  # hard-linked names: where their inode was made first
        for rel, (what, names) in sorted(tree(self.ns).items(), key=lambda item: item[0].count(os.sep)):
            path = os.path.join(self.ref, rel)
            if names in made:
                os.link(made[names], path, follow_symlinks=False)
                continue
            made[names] = path
            if what[0] == "dir":
                os.mkdir(path)
            elif what[0] == "link":
                os.symlink(what[1], path)
            else:
                with open(path, "wb") as f:
                    f.write(what[2])
            if what[0] != "link":
                os.chmod(path, what[1])

    def position(self, label: str) -> int:
        return os.lseek(self.fds[label], 0, os.SEEK_CUR)

    def unsparse(self):
        """After a write far beyond the end: empty the file again (read whole, it
        would be a terabyte)."""
        for name in ("file", "out", "new"):
            if os.path.exists(self.paths[name]) and os.stat(self.paths[name]).st_size > SPARSE:
                os.truncate(self.paths[name], 0)

    def reopen_dup(self):
        """After a step that closed it: the dup again (it shares file's position)."""
        if self.closed_dup:
            self.fds["dup"] = os.dup(self.fds["file"])
            self.closed_dup = False

    def close(self):
        for label, fd in self.fds.items():
            if not (label == "dup" and self.closed_dup):
                os.close(fd)


def make_buffer(spec, fill: int = 0xEE, into: bool = True):
    """(the object to pass, the bytearray-like that holds its bytes or None, hostile?):
    bytes are hostile only for a call that reads into them."""
    kind, n = spec
    if kind == "bytearray":
        b = bytearray([fill]) * n
        return b, b, False
    if kind == "slice":
        b = bytearray([fill]) * (n + 8)
        return memoryview(b)[4:4 + n], memoryview(b)[4:4 + n], False
    if kind == "mmap":
        if n == 0:
            b = bytearray()
            return b, b, False
        m = mmap.mmap(-1, n)
        m.write(bytes([fill]) * n)
        return m, m, False
    if kind == "array":
        a = array.array("B", [fill]) * n
        return a, a, False
    if kind == "bytes":
        b = bytes([fill]) * n
        return b, (None if into else b), into
    if kind == "strided":
        return memoryview(bytearray(2 * n + 2))[::2], None, True
    if kind == "released":
        v = memoryview(bytearray(n))
        v.release()
        return v, None, True
    return ("x" * n if kind == "str" else None), None, True


def value(spec):
    return spec[1]


def hostile(*specs) -> bool:
    return any(isinstance(s, tuple) and s[0] == "hostile" for s in specs)


# ---------------------------------------------------------------------------
# what a valid call must give: ("ok", value), ("errno", n) or None (no exact reference)
# ---------------------------------------------------------------------------


def read_reference(w: World, fd_spec, size: int, offset: int, align: int, name: str):
    if name.startswith("_pread") and offset == -1:
        return ("raises", ValueError)  # a positional read: -1 is a negative offset here
    if offset + size > sys.maxsize:
        return None  # EINVAL (before or after EBADF), or the engine cut the size to the file's first
    if not isinstance(fd_spec, str):
        return ("errno", errno.EBADF)
    if fd_spec in PIPES:
        return None  # ESPIPE or EBADF, data or a wait: what a pipe gives is the kernel's
    if fd_spec in ("wronly", "append"):
        return ("errno", errno.EBADF)
    if fd_spec == "dir":  # (read_many reads as preadv does: nothing from a directory without asking it)
        return ("ok", b"") if name.endswith("read_many") and size == 0 else ("errno", errno.EISDIR)
    if fd_spec in PIPES or (offset == -1 and align):
        return None
    if fd_spec == "direct" and not align:
        return None  # O_DIRECT without the engine's bounce buffer: the kernel decides
    if fd_spec == "devnull":
        return ("ok", b"")
    if fd_spec == "devzero":
        return ("ok", bytes(size)) if size <= 1 << 20 else None
    start = w.position(fd_spec) if offset == -1 else offset
    return ("ok", w.content(fd_spec)[start:start + size])


def write_reference(w: World, fd_spec, data: bytes, offset: int, align: int):
    if align and offset == -1:
        return None  # the position's alignment is the descriptor's
    if offset + len(data) > sys.maxsize:
        return None  # EINVAL, before or after EBADF
    if align and (offset % align or len(data) % align):
        return ("raises", ValueError)  # the arguments are checked before the descriptor
    if not isinstance(fd_spec, str):
        return ("errno", errno.EBADF)
    if fd_spec in ("rdonly", "dir", "pipe_r"):
        return ("errno", errno.EBADF)
    if fd_spec in PIPES or (fd_spec == "direct" and not align):
        return None
    return ("ok", len(data))


def expected_content(fd_spec, data: bytes, offset: int, before: bytes, position: int) -> bytes:
    if fd_spec == "append" or not data:
        return before + data  # (a write of nothing does not grow the file)
    at = position if offset == -1 else offset
    grown = before.ljust(at, b"\0")
    return grown[:at] + data + grown[at + len(data):]


# ---------------------------------------------------------------------------
# running a step
# ---------------------------------------------------------------------------


class Made:
    """One call made: what it returned (or raised at once), and what to check."""

    def __init__(self, call: Call):
        self.call = call
        self.awaitable = None
        self.raised: Optional[BaseException] = None
        self.result: Any = None
        self.done = False
        self.holder = None     # the bytearray-like the call reads into / writes from
        self.data = b""
        self.check = None      # a function(made) for a valid call alone and awaited
        self.on_pipe = False
        self.in_flight = False  # the engine counted it in flight when it returned
        self.copied = False     # an O_DIRECT write copies its data at once: the buffer is free


def make_call(w: World, engine, call: Call, alone: bool) -> Made:
    made = Made(call)
    name, args = call.name, call.args
    try:
        if name in ("read", "_read", "_pread"):
            fd_spec, size, offset, align = args
            made.on_pipe = fd_spec in PIPES
            if fd_spec in ("devzero",) + PIPES and size[0] == "valid":
                size = ("valid", min(size[1], 1 << 16))  # /dev/zero would fill gigabytes
            if not hostile(fd_spec, size, offset, align):
                ref = read_reference(w, fd_spec, value(size), value(offset), value(align), name)
                made.check = lambda m, ref=ref: check_outcome(m, ref)
            made.awaitable = getattr(engine, name)(w.fd(fd_spec), value(size), value(offset), value(align))
        elif name in ("readinto", "_readinto", "_preadinto"):
            fd_spec, buf, offset, align = args
            obj, made.holder, bad = make_buffer(buf)
            made.on_pipe = fd_spec in PIPES
            if not (bad or hostile(fd_spec, offset, align)):
                ref = read_reference(w, fd_spec, buf[1], value(offset), value(align), name)
                made.check = lambda m, ref=ref, n=buf[1]: check_readinto(m, ref, n)
            made.awaitable = getattr(engine, name)(w.fd(fd_spec), obj, value(offset), value(align))
        elif name in ("write", "_write"):
            fd_spec, buf, offset, align, seed = args
            obj, made.holder, bad = make_buffer(buf, fill=seed, into=False)
            made.data = bytes(made.holder) if made.holder is not None else b""
            made.copied = isinstance(value(align), int) and value(align) > 0
            made.on_pipe = fd_spec in PIPES
            if not (bad or hostile(fd_spec, offset, align)):
                ref = write_reference(w, fd_spec, made.data, value(offset), value(align))
                made.check = write_check(w, fd_spec, made.data, value(offset), ref)
            made.awaitable = getattr(engine, name)(w.fd(fd_spec), obj, value(offset), value(align))
        elif name in ("read_many", "_read_many"):
            fd_spec, requests = args
            made.on_pipe = fd_spec in PIPES
            if not hostile(fd_spec, requests):
                refs = [read_reference(w, fd_spec, size, offset, 0, name) for size, offset in value(requests)]
                made.check = lambda m, refs=refs: check_read_many(m, refs)
            made.awaitable = getattr(engine, name)(w.fd(fd_spec), value(requests))
        elif name == "fsync":
            fd_spec, datasync = args
            made.on_pipe = fd_spec in PIPES
            if isinstance(fd_spec, str) and fd_spec in REGULAR:
                made.check = lambda m: check_outcome(m, ("ok", None))
            made.awaitable = engine.fsync(w.fd(fd_spec), datasync)
        elif name == "ftruncate":
            fd_spec, length = args
            made.on_pipe = fd_spec in PIPES
            if not hostile(fd_spec, length) and isinstance(fd_spec, str) and fd_spec in WRITABLE \
                    and fd_spec != "append":
                made.check = truncate_check(w, fd_spec, value(length))
            made.awaitable = engine.ftruncate(w.fd(fd_spec), value(length))
        elif name == "statx":
            (fd_spec,) = args
            made.on_pipe = fd_spec in PIPES
            if isinstance(fd_spec, str) and fd_spec in REGULAR:
                size = len(w.content(fd_spec))
                made.check = lambda m, size=size: check_outcome(m, ("ok", size), lambda r: r.st_size)
            made.awaitable = engine.statx(w.fd(fd_spec))
        elif name == "copy":
            src, dst, chunk, depth = args
            if not hostile(chunk, depth):
                made.check = copy_check(w, src, dst)
            made.awaitable = engine.copy(w.fd(src), w.fd(dst), value(chunk), value(depth))
        elif name in ("open", "_open"):
            path, flags = args
            raw = value(path) if isinstance(path, tuple) else os.fsencode(w.paths[path])
            made.awaitable = getattr(engine, name)(raw, value(flags) if isinstance(flags, tuple) else flags)
        elif name == "read_file":
            (path,) = args
            if not isinstance(path, tuple):
                made.check = lambda m, ref=whole_file_reference(w, path): check_outcome(m, ref)
            made.awaitable = ringlet.read_file(w.path(path))
        elif name == "write_file":
            path, buf, seed = args
            obj, made.holder, bad = make_buffer(buf, fill=seed, into=False)
            made.data = bytes(made.holder) if made.holder is not None else b""
            if not (bad or isinstance(path, tuple)):
                made.check = write_file_check(w, path, made.data)
            made.awaitable = ringlet.write_file(w.path(path), obj)
        elif name == "copy_file":
            src, dst = args
            if not (isinstance(src, tuple) or isinstance(dst, tuple)):
                made.check = copy_file_check(w, src, dst)
            made.awaitable = ringlet.copy_file(w.path(src), w.path(dst))
        elif name in PATH_CALLS:
            made.awaitable = make_path_call(w, engine, made, alone)
        elif name == "close_dup":
            (how,) = args
            first_close, w.closed_dup = not w.closed_dup, True
            try:
                made.awaitable = getattr(engine, how)(w.fds["dup"])
            except RuntimeError:
                if first_close:  # refused by a closed engine: the number is still open
                    os.close(w.fds["dup"])
                raise
        else:  # pragma: no cover - the strategy names every call
            raise AssertionError(name)
    except (*ALLOWED, RuntimeError) as exc:  # (run_step says where RuntimeError may be)
        made.raised, made.done = exc, True
    return made


def whole_file_reference(w: World, path: str):
    """What reading the file at path gives, or the errno it fails with."""
    try:
        with open(w.path(path), "rb") as f:
            return ("ok", f.read())
    except OSError as exc:
        return ("errno", exc.errno)


def write_file_check(w: World, path: str, data: bytes):
    if path == "dir":
        return lambda m: check_outcome(m, ("errno", errno.EISDIR))
    if path == "in_missing":  # (an earlier open may have made "missing", a file)
        return lambda m, e=errno.ENOTDIR if os.path.exists(w.paths["missing"]) else errno.ENOENT: \
            check_outcome(m, ("errno", e))
    return lambda m: check_file(w, m, len(data), path, data)


def check_file(w: World, made: Made, result: int, path: str, content: bytes):
    """made gave result, and the file at path holds content (/dev/null: nothing)."""
    check_outcome(made, ("ok", result))
    with open(w.path(path), "rb") as f:
        assert f.read() == (b"" if path == "devnull" else content), f"{made.call}: the file holds other bytes"


def copy_file_check(w: World, src: str, dst: str):
    source = whole_file_reference(w, src)
    if source[0] != "ok":
        return lambda m: check_outcome(m, source)
    if dst in ("dir", "in_missing") or src == dst or {src, dst} == {"devnull"}:
        return lambda m: None  # IsADirectoryError, ENOENT, shutil's SameFileError: errors of its own
    return lambda m: check_file(w, m, len(source[1]), dst, source[1])


def check_outcome(made: Made, ref, convert=lambda r: r):
    if ref is None:
        return
    kind, want = ref
    if kind == "ok":
        assert made.raised is None, f"{made.call}: raised {made.raised!r}, expected {want!r:.80}"
        assert convert(made.result) == want, f"{made.call}: gave {convert(made.result)!r:.80}, expected {want!r:.80}"
    elif kind == "errno":
        assert isinstance(made.raised, OSError) and made.raised.errno == want, \
            f"{made.call}: gave {made.result!r:.80} / {made.raised!r}, expected errno {errno.errorcode[want]}"
    else:
        assert isinstance(made.raised, want), f"{made.call}: gave {made.result!r:.80} / {made.raised!r}, expected {want}"


def check_readinto(made: Made, ref, n: int):
    if ref is not None and ref[0] == "ok":
        want = ref[1]
        check_outcome(made, ("ok", len(want)))
        got = bytes(made.holder)
        assert got[:len(want)] == want and got[len(want):] == b"\xee" * (n - len(want)), \
            f"{made.call}: the buffer holds other bytes than the file's (or past the count)"
    else:
        check_outcome(made, ref)


def check_read_many(made: Made, refs):
    for ref in refs:
        if ref is None:
            return
        if ref[0] != "ok":
            return check_outcome(made, ref)
    check_outcome(made, ("ok", [r[1] for r in refs]))


def write_check(w: World, fd_spec, data: bytes, offset: int, ref):
    if ref is None or ref[0] != "ok" or fd_spec not in REGULAR:
        return lambda m: check_outcome(m, ref)
    position = w.position(fd_spec)
    if (position if offset == -1 else offset) + len(data) > SPARSE:
        return lambda m: check_outcome(m, ref)
    before = w.content(fd_spec)
    want = expected_content(fd_spec, data, offset, before, position)

    def check(made: Made):
        check_outcome(made, ref)
        assert w.content(fd_spec) == want, f"{made.call}: the file does not hold what was written"
        if offset == -1 and fd_spec != "append":
            assert w.position(fd_spec) == position + len(data), f"{made.call}: the position did not move by it"
    return check


def truncate_check(w: World, fd_spec, length: int):
    before = w.content(fd_spec)
    want = before[:length].ljust(length, b"\0")

    def check(made: Made):
        check_outcome(made, ("ok", None))
        assert w.content(fd_spec) == want, f"{made.call}: the file's length is not {length}"
    return check


def copy_check(w: World, src, dst):
    if not (isinstance(src, str) and isinstance(dst, str)):
        return lambda m: check_outcome(m, ("errno", errno.EBADF))  # a number nobody opened
    if src in ("dir", "devnull") or dst == "devnull":
        return lambda m: None  # what the kernel makes of these is its own (EISDIR, EINVAL, 0)
    if src == "wronly":
        return lambda m: check_outcome(m, ("errno", errno.EBADF))
    if not w.content(src):
        return lambda m: None  # nothing to copy: whether dst is written to is the engine's choice
    if dst == "rdonly":
        return lambda m: check_outcome(m, ("errno", errno.EBADF))
    data = w.content(src)
    before = w.content(dst)
    want = data + before[len(data):]

    def check(made: Made):
        check_outcome(made, ("ok", len(data)))
        assert w.content(dst) == want, f"{made.call}: the copy does not hold the source's bytes"
    return check


def tree(root: str) -> dict:
    """Every name under root (symlinks not followed): its kind, mode, bytes or
    link target, and the names sharing its inode (hard links)."""
    entries, names_of = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel, st_ = os.path.relpath(path, root), os.lstat(path)
            names_of.setdefault(st_.st_ino, []).append(rel)
            if stat.S_ISLNK(st_.st_mode):
                what = ("link", os.readlink(path))
            elif stat.S_ISDIR(st_.st_mode):
                what = ("dir", stat.S_IMODE(st_.st_mode))
            else:
                with open(path, "rb") as f:
                    what = ("file", stat.S_IMODE(st_.st_mode), f.read())
            entries[rel] = (what, st_.st_ino)
    return {rel: (what, tuple(sorted(names_of[ino]))) for rel, (what, ino) in entries.items()}


LIBC = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400
STAT_FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_ctime_ns")


def libc(name: str, *args):
    """A libc call the os module does not make as such (renameat2, linkat following)."""
    if getattr(LIBC, name)(*args) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def path_reference(w: World, call: Call):
    """The path call made by os on tmp/ref, mirrored from tmp/ns now:
    ("ok", None) or ("errno", n)."""
    w.mirror()
    name, args = call.name, call.args

    def ref(spec):
        return w.ns_path(spec, w.ref)
    try:
        if name == "rename":
            libc("renameat2", AT_FDCWD, ref(args[0]), AT_FDCWD, ref(args[1]), value(args[2]))
        elif name == "unlink":
            (os.rmdir if args[1] else os.unlink)(ref(args[0]))
        elif name == "mkdir":
            os.mkdir(ref(args[0]), value(args[1]))
        elif name == "symlink":
            os.symlink(value(args[0]), ref(args[1]))
        elif name == "link":
            libc("linkat", AT_FDCWD, ref(args[0]), AT_FDCWD, ref(args[1]), AT_SYMLINK_FOLLOW if args[2] else 0)
        else:
            os.stat(ref(args[0]), follow_symlinks=args[1])
    except OSError as exc:
        return ("errno", exc.errno)
    return ("ok", None)


def path_check(w: World, call: Call, paths, names):
    """paths: the bytes the call was given; names: the filename (filename2) its
    error must carry."""
    ref = path_reference(w, call)

    def check(made: Made):
        if call.name == "statx_path" and ref[0] == "ok":
            check_outcome(made, ("ok", None), lambda r: None)
            now = os.stat(paths[0], follow_symlinks=call.args[1])
            assert {f: getattr(made.result, f) for f in STAT_FIELDS} == {f: getattr(now, f) for f in STAT_FIELDS}, \
                f"{made.call}: gave another stat than os.stat"
        else:
            check_outcome(made, ref)
        if ref[0] == "errno":
            got = (made.raised.filename, made.raised.filename2)[:len(names)]
            assert got == names, f"{made.call}: its error names {got!r}, not {names!r}"
        assert tree(w.ns) == tree(w.ref), f"{made.call}: the names are not those os.{call.name} leaves"
    return check


def make_path_call(w: World, engine, made: Made, alone: bool):
    """A path call (its last argument: the filename to pass, or "default")."""
    call = made.call
    *operands, filename = call.args
    two = call.name in ("rename", "symlink", "link")
    paths = [value(operands[0]) if call.name == "symlink" else w.ns_path(operands[0])]
    if two:
        paths.append(w.ns_path(operands[1]))
    kw, names = {}, tuple(paths)
    if value(filename) != "default":
        kw = {"filename": value(filename), **({"filename2": "given2"} if two else {})}
        # (OSError keeps filename2 only beside a filename)
        names = (value(filename), None if value(filename) is None else "given2")[:len(paths)]
    if alone and not hostile(*call.args):
        made.check = path_check(w, call, paths, names)
    rest = [value(a) if isinstance(a, tuple) else a for a in operands[2 if two else 1:]]
    if call.name == "statx_path":
        return engine.statx(paths[0], follow_symlinks=rest[0], **kw)
    return getattr(engine, call.name)(*paths, *rest, **kw)


class TracerError(Exception):
    """What the "raise" tracer raises."""


class Tracer:
    """engine.tracer for a step.  Every mode keeps the records; "raise" raises
    TracerError from each (every one must reach the loop's exception handler); "reenter" makes up to three reads of its own
    from inside; "swap" puts another tracer in its place; "shutdown" shuts the
    engine down (at once, when an operation is over; calls made after it may
    raise RuntimeError)."""

    def __init__(self, mode: str, engine, w: World):
        self.mode, self.engine, self.w = mode, engine, w
        self.records: list = []
        self.futures: list = []
        self.reads = 0
        self.successor = Tracer("record", engine, w) if mode == "swap" else None
        self.shut_down = False

    def __call__(self, record):
        self.records.append(record)
        if self.mode == "raise":
            raise TracerError(record["op"])
        if self.mode == "reenter" and self.reads < 3:
            self.reads += 1  # (before the read: one completed inline calls the tracer again from inside)
            try:
                future = self.engine.read(self.w.fds["file"], 16, 0)
            except RuntimeError:
                assert self.engine.closed, "the engine refused a read made from its tracer"
                return
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.futures.append(future)
        elif self.mode == "swap":
            self.engine.tracer = self.successor
        elif self.mode == "shutdown" and not self.engine.closed:
            self.shut_down = True
            self.engine.shutdown(2.0)

    async def reads_ended(self):
        """The reads it made are over.  (Not always once nothing is in flight: a
        read completed inline while the loop's turn was spent is resolved by
        call_soon, at the next turn: op_hand_over in csrc/py/op.c.)"""
        assert await wait_until(lambda: self.engine.closed or all(f.done() for f in self.futures), CALL_TIMEOUT), \
            "a read made by the tracer never ended"

    def check(self):
        """Once the step has settled and its reads ended."""
        w = self.w
        for record in self.records + (self.successor.records if self.successor else []):
            assert sorted(record) == sorted(TRACE_KEYS), f"a trace record with other keys: {record}"
            # (an operation completed inline was reaped before its call returned)
            order = ("submitted", "reaped", "resolved", "returned", "resumed") if record["inline"] else STAMPS
            stamps = [record[k] for k in order if record[k] is not None]
            assert stamps == sorted(stamps), f"a trace record's moments are out of order: {record}"
        if self.mode == "raise":
            assert len(w.reported) == len(self.records), \
                f"the tracer raised {len(self.records)} times, {len(w.reported)} reported"
        if not self.engine.closed:
            self.engine.tracer = None
        w.reported.clear()


async def run_elsewhere(w: World, engine, step: Step):
    """The step's engine calls, made from another thread: each is refused
    (RuntimeError, or the error of a hostile argument checked first; _pread
    and _preadinto give None, for the caller to raise) and nothing begins."""
    calls = [c for c in step.calls if c.name not in ("read_file", "write_file", "copy_file", "close_dup")]
    in_flight = engine.stats()["in_flight"]
    made = await asyncio.get_running_loop().run_in_executor(
        None, lambda: [make_call(w, engine, call, False) for call in calls])
    for m in made:
        if m.call.name in ("_pread", "_preadinto") and not m.done and m.awaitable is None:
            continue
        assert isinstance(m.raised, RuntimeError) or (hostile(*m.call.args) and m.raised is not None), \
            f"{m.call} from another thread: {m.raised!r} / {m.awaitable!r}"
    assert engine.stats()["in_flight"] == in_flight, "a call from another thread began"
    return made


async def outcome_of(made: Made, deadline: float):
    """Await made's awaitable; record its result or exception."""
    if made.done:
        return
    try:
        made.result = await asyncio.wait_for(_awaited(made.awaitable), deadline)
    except asyncio.TimeoutError:
        assert made.on_pipe, f"{made.call} did not complete in {deadline} s"
        made.raised = asyncio.TimeoutError()
    except (*ALLOWED, RuntimeError) as exc:  # RuntimeError: only for a call the engine's shutdown overtook
        made.raised = exc
    made.done = True


async def _awaited(awaitable):
    return await awaitable


def try_resize(made: Made):
    """A call the kernel (or a worker) may still write to or read from must hold its
    buffer.  Right after the call, before the loop turns, nothing can have reaped it."""
    holder = made.holder
    if isinstance(holder, bytearray) and len(holder):
        try:
            holder.extend(b"x")
        except BufferError:
            return
        assert not made.in_flight or made.copied, f"{made.call}: its buffer was resized while the call was in flight"
        del holder[-1:]


def close_quietly(fd):
    """Close what an open gave.  A close of the dup in the same step may have
    closed it already (the open took the dup's number)."""
    if isinstance(fd, int):
        try:
            os.close(fd)
        except OSError:
            pass


def whole_file_calls_apart(calls):
    """The calls, less those that read a whole file if another writes far beyond
    its end meanwhile: that would make them read (or copy) a terabyte."""
    def sparse(call):
        return call.name in ("write", "_write") and isinstance(value(call.args[2]), int) and \
            value(call.args[2]) > SPARSE
    if not any(sparse(call) for call in calls):
        return calls
    return [call for call in calls if call.name not in ("read_file", "copy_file", "copy")]


async def run_step(w: World, step: Step):
    engine = ringlet.get_engine()
    if step.elsewhere:
        return await run_elsewhere(w, engine, step)
    w.tracer = tracer = None if step.tracer == "none" else Tracer(step.tracer, engine, w)
    engine.tracer = tracer
    if step.tracer == "shutdown":  # the calls a shutdown overtakes are never resolved: nobody awaits them
        step = replace(step, how="drop")
    # (a stopped write may end with ECANCELED or part-way: example() checks it)
    alone = len(step.calls) == 1 and step.how == "await" and not step.close_under and not step.stop
    made = []
    for call in whole_file_calls_apart(step.calls):
        in_flight, tracer_reads = engine.stats()["in_flight"], tracer.reads if tracer else 0
        m = make_call(w, engine, call, alone)
        # (less the reads a "reenter" tracer made inside the call)
        m.in_flight = engine.stats()["in_flight"] - in_flight > (tracer.reads if tracer else 0) - tracer_reads
        if step.resize:
            try_resize(m)
        made.append(m)
    if step.stop:  # (any object: only a write the engine holds is stopped)
        for m in made:
            engine._write_stop(m.awaitable)
    if step.close_under and not w.closed_dup:
        os.close(w.fds["dup"])
        w.closed_dup = True
    tasks, dropped, opens = [], [], []
    for m in made:
        if m.done:
            continue
        if step.how == "drop" and not m.on_pipe:  # (a pipe's read may wait for ever: it is awaited)
            # Nobody awaits: the engine alone keeps the buffer alive until the kernel is done.
            if m.holder is not None and len(m.holder) >= 512 and m.in_flight:
                dropped.append(len(m.holder))
            if m.call.name in ("open", "_open"):
                opens.append(m.awaitable)  # its descriptor must still be closed
            elif hasattr(m.awaitable, "add_done_callback"):  # (its error is nobody's: not logged)
                m.awaitable.add_done_callback(lambda f: f.cancelled() or f.exception())
            m.awaitable = m.holder = None
            continue
        deadline = PIPE_TIMEOUT if m.on_pipe else CALL_TIMEOUT
        tasks.append(asyncio.ensure_future(outcome_of(m, deadline)))
    if dropped:
        # Canaries where a dropped buffer freed too early would be reused: the
        # kernel's late bytes would land in them.
        gc.collect()
        w.canaries = [bytearray(b"\xc5") * n for n in dropped for _ in range(CANARIES)]
    if step.shutdown and step.how == "drop":
        # With the dropped calls in flight: the engine keeps their memory until
        # the kernel is done, and closes what an open still returns.  An open
        # already resolved gave its descriptor to the caller.
        engine.shutdown(2.0)
        opens = [f for f in opens if not hasattr(f, "done") or f.done()]  # (a Ready has its descriptor)
    w.dropped_opens += opens
    if step.how == "cancel":
        for _ in range(step.turns):
            await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            raise r
    for m in made:
        if not m.done and hasattr(m.awaitable, "cancel"):
            m.awaitable.cancel()  # its task was cancelled before it began to await it
    for m in made:
        if m.call.name in ("open", "_open"):
            if m.done:
                close_quietly(m.result)
            elif m.awaitable is not None:
                w.dropped_opens.append(m.awaitable)  # cancelled: it may still open
        if isinstance(m.raised, RuntimeError) and not (step.shutdown and step.how == "drop") and \
                not (tracer and tracer.shut_down):
            raise AssertionError(f"{m.call} raised {m.raised!r}")
        if hostile(*m.call.args) and m.done and m.raised is None:
            raise AssertionError(f"{m.call}: a hostile argument was taken, giving {m.result!r:.80}")
    if alone and made[0].check is not None:
        made[0].check(made[0])
    return made


async def example(tmp: str, first: bytes, second: bytes, steps):
    w = World(tmp, first, second)

    def handler(loop, context):
        if isinstance(context.get("exception"), TracerError):
            w.reported.append(context["exception"])
        else:
            loop.default_exception_handler(context)
    asyncio.get_running_loop().set_exception_handler(handler)
    try:
        for step in steps:
            before = w.content(step.calls[0].args[0]) if _one_cancelled_write(step) else None
            made = await run_step(w, step)
            await settled(ringlet.get_engine())  # (a cancelled write may still be with the kernel)
            if before is not None:
                (check_stopped_write if step.how == "await" else check_cancelled_write)(w, made[0], before)
            if w.tracer is not None:
                await w.tracer.reads_ended()
                w.tracer.check()
                if w.tracer.shut_down:  # an open it overtook is never resolved: the engine closed what it gave
                    w.dropped_opens = [f for f in w.dropped_opens if not hasattr(f, "done") or f.done()]
                w.tracer = None
            assert all(c.count(0xC5) == len(c) for c in w.canaries), "a dropped call wrote into memory it no longer held"
            w.canaries = []
            w.reopen_dup()
            w.unsparse()
            if step.shutdown and step.how != "drop":
                ringlet.get_engine().shutdown(2.0)
        for opened in w.dropped_opens:  # (all complete: settled, or resolved before a shutdown)
            (result,) = await asyncio.gather(asyncio.wait_for(_awaited(opened), CALL_TIMEOUT), return_exceptions=True)
            assert not isinstance(result, asyncio.TimeoutError), "an open was never resolved"
            close_quietly(result)
    finally:
        w.close()


def _one_cancelled_write(step: Step) -> bool:
    """A write alone: cancelled, or awaited and stopped (step.stop)."""
    stopped = step.stop and step.how == "await" and not (step.close_under or step.elsewhere)
    cancelled = not step.stop and step.how == "cancel"
    if len(step.calls) != 1 or not (stopped or cancelled) or step.calls[0].name not in ("write", "_write") or \
            step.tracer == "shutdown":
        return False
    fd_spec, _, offset, _, _ = step.calls[0].args
    return fd_spec in ("file", "wronly", "dup", "out") and isinstance(value(offset), int) and value(offset) < SPARSE


def check_cancelled_write(w: World, made: Made, before: bytes):
    """Cancelled or not, a write lands whole or not at all."""
    if made.raised is not None and not isinstance(made.raised, asyncio.CancelledError):
        return
    fd_spec, _, offset, _, _ = made.call.args
    after = w.content(fd_spec)
    if after == before:
        return
    at = value(offset)
    if at == -1:
        return  # the position moved as the call ran: where it wrote is not known here
    assert after == expected_content(fd_spec, made.data, at, before, 0), \
        f"{made.call}: a cancelled write left part of its data"


def check_stopped_write(w: World, made: Made, before: bytes):
    """A write stopped before it began ends with ECANCELED, nothing written; one
    stopped part-way gives the count it wrote (a valid one alone)."""
    if hostile(*made.call.args) or made.call.args[0] == "append" or value(made.call.args[3]):
        return  # (O_APPEND: where it lands is the file's end; O_DIRECT: the bounce buffer's sizes)
    if isinstance(made.raised, OSError) and made.raised.errno == errno.ECANCELED:
        assert w.content(made.call.args[0]) == before, f"{made.call}: stopped with ECANCELED, but it wrote"
        return
    if made.raised is not None:
        return
    fd_spec, _, offset, _, _ = made.call.args
    n = made.result
    assert 0 <= n <= len(made.data), f"{made.call}: stopped, gave {n}"
    if value(offset) != -1:
        assert w.content(fd_spec) == expected_content(fd_spec, made.data[:n], value(offset), before, 0), \
            f"{made.call}: stopped, gave {n}, but the file holds other bytes"


FIRST = st.one_of(st.binary(max_size=3000), st.integers(0, 3).map(lambda k: bytes(range(256)) * (k * 40)))


FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, phases=PHASES,
                         derandomize=DERANDOMIZE, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large,
                                                                         HealthCheck.function_scoped_fixture])


@FUZZ_SETTINGS
@given(first=FIRST, second=FIRST, steps=st.lists(STEPS, min_size=1, max_size=STEPS_MAX))
@pytest.mark.timeout(600)
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")  # a dropped call of the thread engine's
def test_engine_entry_points_take_anything(backend, tmp_path_factory, first, second, steps):
    run_example(tmp_path_factory, first, second, steps)


@FUZZ_SETTINGS
@given(steps=st.lists(PATH_STEPS, min_size=1, max_size=STEPS_MAX))
@pytest.mark.timeout(600)
def test_path_calls_do_what_os_does(backend, tmp_path_factory, steps):
    run_example(tmp_path_factory, b"", b"", steps)


def run_example(tmp_path_factory, first: bytes, second: bytes, steps):
    tmp = str(tmp_path_factory.mktemp("fuzz"))
    live_before, fds_before = _ringlet._live(), fd_count()
    asyncio_run(example(tmp, first, second, steps))  # (uvloop with RINGLET_TEST_LOOP=uvloop)
    gc.collect()
    assert _ringlet._live() == live_before, "an Op, bounce buffer or copy outlived its example"
    assert fd_count() == fds_before, "a descriptor leaked"


# ---------------------------------------------------------------------------
# what the fuzzer found, as plain tests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["read", "_read", "_pread", "readinto", "_readinto", "_preadinto", "read_many"])
@pytest.mark.parametrize("where", ["write-only", "directory", "nobody"])
def test_a_read_of_nothing_gets_the_kernels_error(run, tmp_path, call, where):
    """os.pread(fd, 0, 3) asks the kernel, which says EBADF for a file not open
    for reading and EISDIR for a directory; the engine used to answer b'' (or 0)
    itself, and read_many did on io_uring only."""
    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = {"write-only": lambda: os.open(path, os.O_WRONLY), "directory": lambda: os.open(tmp_path, os.O_RDONLY),
          "nobody": lambda: NOBODY}[where]()
    args = {"read": (0, 3), "_read": (0, 3), "_pread": (0, 3), "read_many": ([(0, 3)],)}.get(call, (bytearray(0), 3))

    async def main():
        return await getattr(ringlet.get_engine(), call)(fd, *args)

    def outcome(fn):
        try:
            return fn()
        except OSError as exc:
            return errno.errorcode[exc.errno]

    def preadv_nothing():  # read_many reads as preadv does: nothing from a directory, without asking it
        os.preadv(fd, [bytearray(0)], 3)
        return [b""]

    reference = preadv_nothing if call == "read_many" else lambda: os.pread(fd, 0, 3)
    try:
        want = outcome(reference)
        assert want in ("EBADF", "EISDIR") or call == "read_many" and where == "directory"
        assert outcome(lambda: run(main())) == want
    finally:
        if fd != NOBODY:
            os.close(fd)


def test_a_copy_cancelled_then_shut_down_closes_its_descriptors(run, tmp_path):
    """The thread engine's copy works on duplicates of the two descriptors,
    closed one after the other as it ends.  Cancelled, and the engine shut down
    between those two closes, it could not begin the second (the engine
    refused it), and the duplicate stayed open."""
    out = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    null = os.open(os.devnull, os.O_RDONLY)
    before = fd_count()

    async def one_round(turns):
        engine = ringlet.get_engine()
        copy = asyncio.ensure_future(engine.copy(null, out))
        await asyncio.sleep(0)
        copy.cancel()
        for _ in range(turns):  # one of them ends between the two closes
            await asyncio.sleep(0.001)
        engine.shutdown(2.0)
        await asyncio.gather(copy, return_exceptions=True)

    try:
        for turns in list(range(10)) * 3:
            run(one_round(turns))
            assert fd_count() == before, f"a descriptor leaked after {turns} turns"
    finally:
        os.close(out)
        os.close(null)


def test_a_dropped_copy_in_flight_at_shutdown_closes_its_descriptors(run, tmp_path):
    """Nobody held the thread engine's copy task but the future it waited for,
    which a shutdown leaves unresolved: the garbage collector took the task
    unfinished ("Task was destroyed but it is pending!"), and its two
    duplicates were never closed (a hunt under uvloop found it)."""
    with open(tmp_path / "src", "wb") as f:
        f.write(os.urandom(1 << 20) * 16)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    before = fd_count()

    async def one_round(turns):
        engine = ringlet.get_engine()
        engine.copy(src, dst, 65536, 1)  # dropped
        for _ in range(turns):  # the copy under way (a chunk in a worker) when the engine shuts down
            await asyncio.sleep(0)
        engine.shutdown(2.0)
        gc.collect()
        await asyncio.sleep(0)

    try:
        for turns in list(range(6)) * 3:
            run(one_round(turns))
            gc.collect()
            assert fd_count() == before, f"a descriptor leaked after {turns} turns"
    finally:
        os.close(src)
        os.close(dst)


def test_a_copy_under_way_when_its_loop_closes_closes_its_descriptors(tmp_path):
    """Closing the loop shuts its engine down (the loop's reader lets go of
    it), after the loop is marked closed: the thread engine's cancel of its
    copy task raised RuntimeError there, before it closed the copy's two
    duplicates.  The task is then destroyed unfinished: its finally must not
    make a new event loop (asyncio.gather() of nothing did, where the thread
    had none set, as in a new process: hence a fresh policy here)."""
    with open(tmp_path / "src", "wb") as f:
        f.write(os.urandom(1 << 20) * 16)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    before = fd_count()

    async def start_a_copy():
        engine = ringlet.get_engine()
        copy = engine.copy(src, dst, 65536, 1)
        await asyncio.sleep(0)
        return engine, copy

    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(type(policy)())
    try:
        loop = asyncio.new_event_loop()
        engine, copy = loop.run_until_complete(start_a_copy())
        loop.close()
        assert engine.closed
        del copy, engine
        gc.collect()
        assert fd_count() == before
    finally:
        asyncio.set_event_loop_policy(policy)
        os.close(src)
        os.close(dst)


@pytest.mark.parametrize("call", ["read", "readinto", "write"])
def test_o_direct_at_the_position_of_a_closed_descriptor_is_ebadf(run, call):
    """With align > 0 and offset -1 the engine asks the descriptor for its
    position; for a number nobody opened, it said the file had no offsets
    (ValueError) where every other call says EBADF."""
    arg = {"read": 4096, "readinto": bytearray(4096), "write": bytes(4096)}[call]

    async def main():
        return await getattr(ringlet.get_engine(), call)(NOBODY, arg, -1, 4096)

    with pytest.raises(OSError) as raised:
        run(main())
    assert raised.value.errno == errno.EBADF


def test_a_copy_takes_its_descriptors_when_called(run, tmp_path):
    """The thread engine's copy duplicated its two descriptors in its task,
    after the call had returned: numbers closed by then failed it (EBADF), and
    numbers opened again by then (here: an O_APPEND file) sent the copy to
    those files, one that grew as it was read without end.  It now takes them
    before it returns, as the ring's copy does; and it is in flight from the
    call until it has ended (engine.stats()), as the ring's copy is."""
    src, dst, other = tmp_path / "src", tmp_path / "dst", tmp_path / "other"
    src.write_bytes(b"s" * 100_000)
    other.write_bytes(b"o" * 10)

    async def main():
        engine = ringlet.get_engine()
        src_fd, dst_fd = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY | os.O_CREAT)
        copy = asyncio.ensure_future(engine.copy(src_fd, dst_fd))
        in_flight = engine.stats()["in_flight"]
        os.close(src_fd)
        os.close(dst_fd)
        reused = [os.open(other, os.O_RDWR | os.O_APPEND) for _ in range(2)]  # the two numbers again
        try:
            return in_flight, await asyncio.wait_for(copy, CALL_TIMEOUT)
        finally:
            for fd in reused:
                os.close(fd)

    in_flight, copied = run(main())
    assert in_flight >= 1 and copied == 100_000
    assert dst.read_bytes() == b"s" * 100_000
    assert other.read_bytes() == b"o" * 10
