"""The bad input matrix: every public function against wrong types, negative
and huge sizes and offsets, closed files, descriptors closed underneath,
wrong modes, read-only and non-contiguous buffers, directories, FIFOs,
/dev/zero, /dev/null and /proc files.  Each case must give the right answer
or a clear Python exception, leave nothing in flight and leak no descriptor.
The riskiest cases run in a fresh interpreter (run_python), so that a crash
is a failing test that names the signal, not a dead test run.

A case is ``(id, action, expect)``: ``action(w)`` is a coroutine function
given the World ``w`` (files of every kind, made fresh for each case), and
``expect`` is an exception class (or tuple) that must be raised, or a
function that checks the result.  ``same_as(ref)`` compares with what
built-in open()/os do for the same thing.
"""

import asyncio
import errno
import gc
import inspect
import io
import mmap  # noqa: F401 - used by the eval()ed buffer expressions
import os
import sys
import threading

import pytest

from conftest import fd_count, feed_pipe, open_fifo_writer, wait_until, write_fifo

HUGE = [2**63, 2**64]             # do not fit in a C off_t / size_t
BIG = [sys.maxsize, 2**62]        # fit, but far beyond any file
NON_INT = [1.5, "1", b"1", None, object(), [1]]
NON_CONTIGUOUS = "memoryview(bytearray(100))[::2]"
IORING_OP_FTRUNCATE = 55


# --------------------------------------------------------------------------
# the world each case runs in
# --------------------------------------------------------------------------


class World:
    """Paths of every kind, and the data of the regular file."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.data = os.urandom(3000) + b"\nline two\n" + os.urandom(500)
        self.file = str(tmp_path / "file.bin")
        with open(self.file, "wb") as f:
            f.write(self.data)
        self.dir = str(tmp_path / "dir")
        os.mkdir(self.dir)
        self.fifo = str(tmp_path / "fifo")
        os.mkfifo(self.fifo)
        self.missing = str(tmp_path / "missing")
        self.in_missing_dir = str(tmp_path / "nodir" / "x")
        self.out = str(tmp_path / "out.bin")

    def content(self, path=None):
        with open(path or self.file, "rb") as f:
            return f.read()


async def feed_fifo(path, data, reader):
    """Run the coroutine ``reader`` (which opens the FIFO for reading) while
    writing data into the FIFO from the loop; return what reader returns."""
    task = asyncio.ensure_future(reader)
    await feed_pipe(await open_fifo_writer(path), data)
    return await asyncio.wait_for(task, 10)


def outcome(fn):
    """What fn() gives: ('ok', value) or ('raised', class, errno)."""
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - compared below
        return ("raised", type(exc), getattr(exc, "errno", None))


def comparable(result):
    """An outcome with OSError subclasses folded into OSError (the errno says which)."""
    if result[0] == "raised" and issubclass(result[1], OSError) and not issubclass(result[1], io.UnsupportedOperation):
        return ("raised", OSError, result[2])
    return result


def on_fd(path, flags, fn):
    """A reference: fn(fd) on a descriptor of path (an attribute name of the
    World, or a path) opened with flags, closed afterwards."""
    def reference(w):
        fd = os.open(getattr(w, path, path), flags)
        try:
            return fn(fd)
        finally:
            os.close(fd)
    return reference


def builtin(path, mode, fn, buffering=0):
    """A reference: fn(f) on built-in open(path, mode, buffering=0)."""
    def reference(w):
        with open(getattr(w, path, path), mode, buffering=buffering) as f:
            return fn(f)
    return reference


def same_as(reference):
    """Expect the outcome of reference(w) (built-in open()/os)."""
    def check(got, w):
        want = outcome(lambda: reference(w))
        assert comparable(got) == comparable(want), f"ringlet gave {got!r}, built-in {want!r}"
    check.compares = True
    return check


def equals(expected):
    def check(got, w):
        value = expected(w) if callable(expected) else expected
        assert got == ("ok", value), f"expected {value!r:.200}, got {got!r:.200}"
    return check


def raises(*classes, errno_=None):
    def check(got, w):
        assert got[0] == "raised", f"expected {classes}, got the value {got[1]!r:.200}"
        assert issubclass(got[1], classes), f"expected {classes}, got {got[1]}"
        if errno_ is not None:
            assert got[2] == errno_, f"expected errno {errno.errorcode[errno_]}, got {got[2]}"
    return check


def satisfies(predicate, what):
    def check(got, w):
        assert got[0] == "ok", f"expected {what}, got {got!r}"
        assert predicate(got[1], w), f"expected {what}, got {got[1]!r:.200}"
    return check


CASES = []


def case(case_id, expect):
    def deco(action):
        CASES.append(pytest.param(action, expect, id=case_id))
        return action
    return deco


def add(case_id, action, expect):
    CASES.append(pytest.param(action, expect, id=case_id))


async def ring_outcome(action, w):
    try:
        return ("ok", await action(w))
    except Exception as exc:  # noqa: BLE001 - the check decides
        return ("raised", type(exc), getattr(exc, "errno", None))


# --------------------------------------------------------------------------
# ringlet.read_file / write_file / copy_file / open: paths and modes
# --------------------------------------------------------------------------

import ringlet  # noqa: E402
from ringlet._contract import Opcode  # noqa: E402

BAD_PATHS = [
    ("None", None, TypeError), ("float", 1.5, TypeError), ("object", object(), TypeError),
    ("list", [], TypeError), ("bool", True, TypeError), ("nul_str", "a\0b", ValueError),
    ("nul_bytes", b"a\0b", ValueError), ("empty", "", FileNotFoundError),
]

for name, bad, exc in BAD_PATHS:
    add(f"read_file-path-{name}", lambda w, bad=bad: ringlet.read_file(bad), raises(exc))
    add(f"write_file-path-{name}", lambda w, bad=bad: ringlet.write_file(bad, b"x"), raises(exc))
    add(f"copy_file-src-{name}", lambda w, bad=bad: ringlet.copy_file(bad, w.out), raises(exc))
    add(f"copy_file-dst-{name}", lambda w, bad=bad: ringlet.copy_file(w.file, bad), raises(exc))
    if name != "bool":  # ringlet.open(True) is refused (TypeError); open(True) takes fd 1
        add(f"open-file-{name}", lambda w, bad=bad: ringlet.open(bad, "rb"), raises(exc))
for name, bad in [("int", 3), ("bytearray", bytearray(b"x"))]:
    add(f"read_file-path-{name}", lambda w, bad=bad: ringlet.read_file(bad), raises(TypeError))

for name, path, exc in [("missing", "missing", FileNotFoundError), ("in_missing_dir", "in_missing_dir", FileNotFoundError),
                        ("dir", "dir", IsADirectoryError)]:
    add(f"read_file-{name}", lambda w, p=path: ringlet.read_file(getattr(w, p)), raises(exc))
    add(f"copy_file-src-{name}", lambda w, p=path: ringlet.copy_file(getattr(w, p), w.out), raises(exc))
    add(f"open-rb-{name}", lambda w, p=path: ringlet.open(getattr(w, p), "rb"), raises(exc))
add("write_file-dir", lambda w: ringlet.write_file(w.dir, b"x"), raises(IsADirectoryError))
add("write_file-in_missing_dir", lambda w: ringlet.write_file(w.in_missing_dir, b"x"), raises(FileNotFoundError))
add("copy_file-dst-dir", lambda w: ringlet.copy_file(w.file, w.dir), raises(IsADirectoryError))
add("copy_file-dst-in_missing_dir", lambda w: ringlet.copy_file(w.file, w.in_missing_dir), raises(FileNotFoundError))
for mode in ["wb", "ab", "r+b", "xb", "w+b"]:
    add(f"open-{mode}-dir", lambda w, m=mode: ringlet.open(w.dir, m), same_as(builtin("dir", mode, lambda f: f)))
add("open-xb-exists", lambda w: ringlet.open(w.file, "xb"), raises(FileExistsError))


@case("copy_file-src-missing-creates-no-dst", equals(False))
async def _(w):
    try:
        await ringlet.copy_file(w.missing, w.out)
    except FileNotFoundError:
        return os.path.exists(w.out)


BAD_MODE_TYPES = [None, 5, b"rb", ["r"]]
BAD_MODES = ["", "rr", "rbw", "z", "rw", "r+b+", "bt", "+", "b", "U", "rU", "wa", "rbb", "r\0"]
for mode in BAD_MODE_TYPES:
    add(f"open-mode-type-{type(mode).__name__}", lambda w, m=mode: ringlet.open(w.file, m), raises(TypeError))
for mode in BAD_MODES:
    add(f"open-mode-{mode!r}", lambda w, m=mode: ringlet.open(w.file, m),
        same_as(lambda w, m=mode: open(w.file, m).close()))
add("open-closefd-False-with-path", lambda w: ringlet.open(w.file, "rb", closefd=False), raises(ValueError))
for value in [None, 1.0, "yes"]:  # closefd is an int to built-in open(): these are TypeErrors there
    add(f"open-closefd-{type(value).__name__}", lambda w, v=value: ringlet.open(w.file, "rb", closefd=v),
        raises(TypeError))


@case("open-closefd-0-with-fd-leaves-it-open", equals(True))
async def _(w):
    fd = os.open(w.file, os.O_RDONLY)
    try:
        f = await ringlet.open(fd, "rb", closefd=0)
        await f.close()
        return os.fstat(fd).st_size == len(w.data)
    finally:
        os.close(fd)


add("open-fd-negative", lambda w: ringlet.open(-1, "rb"), raises(ValueError))
add("open-fd-minus-2", lambda w: ringlet.open(-2, "rb"), raises(ValueError))
add("open-binary-with-encoding", lambda w: ringlet.open(w.file, "rb", encoding="utf-8"), raises(ValueError))
add("open-binary-with-newline", lambda w: ringlet.open(w.file, "rb", newline="\n"), raises(ValueError))
add("open-buffering-float", lambda w: ringlet.open(w.file, "rb", buffering=1.5), raises(TypeError))


@case("write_file-creates-nothing-for-bad-data", equals(False))
async def _(w):
    with pytest.raises(TypeError):
        await ringlet.write_file(w.out, "text, not bytes")
    return os.path.exists(w.out)


@case("write_file-bad-data-leaves-file-intact", equals(lambda w: w.data))
async def _(w):
    for bad in (None, "str", 5, [1, 2], object(), 1.5):
        with pytest.raises(TypeError):
            await ringlet.write_file(w.file, bad)
    for bad in (eval(NON_CONTIGUOUS), memoryview(bytearray(12)).cast('B', (3, 4))[::2]):
        with pytest.raises(BufferError):  # as a built-in file's write() of it
            await ringlet.write_file(w.file, bad)
    return w.content()


# special files through the whole-file helpers

add("read_file-dev-null", lambda w: ringlet.read_file("/dev/null"), equals(b""))
add("read_file-proc-self-cmdline", lambda w: ringlet.read_file("/proc/self/cmdline"),
    equals(lambda w: open("/proc/self/cmdline", "rb").read()))
add("read_file-proc-self-status-size-0-but-content",
    lambda w: ringlet.read_file("/proc/self/status"),
    satisfies(lambda r, w: r.startswith(b"Name:") and b"\nPid:\t%d\n" % os.getpid() in r and r.endswith(b"\n"),
              "the whole of /proc/self/status"))
add("read_file-proc-self-mounts", lambda w: ringlet.read_file("/proc/self/mounts"),
    equals(lambda w: open("/proc/self/mounts", "rb").read()))
add("write_file-dev-null", lambda w: ringlet.write_file("/dev/null", b"x" * 100_000), equals(100_000))
add("copy_file-dev-null-src", lambda w: ringlet.copy_file("/dev/null", w.out), equals(0))
add("copy_file-dev-null-dst", lambda w: ringlet.copy_file(w.file, "/dev/null"), equals(lambda w: len(w.data)))


@case("copy_file-proc-self-status", satisfies(lambda r, w: r[0] > 0 and r[1].startswith(b"Name:") and r[0] == len(r[1]),
                                              "the content of /proc/self/status"))
async def _(w):
    n = await ringlet.copy_file("/proc/self/status", w.out)
    return n, w.content(w.out)


@case("read_file-fifo-with-writer", equals(lambda w: w.data * 30))
async def _(w):
    return await feed_fifo(w.fifo, w.data * 30, ringlet.read_file(w.fifo))


@case("copy_file-fifo-with-writer", equals(lambda w: (len(w.data) * 30, w.data * 30)))
async def _(w):
    n = await feed_fifo(w.fifo, w.data * 30, ringlet.copy_file(w.fifo, w.out))
    return n, w.content(w.out)


@case("write_file-fifo-with-reader", equals(lambda w: (len(w.data), w.data)))
async def _(w):
    rfd = os.open(w.fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader: the writer's open does not block
    try:
        n = await ringlet.write_file(w.fifo, w.data)
        return n, os.read(rfd, 1 << 20)
    finally:
        os.close(rfd)


@case("copy_file-onto-itself-keeps-content", equals(lambda w: w.data))
async def _(w):
    """shutil.copyfile raises SameFileError here; truncating the source first
    would destroy it.  Either an exception or a no-op is right; data loss is not."""
    try:
        await ringlet.copy_file(w.file, w.file)
    except OSError:
        pass
    return w.content()


@case("copy_file-onto-hard-link-of-itself-keeps-content", equals(lambda w: w.data))
async def _(w):
    link = str(w.tmp / "link")
    os.link(w.file, link)
    try:
        await ringlet.copy_file(w.file, link)
    except OSError:
        pass
    return w.content()


# --------------------------------------------------------------------------
# AsyncFile methods
# --------------------------------------------------------------------------

FILE_METHODS = {
    # name: (mode it needs, a valid call)
    "read": ("rb", lambda f: f.read(10)),
    "read1": ("rb", lambda f: f.read1(10)),
    "readall": ("rb", lambda f: f.readall()),
    "peek": ("rb", lambda f: f.peek(10)),
    "readinto": ("rb", lambda f: f.readinto(bytearray(10))),
    "readline": ("rb", lambda f: f.readline()),
    "readlines": ("rb", lambda f: f.readlines()),
    "pread": ("rb", lambda f: f.pread(10, 0)),
    "preadinto": ("rb", lambda f: f.preadinto(bytearray(10), 0)),
    "pread_many": ("rb", lambda f: f.pread_many([(10, 0), (5, 100)])),
    "write": ("wb", lambda f: f.write(b"x")),
    "writelines": ("wb", lambda f: f.writelines([b"x"])),
    "pwrite": ("wb", lambda f: f.pwrite(b"x", 0)),
    "truncate": ("wb", lambda f: f.truncate(0)),
    "flush": (None, lambda f: f.flush()),
    "fsync": (None, lambda f: f.fsync()),
    "fdatasync": (None, lambda f: f.fdatasync()),
    "seek": (None, lambda f: f.seek(0)),
    "tell": (None, lambda f: f.tell()),
    "readable": (None, lambda f: f.readable()),
    "writable": (None, lambda f: f.writable()),
    "seekable": (None, lambda f: f.seekable()),
    "isatty": (None, lambda f: f.isatty()),
}
FILE_METHODS_NOT_ON_CLOSED = {"close", "fileno", "__aenter__", "__aexit__", "__aiter__", "__anext__"}


async def on_file(w, mode, fn, path=None, buffering=-1):
    """fn(f) on ringlet.open(path or w.file, mode); the file is closed after."""
    f = await ringlet.open(path or w.file, mode, buffering=buffering)
    try:
        return await fn(f)
    finally:
        await f.close()


async def on_closed(w, fn):
    f = await ringlet.open(w.file, "r+b")
    await f.close()
    return await fn(f)


async def on_closed_underneath(w, fn, mode="r+b"):
    f = await ringlet.open(w.file, mode)
    os.close(f.fileno())
    try:
        return await fn(f)
    finally:
        try:
            await f.close()
        except OSError as exc:  # built-in files say EBADF here too
            assert exc.errno == errno.EBADF


for name, (needs, call) in FILE_METHODS.items():
    add(f"closed-file-{name}", lambda w, c=call: on_closed(w, c), raises(ValueError))
    if needs == "rb":
        add(f"wrong-mode-{name}-on-wb", lambda w, c=call: on_file(w, "wb", c), raises(io.UnsupportedOperation))
        add(f"wrong-mode-{name}-on-ab", lambda w, c=call: on_file(w, "ab", c), raises(io.UnsupportedOperation))
    elif needs == "wb":
        add(f"wrong-mode-{name}-on-rb", lambda w, c=call: on_file(w, "rb", c), raises(io.UnsupportedOperation))
    if name not in ("flush", "readable", "writable", "seekable", "isatty"):  # no syscall, or no error (as FileIO)
        add(f"closed-underneath-{name}", lambda w, c=call: on_closed_underneath(w, c),
            raises(OSError, errno_=errno.EBADF))


@case("closed-file-close-again-is-noop", equals(True))
async def _(w):
    f = await ringlet.open(w.file, "rb")
    await f.close()
    await f.close()
    return f.closed


@case("closed-file-fileno", raises(ValueError))
async def _(w):
    f = await ringlet.open(w.file, "rb")
    await f.close()
    return f.fileno()


def test_matrix_covers_every_asyncfile_method():
    """A new public method of AsyncFile needs its bad-input cases here."""
    public = {n for n, v in vars(ringlet.AsyncFile).items() if not n.startswith("_") and callable(v)}
    for base in ringlet.AsyncFile.__mro__[1:]:
        public |= {n for n, v in vars(base).items() if not n.startswith("_") and callable(v)}
    missing = public - set(FILE_METHODS) - FILE_METHODS_NOT_ON_CLOSED
    assert not missing, f"AsyncFile methods without bad-input cases: {sorted(missing)}"


# sizes and offsets

for bad in NON_INT:
    for name, call in [("read", lambda f, b: f.read(b)), ("read1", lambda f, b: f.read1(b)),
                       ("readline", lambda f, b: f.readline(b)), ("pread-size", lambda f, b: f.pread(b, 0)),
                       ("pread-offset", lambda f, b: f.pread(1, b)), ("pwrite-offset", lambda f, b: f.pwrite(b"x", b)),
                       ("preadinto-offset", lambda f, b: f.preadinto(bytearray(1), b)),
                       ("seek-offset", lambda f, b: f.seek(b)), ("seek-whence", lambda f, b: f.seek(0, b)),
                       ("truncate", lambda f, b: f.truncate(b))]:
        if bad is None and name in ("read", "read1", "readline", "truncate"):
            continue  # None is a valid size there
        add(f"{name}-{type(bad).__name__}", lambda w, c=call, b=bad: on_file(w, "r+b", lambda f: c(f, b)),
            raises(TypeError, ValueError) if name == "seek-whence" else raises(TypeError))
    if isinstance(bad, bytes):
        continue  # bytes are fine data to write
    for name, call in [("readinto", lambda f, b: f.readinto(b)), ("preadinto-buffer", lambda f, b: f.preadinto(b, 0)),
                       ("write", lambda f, b: f.write(b)),
                       ("pwrite-data", lambda f, b: f.pwrite(b, 0)), ("writelines", lambda f, b: f.writelines([b]))]:
        add(f"{name}-{type(bad).__name__}", lambda w, c=call, b=bad: on_file(w, "r+b", lambda f: c(f, b)),
            raises(TypeError))

for value in HUGE:
    for name, call in [("read", lambda f, v: f.read(v)), ("pread-size", lambda f, v: f.pread(v, 0)),
                       ("pread-offset", lambda f, v: f.pread(1, v)), ("pwrite-offset", lambda f, v: f.pwrite(b"x", v)),
                       ("preadinto-offset", lambda f, v: f.preadinto(bytearray(1), v)),
                       ("truncate", lambda f, v: f.truncate(v))]:
        add(f"{name}-2**{value.bit_length() - 1}", lambda w, c=call, v=value: on_file(w, "r+b", lambda f: c(f, v)),
            raises(OverflowError))

# An offset past off_t: a buffered file's seek says ValueError, FileIO's (buffering=0) OverflowError.
for value in HUGE + [-2, -1, -(2**63), -(2**64)]:
    for buffering in [-1, 0]:
        add(f"seek-{value}-buffering-{buffering}", lambda w, v=value, b=buffering: on_file(
            w, "r+b", lambda f: f.seek(v), buffering=b), same_as(builtin("file", "r+b", lambda f, v=value: f.seek(v),
                                                                        buffering)))

class Index:
    """An int by __index__ only."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


# Sizes past a C ssize_t are OverflowErrors for io's readers, binary and text,
# whatever their sign: none quietly means "all".
for value in HUGE + [-(2**63) - 1, -(2**64)]:
    for mode, name, call in [("rb", "read1", lambda f, v: f.read1(v)), ("rb", "readline", lambda f, v: f.readline(v)),
                             ("rb", "readlines", lambda f, v: f.readlines(v)), ("rb", "peek", lambda f, v: f.peek(v)),
                             ("r", "text-read", lambda f, v: f.read(v)), ("r", "text-readline", lambda f, v: f.readline(v)),
                             ("r", "text-readlines", lambda f, v: f.readlines(v))] + (
                                [("rb", "read", lambda f, v: f.read(v))] if value < 0 else []):
        add(f"{name}-{value}", lambda w, m=mode, c=call, v=value: on_file(w, m, lambda f: c(f, v)),
            raises(OverflowError))
for whence in [os.SEEK_SET, os.SEEK_CUR, os.SEEK_END]:  # an __index__ whence, as io takes it
    add(f"seek-whence-index-{whence}", lambda w, x=whence: on_file(w, "rb", lambda f: f.seek(0, Index(x))),
        same_as(builtin("file", "rb", lambda f, x=whence: f.seek(0, Index(x)))))
    add(f"text-seek-whence-index-{whence}", lambda w, x=whence: on_file(w, "r", lambda f: f.seek(0, Index(x))),
        equals(lambda w, x=whence: 0 if x != os.SEEK_END else len(w.data)))

for value in [-2, -1, -(2**63), -(2**64)]:
    for name, call in [("pread-size", lambda f, v: f.pread(v, 0)), ("pread-offset", lambda f, v: f.pread(1, v)),
                       ("pwrite-offset", lambda f, v: f.pwrite(b"x", v)),
                       ("preadinto-offset", lambda f, v: f.preadinto(bytearray(1), v))]:
        add(f"{name}-{value}", lambda w, c=call, v=value: on_file(w, "r+b", lambda f: c(f, v)),
            raises(ValueError, OverflowError))
    add(f"truncate-{value}", lambda w, v=value: on_file(w, "r+b", lambda f: f.truncate(v)),
        raises(OSError, OverflowError))
for value in [-2, -1]:  # io.BufferedReader refuses read(-2); FileIO (buffering=0) reads all, as read1 does
    for buffering in [-1, 0]:
        add(f"read-{value}-buffering-{buffering}", lambda w, v=value, b=buffering: on_file(
            w, "rb", lambda f: f.read(v), buffering=b), same_as(builtin("file", "rb", lambda f, v=value: f.read(v), buffering)))
    add(f"read1-{value}-means-all", lambda w, v=value: on_file(w, "rb", lambda f: f.read1(v)), equals(lambda w: w.data))
for value in [sys.maxsize, 2**32, 2**31, 2**31 - 1]:  # sizes that fit: the right answer, clamped
    add(f"read-{value}", lambda w, v=value: on_file(w, "rb", lambda f: f.read(v)), equals(lambda w: w.data))
    add(f"pread-size-{value}", lambda w, v=value: on_file(w, "rb", lambda f: f.pread(v, 100)),
        equals(lambda w: w.data[100:]))
for value in BIG + [2**63 - 10]:
    add(f"pread-offset-{value}", lambda w, v=value: on_file(w, "rb", lambda f: f.pread(5, v)),
        same_as(on_fd("file", os.O_RDONLY, lambda fd, v=value: os.pread(fd, 5, v))))
    add(f"pwrite-offset-{value}", lambda w, v=value: on_file(w, "r+b", lambda f: f.pwrite(b"x", v)),
        same_as(on_fd("file", os.O_RDWR, lambda fd, v=value: os.pwrite(fd, b"x", v))))
    add(f"preadinto-offset-{value}", lambda w, v=value: on_file(w, "rb", lambda f: f.preadinto(bytearray(5), v)),
        same_as(on_fd("file", os.O_RDONLY, lambda fd, v=value: os.preadv(fd, [bytearray(5)], v))))
    add(f"truncate-{value}", lambda w, v=value: on_file(w, "r+b", lambda f: f.truncate(v)),
        same_as(on_fd("file", os.O_RDWR, lambda fd, v=value: os.ftruncate(fd, v))))
    add(f"seek-{value}", lambda w, v=value: on_file(w, "rb", lambda f: f.seek(v)),
        same_as(on_fd("file", os.O_RDONLY, lambda fd, v=value: os.lseek(fd, v, os.SEEK_SET))))
add("seek-whence-7", lambda w: on_file(w, "rb", lambda f: f.seek(0, 7)), raises(ValueError, OSError))
add("seek-whence-minus-1", lambda w: on_file(w, "rb", lambda f: f.seek(0, -1)), raises(ValueError, OSError))


# buffers

BUFFERS = {  # buffers a read or a write refuses: the error is a built-in file's
    "bytes-readonly": "b'x' * 10",
    "memoryview-of-bytes": "memoryview(b'x' * 10)",
    "noncontiguous": NON_CONTIGUOUS,
    "text": "'abc'",
    "array-noncontiguous-2d": "memoryview(bytearray(12)).cast('B', (3, 4))[::2]",
    "released-memoryview": "_released()",
}


def _released():
    m = memoryview(bytearray(10))
    m.release()
    return m


for name, expr in BUFFERS.items():
    reads_like_builtin = same_as(builtin("file", "rb", lambda f, e=expr: f.readinto(eval(e))))
    add(f"readinto-{name}", lambda w, e=expr: on_file(w, "rb", lambda f: f.readinto(eval(e))), reads_like_builtin)
    add(f"preadinto-{name}", lambda w, e=expr: on_file(w, "rb", lambda f: f.preadinto(eval(e), 0)), reads_like_builtin)
    if name not in ("bytes-readonly", "memoryview-of-bytes"):
        writes_like_builtin = same_as(builtin("out", "wb", lambda f, e=expr: f.write(eval(e))))
        add(f"write-{name}", lambda w, e=expr: on_file(w, "wb", lambda f: f.write(eval(e))), writes_like_builtin)
        add(f"pwrite-{name}", lambda w, e=expr: on_file(w, "wb", lambda f: f.pwrite(eval(e), 0)),
            writes_like_builtin)
for name, expr, want in [("bytearray-0", "bytearray(0)", 0), ("array-i", "__import__('array').array('i', [0] * 4)", 16),
                         ("memoryview-2d", "memoryview(bytearray(12)).cast('B', (3, 4))", 12),
                         ("mmap", "mmap.mmap(-1, 4096)", 3510)]:
    add(f"readinto-{name}", lambda w, e=expr: on_file(w, "rb", lambda f: f.readinto(eval(e))), equals(want))
    add(f"preadinto-{name}", lambda w, e=expr: on_file(w, "rb", lambda f: f.preadinto(eval(e), 0)), equals(want))
    add(f"write-{name}", lambda w, e=expr: on_file(w, "wb", lambda f: f.write(eval(e))),
        equals(len(memoryview(eval(expr)).cast("B"))))


@case("readinto-lands-in-the-buffer", equals(lambda w: w.data[:100]))
async def _(w):
    buf = bytearray(100)
    await on_file(w, "rb", lambda f: f.readinto(buf))
    return bytes(buf)


# special files through a file object

add("dev-zero-read", lambda w: on_file(w, "rb", lambda f: f.read(100_000), "/dev/zero"), equals(bytes(100_000)))
add("dev-zero-pread-far", lambda w: on_file(w, "rb", lambda f: f.pread(10, 2**40), "/dev/zero"), equals(bytes(10)))
add("dev-zero-readinto", lambda w: on_file(w, "rb", lambda f: f.readinto(bytearray(b"\xff" * 50)), "/dev/zero"),
    equals(50))
add("dev-null-read", lambda w: on_file(w, "rb", lambda f: f.read(), "/dev/null"), equals(b""))
add("dev-null-read-size", lambda w: on_file(w, "rb", lambda f: f.read(100), "/dev/null"), equals(b""))
add("dev-null-write", lambda w: on_file(w, "wb", lambda f: f.write(b"x" * 10_000), "/dev/null"), equals(10_000))
add("dev-null-readline", lambda w: on_file(w, "rb", lambda f: f.readline(), "/dev/null"), equals(b""))
add("proc-status-read-all", lambda w: on_file(w, "rb", lambda f: f.read(), "/proc/self/status"),
    satisfies(lambda r, w: r.startswith(b"Name:") and r.endswith(b"\n"), "all of /proc/self/status"))
add("proc-status-pread", lambda w: on_file(w, "rb", lambda f: f.pread(5, 0), "/proc/self/status"), equals(b"Name:"))
add("proc-status-readline", lambda w: on_file(w, "rb", lambda f: f.readline(), "/proc/self/status"),
    satisfies(lambda r, w: r.startswith(b"Name:") and r.endswith(b"\n") and r.count(b"\n") == 1, "one line"))
add("proc-cmdline-read-all", lambda w: on_file(w, "rb", lambda f: f.read(), "/proc/self/cmdline"),
    equals(lambda w: open("/proc/self/cmdline", "rb").read()))
add("proc-status-write", lambda w: on_file(w, "r+b", lambda f: f.write(b"x"), "/proc/self/status"),
    same_as(builtin("/proc/self/status", "r+b", lambda f: f.write(b"x"))))
# A FIFO cannot seek: what os does with an offset there, ringlet must do too
# (and not wait for data, or write, as if the offset were not there).
for name, call, reference in [
    ("seek", lambda f: f.seek(0), lambda fd: os.lseek(fd, 0, os.SEEK_SET)),
    ("tell", lambda f: f.tell(), lambda fd: os.lseek(fd, 0, os.SEEK_CUR)),
    ("pread", lambda f: f.pread(1, 0), lambda fd: os.pread(fd, 1, 0)),
    ("preadinto", lambda f: f.preadinto(bytearray(1), 0), lambda fd: os.preadv(fd, [bytearray(1)], 0)),
    ("pwrite", lambda f: f.pwrite(b"x", 0), lambda fd: os.pwrite(fd, b"x", 0)),
    ("truncate", lambda f: f.truncate(0), lambda fd: os.ftruncate(fd, 0)),
]:
    add(f"fifo-{name}", lambda w, c=call: on_file(w, "r+b", lambda f: asyncio.wait_for(c(f), 0.5), w.fifo),
        same_as(on_fd("fifo", os.O_RDWR, reference)))


@case("fifo-r+b-write-then-read", equals(b"ping"))
async def _(w):
    async with ringlet.open(w.fifo, "r+b") as f:
        await f.write(b"ping")
        return await f.read(100)


@case("fifo-readline", equals(b"one\n"))
async def _(w):
    async with ringlet.open(w.fifo, "r+b") as f:
        await f.write(b"one\ntwo\n")
        return await f.readline()


@case("dir-fd-open-then-read", raises(IsADirectoryError))
async def _(w):
    dfd = os.open(w.dir, os.O_RDONLY)
    try:
        async with ringlet.open(dfd, "rb", closefd=False) as f:  # open(dirfd) may refuse already
            return await f.read(10)
    finally:
        os.close(dfd)


@case("fd-not-open", raises(OSError, errno_=errno.EBADF))
async def _(w):
    ringlet.get_engine()  # made first: its ring and eventfd must not take the number freed below
    fd = os.open(w.file, os.O_RDONLY)
    os.close(fd)  # now a number that is no descriptor
    async with ringlet.open(fd, "rb", closefd=False) as f:
        return await f.read(10)


@case("fd-opened-readonly-used-for-writing", raises(OSError, errno_=errno.EBADF))
async def _(w):
    fd = os.open(w.file, os.O_RDONLY)
    try:
        async with ringlet.open(fd, "wb", closefd=False) as f:
            return await f.write(b"x")
    finally:
        os.close(fd)


for value in [2**31, 2**63, 2**64]:  # open() tries a number past a C int as a path, and refuses it
    add(f"open-fd-{value}", lambda w, v=value: on_file(w, "rb", lambda f: f.read(1), v), raises(TypeError))


# --------------------------------------------------------------------------
# the engine's low-level methods
# --------------------------------------------------------------------------


async def engine_call(w, name, *args, **kwargs):
    """getattr(engine, name)(*args) on a descriptor of w.file open O_RDWR as
    fd (the string "fd" in args stands for it); awaits the result if needed."""
    engine = ringlet.get_engine()
    fd = os.open(w.file, os.O_RDWR)
    try:
        args = tuple(fd if a == "fd" else a for a in args)
        result = getattr(engine, name)(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result
    finally:
        os.close(fd)


ENGINE_FD_METHODS = {  # name: a valid call's arguments after fd
    "read": (1,), "_read": (1,), "readinto": (bytearray(1),), "_readinto": (bytearray(1),),
    "write": (b"x", 0), "_write": (b"x", 0), "fsync": (), "ftruncate": (0,),
    "read_many": ([(1, 0)],), "_read_many": ([(1, 0)],), "statx": (),
}
for name, rest in ENGINE_FD_METHODS.items():
    for bad in [None, 1.5, "3", object()] + ([] if name == "statx" else [b"3"]):  # statx takes a bytes path
        add(f"engine.{name}-fd-{type(bad).__name__}", lambda w, n=name, b=bad, r=rest: engine_call(w, n, b, *r),
            raises(TypeError))
    for bad in [2**31, 2**63, 2**64, -(2**31) - 1]:
        add(f"engine.{name}-fd-{bad}", lambda w, n=name, b=bad, r=rest: engine_call(w, n, b, *r),
            raises(OverflowError))
    add(f"engine.{name}-fd-closed", lambda w, n=name, r=rest: engine_call(w, n, 987_654, *r),
        raises(OSError, OverflowError))
    add(f"engine.{name}-no-args", lambda w, n=name: engine_call(w, n), raises(TypeError))
for name in ["close", "_close"]:
    for bad in [None, 1.5, "3"]:
        add(f"engine.{name}-fd-{type(bad).__name__}", lambda w, n=name, b=bad: engine_call(w, n, b), raises(TypeError))
    add(f"engine.{name}-fd-2**63", lambda w, n=name: engine_call(w, n, 2**63), raises(OverflowError))
    add(f"engine.{name}-fd-closed", lambda w, n=name: engine_call(w, n, 987_654), raises(OSError, errno_=errno.EBADF))

for name in ["read", "_read"]:
    for size, exc in [(-1, ValueError), (-2, ValueError), (2**63, OverflowError), (1.5, TypeError), (None, TypeError)]:
        add(f"engine.{name}-size-{size}", lambda w, n=name, s=size: engine_call(w, n, "fd", s, 0), raises(exc))
    for offset, exc in [(-2, ValueError), (-(2**63), ValueError), (2**63, OverflowError), (2**64, OverflowError),
                        (1.5, TypeError), (None, TypeError)]:
        add(f"engine.{name}-offset-{offset}", lambda w, n=name, o=offset: engine_call(w, n, "fd", 1, o), raises(exc))
    add(f"engine.{name}-offset-maxsize", lambda w, n=name: engine_call(w, n, "fd", 5, sys.maxsize),
        same_as(on_fd("file", os.O_RDONLY, lambda fd: os.pread(fd, 5, sys.maxsize))))
    add(f"engine.{name}-size-maxsize", lambda w, n=name: engine_call(w, n, "fd", sys.maxsize, 0), equals(lambda w: w.data))
    add(f"engine.{name}-too-many-args", lambda w, n=name: engine_call(w, n, "fd", 1, 0, 0, 0), raises(TypeError))
for name in ["readinto", "_readinto", "write", "_write"]:
    for offset, exc in [(-2, ValueError), (2**63, OverflowError), (1.5, TypeError)]:
        buf = bytearray(1) if "readinto" in name else b"x"
        add(f"engine.{name}-offset-{offset}", lambda w, n=name, o=offset, b=buf: engine_call(w, n, "fd", b, o),
            raises(exc))
    for label, expr in [("noncontiguous", NON_CONTIGUOUS), ("str", "'x'"), ("None", "None"), ("int", "5")]:
        add(f"engine.{name}-buffer-{label}", lambda w, n=name, e=expr: engine_call(w, n, "fd", eval(e), 0),
            raises(TypeError, BufferError))
    for align, exc in [(1, ValueError), (3, ValueError), (511, ValueError), (2**21, ValueError), (2**40, ValueError),
                       (-1, OverflowError), (2**64, OverflowError)]:
        buf = bytearray(512) if "readinto" in name else b"x" * 512
        add(f"engine.{name}-align-{align}", lambda w, n=name, a=align, b=buf: engine_call(w, n, "fd", b, 0, a),
            raises(exc))
    # offset -1 is the descriptor's offset (0 here), taken explicitly: O_DIRECT works there too.
    add(f"engine.{name}-align-position", lambda w, n=name: engine_call(w, n, "fd", bytearray(512), -1, 512),
        equals(512))
add("engine.readinto-bytes", lambda w: engine_call(w, "readinto", "fd", b"x", 0), raises(TypeError))
add("engine.write-unaligned-direct", lambda w: engine_call(w, "write", "fd", b"x" * 100, 0, 512), raises(ValueError))

READ_MANY_BAD = [
    ("not-a-sequence", 5, TypeError), ("None", None, TypeError), ("list-of-int", [1], TypeError),
    ("triple", [(1, 2, 3)], TypeError), ("list-not-tuple", [[1, 0]], TypeError), ("str-size", [("1", 0)], TypeError),
    ("negative-size", [(-1, 0)], ValueError), ("negative-offset", [(1, -1)], ValueError),
    ("offset-minus-2", [(1, -2)], ValueError),
    ("huge-size", [(2**63, 0)], OverflowError), ("huge-offset", [(1, 2**64)], OverflowError),
    ("one-bad-among-good", [(1, 0)] * 10 + [(1, -5)], ValueError),
]
for label, requests, exc in READ_MANY_BAD:
    add(f"pread_many-{label}", lambda w, r=requests: on_file(w, "rb", lambda f: f.pread_many(r)), raises(exc))
add("pread_many-empty", lambda w: on_file(w, "rb", lambda f: f.pread_many([])), equals([]))
add("pread_many-past-end-and-maxsize", lambda w: on_file(w, "rb", lambda f: f.pread_many([(5, 2**40), (sys.maxsize, 0)])),
    equals(lambda w: [b"", w.data]))
add("pread_many-fifo", lambda w: on_file(w, "r+b", lambda f: asyncio.wait_for(f.pread_many([(1, 0)]), 0.5), w.fifo),
    raises(OSError, errno_=errno.ESPIPE))

for name in ["read_many", "_read_many"]:
    for label, requests, exc in READ_MANY_BAD:
        add(f"engine.{name}-{label}", lambda w, n=name, r=requests: engine_call(w, n, "fd", r), raises(exc))
    add(f"engine.{name}-empty", lambda w, n=name: engine_call(w, n, "fd", []), equals([]))
    add(f"engine.{name}-past-end", lambda w, n=name: engine_call(w, n, "fd", [(10, 10**9), (3, 0)]),
        equals(lambda w: [b"", w.data[:3]]))
    add(f"engine.{name}-maxsize", lambda w, n=name: engine_call(w, n, "fd", [(sys.maxsize, 0)]),
        equals(lambda w: [w.data]))
    add(f"engine.{name}-generator", lambda w, n=name: engine_call(w, n, "fd", ((1, i) for i in range(3))),
        equals(lambda w: [w.data[i:i + 1] for i in range(3)]))

for label, args, kwargs, expect in [
    ("path-str", ("x", os.O_RDONLY), {}, raises(TypeError)),
    ("path-None", (None, os.O_RDONLY), {}, raises(TypeError)),
    ("path-nul", (b"a\0b", os.O_RDONLY), {}, raises(ValueError)),
    ("path-empty", (b"", os.O_RDONLY), {}, raises(FileNotFoundError)),
    ("flags-huge", (b"/dev/null", 2**40), {}, raises(OverflowError)),
    ("flags-str", (b"/dev/null", "r"), {}, raises(TypeError)),
    ("mode-huge", (b"/dev/null", os.O_RDONLY, 2**40), {}, raises(OverflowError)),
    ("missing", (b"/nonexistent/x", os.O_RDONLY), {}, raises(FileNotFoundError)),
    ("no-args", (), {}, raises(TypeError)),
]:
    for name in ["open", "_open"]:
        add(f"engine.{name}-{label}", lambda w, n=name, a=args, k=kwargs: _engine_open_and_close(n, a, k), expect)


async def _engine_open_and_close(name, args, kwargs):
    engine = ringlet.get_engine()
    result = getattr(engine, name)(*args, **kwargs)
    fd = await result
    os.close(fd)
    return "opened"


for label, args, expect in [
    ("None", (None,), raises(TypeError)), ("str", ("x",), raises(TypeError)),
    ("nul", (b"a\0b",), raises(ValueError)), ("empty-path", (b"",), same_as(lambda w: os.stat(""))),
    ("fd-huge", (2**40,), raises(OverflowError)), ("missing", (b"/nonexistent/x",), raises(FileNotFoundError)),
]:
    add(f"engine.statx-{label}", lambda w, a=args: engine_call(w, "statx", *a), expect)

def from_the_kernel(opcode, expect):
    """expect, on threads or when the kernel has the opcode; else (an older
    kernel, or one emulated with RINGLET_TEST_KERNEL) io_uring fails the SQE
    with EINVAL, as it does any opcode it does not know (ringlet.os asks
    supports() first)."""
    def check(got, w):
        on_ring = ringlet._engine._choose()[0] == "io_uring"
        has = not on_ring or opcode in ringlet._engine.probe().get("opcodes", ())
        (expect if has else raises(OSError, errno_=errno.EINVAL))(got, w)
    return check


for name, opcode, good in [("rename", Opcode.RENAMEAT, (b"/nonexistent/a", b"/nonexistent/b")),
                           ("link", Opcode.LINKAT, (b"/nonexistent/a", b"/nonexistent/b")),
                           ("symlink", Opcode.SYMLINKAT, (b"target", b"/nonexistent/b")),
                           ("unlink", Opcode.UNLINKAT, (b"/nonexistent/a",)), ("mkdir", Opcode.MKDIRAT, (b"/nonexistent/a",))]:
    add(f"engine.{name}-path-str", lambda w, n=name, g=good: engine_call(w, n, *(("x",) + g[1:])), raises(TypeError))
    add(f"engine.{name}-path-nul", lambda w, n=name, g=good: engine_call(w, n, *((b"a\0",) + g[1:])),
        raises(ValueError))
    add(f"engine.{name}-missing-dir", lambda w, n=name, g=good: engine_call(w, n, *g),
        from_the_kernel(opcode, raises(FileNotFoundError)))
    if len(good) == 2:
        add(f"engine.{name}-second-path-None", lambda w, n=name, g=good: engine_call(w, n, g[0], None),
            raises(TypeError))
add("engine.rename-flags-negative", lambda w: engine_call(w, "rename", b"/nonexistent/a", b"/nonexistent/b", -1),
    raises(OverflowError, ValueError, OSError))
add("engine.rename-flags-beyond-32-bits",
    lambda w: engine_call(w, "rename", os.fsencode(w.file), os.fsencode(w.out), 2**32),
    raises(OverflowError, ValueError))
add("engine.mkdir-mode-huge", lambda w: engine_call(w, "mkdir", os.fsencode(w.out), 2**40), raises(OverflowError))

for length, expect in [(-1, raises(ValueError)), (-2, raises(ValueError)), (2**63, raises(OverflowError)),
                       (1.5, raises(TypeError)), (None, raises(TypeError)),
                       (sys.maxsize, same_as(on_fd("file", os.O_RDWR, lambda fd: os.ftruncate(fd, sys.maxsize))))]:
    add(f"engine.ftruncate-length-{length}", lambda w, n=length: _ftruncate(w, n), expect)


async def _ftruncate(w, length):
    engine = ringlet.get_engine()
    if not engine.supports(IORING_OP_FTRUNCATE):
        pytest.skip("the kernel has no IORING_OP_FTRUNCATE (6.9+)")
    return await engine_call(w, "ftruncate", "fd", length)


for label, kwargs, exc in [
    ("chunk-0", {"chunk_size": 0}, ValueError), ("depth-0", {"depth": 0}, ValueError),
    ("depth-17", {"depth": 17}, ValueError), ("chunk-negative", {"chunk_size": -1}, (ValueError, OverflowError)),
    ("depth-negative", {"depth": -1}, (ValueError, OverflowError)),
    ("chunk-2**32+1", {"chunk_size": 2**32 + 1}, (ValueError, OverflowError)),
    ("depth-2**32+1", {"depth": 2**32 + 1}, (ValueError, OverflowError)),
    ("chunk-2**64", {"chunk_size": 2**64}, (ValueError, OverflowError)),
    ("chunk-str", {"chunk_size": "1"}, TypeError), ("src-None", {"src_fd": None}, TypeError),
    ("src-closed", {"src_fd": 987_654}, OSError),
]:
    add(f"engine.copy-{label}", lambda w, k=kwargs: _copy(w, **k),
        raises(*(exc if isinstance(exc, tuple) else (exc,))))


async def _copy(w, **kwargs):
    engine = ringlet.get_engine()
    src = os.open(w.file, os.O_RDONLY)
    dst = os.open(w.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        args = {"src_fd": src, "dst_fd": dst}
        args.update(kwargs)
        return await engine.copy(**args)
    finally:
        os.close(src)
        os.close(dst)


for label, arg, expect in [("minus-1", -1, equals(False)), ("huge", 2**40, raises(OverflowError)),
                           ("str", "x", raises(TypeError)), ("None", None, raises(TypeError))]:
    add(f"engine.supports-{label}", lambda w, a=arg: _sync_engine("supports", a), expect)
for name in ["drain", "stats", "fileno"]:
    add(f"engine.{name}-with-an-argument", lambda w, n=name: _sync_engine(n, 1), raises(TypeError))
add("engine.shutdown-timeout-str", lambda w: _sync_engine("shutdown", "x"), raises(TypeError))


async def _sync_engine(name, *args):
    return getattr(ringlet.get_engine(), name)(*args)


@case("engine-types-not-instantiable", equals(True))
async def _(w):
    from ringlet import _ringlet
    for name in ("Op", "Ready"):
        cls = getattr(_ringlet, name, None)
        if cls is not None:
            with pytest.raises(TypeError):
                cls()
    return True


@case("engine-ready-awaited-twice", equals((b"x", b"x")))
async def _(w):
    engine = ringlet.get_engine()
    fd = os.open(w.out, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x")
        ready = engine._read(fd, 1, 0)
        return await ready, await ready
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# known bugs: each case below fails today; strict, so a fix turns it into a
# failure that asks for its marker to go
# --------------------------------------------------------------------------

KNOWN_BUGS: dict = {}  # every case found failing was fixed; a new one goes here, with its reason
_ids = [p.id for p in CASES]
assert len(set(_ids)) == len(_ids), "duplicate case ids"
assert set(KNOWN_BUGS) <= set(_ids), set(KNOWN_BUGS) - set(_ids)


# --------------------------------------------------------------------------
# running the matrix
# --------------------------------------------------------------------------


def run_case(tmp_path, action, expect):
    """One case in a fresh World: the expected answer or exception, nothing
    left in flight, no descriptor leaked.  AssertionError otherwise."""
    tmp_path.mkdir()
    w = World(tmp_path)
    fds = fd_count()

    async def main():
        got = await ring_outcome(action, w)
        engine = ringlet.get_engine()
        assert await wait_until(lambda: engine.stats()["in_flight"] == 0), "operations left in flight"
        return got

    got = asyncio.run(main())
    leaked = fd_count() - fds
    expect(got, w)
    assert leaked == 0, f"{leaked} descriptors leaked"


def _family(case_id):
    return case_id.split("-")[0]


# One test per family of cases (the part of the id before the first "-"):
# hundreds of single tests would cost more in per-test overhead than the
# cases themselves.  Every failing case is listed with its id and message.
FAMILIES = sorted({_family(p.id) for p in CASES})


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_input(tmp_path, family):
    failures = []
    ran = 0
    for i, p in enumerate(CASES):
        if _family(p.id) != family or p.id in KNOWN_BUGS:
            continue
        ran += 1
        try:
            run_case(tmp_path / f"case{i}", *p.values)
        except AssertionError as exc:
            failures.append(f"{p.id}: {str(exc).splitlines()[0][:300]}")
    assert ran or all(p.id in KNOWN_BUGS for p in CASES if _family(p.id) == family)
    assert not failures, f"{len(failures)} of {ran} cases failed:\n" + "\n".join(failures)


@pytest.mark.parametrize("case_id", [
    pytest.param(case_id, id=case_id, marks=pytest.mark.xfail(reason=reason, strict=True))
    for case_id, reason in sorted(KNOWN_BUGS.items())
])
def test_known_bug(tmp_path, case_id):
    """The cases that fail today, one test each, marked xfail (strict: once
    fixed it passes, which fails until the case leaves KNOWN_BUGS)."""
    p = next(p for p in CASES if p.id == case_id)
    run_case(tmp_path / "case", *p.values)


def test_matrix_size():
    """The matrix holds what this file says it holds (a count for the report)."""
    assert len(CASES) >= 400
    print(f"bad-input cases: {len(CASES)} in {len(FAMILIES)} families, {len(KNOWN_BUGS)} known bugs")


# --------------------------------------------------------------------------
# engine states: after shutdown, from another thread, after the loop closed
# --------------------------------------------------------------------------


ENGINE_CALLS = [
    ("read", ("fd", 1, 0)), ("readinto", ("fd", bytearray(1), 0)), ("write", ("fd", b"x", 0)),
    ("fsync", ("fd",)), ("close", (987_654,)), ("statx", ("fd",)), ("open", (b"/dev/null", 0)),
    ("ftruncate", ("fd", 0)), ("read_many", ("fd", [(1, 0)])), ("copy", ("fd", "fd")),
    ("rename", (b"/nonexistent/a", b"/nonexistent/b")), ("unlink", (b"/nonexistent/a",)),
    ("mkdir", (b"/nonexistent/a",)), ("symlink", (b"t", b"/nonexistent/a")),
    ("link", (b"/nonexistent/a", b"/nonexistent/b")), ("drain", ()),
]


def _calls_on(engine, fd):
    for name, args in ENGINE_CALLS:
        args = tuple(fd if a == "fd" else a for a in args)
        yield name, lambda n=name, a=args: getattr(engine, n)(*a)


def test_engine_after_shutdown_refuses_everything(ringlet, run, make_file):
    path, _ = make_file(100)

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDWR)
        try:
            assert engine.shutdown() == 0
            assert engine.closed
            assert engine.shutdown() == 0  # twice: nothing to do
            for name, call in _calls_on(engine, fd):
                with pytest.raises(RuntimeError):
                    call()
            with pytest.raises(ValueError):
                engine.fileno()
            assert engine.stats()["in_flight"] == 0
        finally:
            os.close(fd)

    run(main())


def test_new_engine_after_shutdown_delivers_deferred_completions(ringlet, run, fifo):
    """engine.shutdown(), then get_engine() on the same loop makes a new
    engine; its eventfd may get the old one's number, which the loop still
    has registered.  A read that completes later must still be delivered."""

    async def main():
        old = ringlet.get_engine()
        old.shutdown()
        new = ringlet.get_engine()
        assert new is not old and not new.closed
        async with ringlet.open(fifo, "r+b") as f:
            task = asyncio.ensure_future(f.read(3))
            await asyncio.sleep(0.02)
            assert not task.done()
            write_fifo(fifo, b"abc")
            try:
                return await asyncio.wait_for(task, 20)  # a hang guard
            except asyncio.TimeoutError:
                raise AssertionError(
                    f"deferred completion never delivered after engine.shutdown(): {new.stats()}") from None

    assert run(main()) == b"abc"


def test_engine_from_another_thread_refused(ringlet, run, make_file):
    path, _ = make_file(100)

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDWR)
        errors = []

        def other():
            for name, call in _calls_on(engine, fd):
                try:
                    call()
                except RuntimeError:
                    continue
                except BaseException as exc:  # noqa: BLE001
                    errors.append((name, exc))
                else:
                    errors.append((name, "no error"))

        try:
            t = threading.Thread(target=other)
            t.start()
            t.join(10)
            assert not t.is_alive()
            assert await engine.read(fd, 3, 0) == open(path, "rb").read(3)  # still fine on its own thread
        finally:
            os.close(fd)
        return errors

    assert run(main()) == []


def test_engine_after_its_loop_closed(ringlet, make_file):
    path, _ = make_file(100)

    async def grab():
        return ringlet.get_engine()

    engine = asyncio.run(grab())
    gc.collect()
    assert engine.closed
    fd = os.open(path, os.O_RDWR)
    try:
        for name, call in _calls_on(engine, fd):
            with pytest.raises(RuntimeError):
                call()
    finally:
        os.close(fd)


def test_engine_constructor_bad_arguments(ringlet):
    from ringlet import _ringlet

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError):
            _ringlet.Engine()
        with pytest.raises(TypeError):
            _ringlet.Engine(None)  # no weak reference to None
        for kwargs in ({"sq_entries": 0}, {"sq_entries": -1}, {"cq_entries": 1, "sq_entries": 64},
                       {"sq_entries": 2**31}):
            with pytest.raises((OSError, ValueError, OverflowError)):
                _ringlet.Engine(loop, **kwargs).shutdown()
        with pytest.raises(TypeError):
            _ringlet.Engine(loop, sq_entries="8")
    finally:
        loop.close()


# --------------------------------------------------------------------------
# the riskiest cases, each in a fresh interpreter
# --------------------------------------------------------------------------

PRELUDE = """
import asyncio, gc, mmap, os, sys
import ringlet
from ringlet import _ringlet
def run(coro):
    return asyncio.run(coro)
fifo = os.path.abspath("fifo")
if not os.path.exists(fifo):
    os.mkfifo(fifo)
with open("file.bin", "wb") as f:
    f.write(b"0123456789" * 100)
"""

RISKY = {
    "huge-buffers": """
async def main():
    try:
        big = mmap.mmap(-1, 3 << 30)   # 3 GiB, never touched: no memory used
    except OSError:                    # a small machine refuses the address space
        big = mmap.mmap(-1, 1 << 20)
    async with ringlet.open("file.bin", "rb") as f:
        assert await f.readinto(big) == 1000
        assert big[:10] == b"0123456789"
    async with ringlet.open("/dev/null", "wb") as f:   # > 2 GiB: continued past the kernel's cap
        assert await f.write(big) == len(big)
    assert await ringlet.write_file("/dev/null", big) == len(big)
    big.close()
    async with ringlet.open("file.bin", "rb") as f:
        try:
            assert len(await f.read(2**40)) == 1000          # clamped, not a 1 TiB allocation
            assert len(await f.pread(sys.maxsize, 0)) == 1000
        except MemoryError:                                   # 2 GiB refused: clear enough
            pass
        for bad in (2**63, 2**64, -2**63 - 1):
            try:
                await f.pread(bad, 0)
            except (OverflowError, ValueError):
                pass
            else:
                raise AssertionError(bad)
run(main())
print("OK")
""",
    "closed-underneath-while-in-flight": """
async def main():
    engine = ringlet.get_engine()
    f = await ringlet.open(fifo, "r+b")
    buf = bytearray(5)
    task = asyncio.ensure_future(f.readinto(buf))
    await asyncio.sleep(0.02)
    os.close(f.fileno())                  # the kernel still holds the file
    wfd = os.open(fifo, os.O_RDWR)        # may reuse the number
    os.write(wfd, b"hello")
    n = await asyncio.wait_for(task, 5)
    assert n == 5 and buf == b"hello", (n, buf)
    os.close(wfd)
    try:
        await f.close()                     # the number is closed by now: EBADF
    except OSError:
        pass
    assert engine.stats()["in_flight"] == 0
run(main())
print("OK")
""",
    "closed-underneath-then-cancelled": """
async def main():
    engine = ringlet.get_engine()
    f = await ringlet.open(fifo, "r+b")
    tasks = [asyncio.ensure_future(f.read(10)) for _ in range(50)]
    await asyncio.sleep(0.02)
    os.close(f.fileno())
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(500):
        if engine.stats()["in_flight"] == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.stats()["in_flight"] == 0, engine.stats()
    f._fd = -1   # closed already; do not let close() hit a reused number
run(main())
print("OK")
""",
    "loop-closed-with-everything-in-flight": """
loop = asyncio.new_event_loop()
fd = os.open(fifo, os.O_RDWR)
bufs = [bytearray(10) for _ in range(100)]
async def start():
    engine = ringlet.get_engine()
    futs = [engine.readinto(fd, b) for b in bufs] + [engine.read(fd, 10) for _ in range(100)]
    futs.append(engine.write(fd, b"x" * (1 << 20)))   # blocks: the pipe holds 64 KiB
    await asyncio.sleep(0.02)
    return engine, futs
engine, futs = loop.run_until_complete(start())
loop.close()
del futs
gc.collect()
assert engine.closed
for b in bufs:
    b.append(1)          # exports given back
os.close(fd)
print("OK")
""",
    "shutdown-odd-timeouts-in-flight": """
try:
    async def nan():
        ringlet.get_engine().shutdown(float("nan"))
    run(nan())
    raise AssertionError("shutdown(nan) did not raise")
except ValueError:
    pass
for timeout in (float("inf"), -1.0, 0.0, 1e300):
    async def main():
        engine = ringlet.get_engine()
        fd = os.open(fifo, os.O_RDWR)
        fut = engine.read(fd, 10)
        await asyncio.sleep(0.01)
        left = engine.shutdown(timeout)
        assert isinstance(left, int) and left >= 0, left
        assert engine.closed
        os.close(fd)
    run(main())
print("OK")
""",
    "o-direct-odd-offsets": """
async def main():
    engine = ringlet.get_engine()
    try:
        fd = os.open("file.bin", os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        print("OK no O_DIRECT here:", exc)
        return
    try:
        assert await engine.read(fd, 100, 5, 4096) == (b"0123456789" * 100)[5:105]
        assert await engine.read(fd, 100, 5000, 4096) == b""
        for off in (sys.maxsize, sys.maxsize - 10, sys.maxsize - 5000, 2**62):
            for align in (512, 4096, 1 << 20):
                for call in (lambda: engine.read(fd, 4096, off, align),
                             lambda: engine.readinto(fd, bytearray(4096), off, align)):
                    try:
                        r = await call()
                    except (OSError, OverflowError, ValueError):
                        continue
                    assert r in (b"", 0), (off, align, r)
    finally:
        os.close(fd)
    print("OK")
run(main())
""",
    "read-many-huge-batch": """
async def main():
    engine = ringlet.get_engine()
    fd = os.open("file.bin", os.O_RDONLY)
    try:
        try:
            out = await engine.read_many(fd, [(sys.maxsize, 0)] * 200)   # each clamped, each 1000 bytes
            assert len(out) == 200 and all(len(x) == 1000 for x in out)
        except MemoryError:
            pass
        out = await engine.read_many(fd, [(1, i % 1000) for i in range(100_000)])
        assert b"".join(out[:10]) == b"0123456789"
    finally:
        os.close(fd)
run(main())
print("OK")
""",
    "engine-closed-eventfd-underneath": """
async def main():
    engine = ringlet.get_engine()
    os.close(engine.fileno())   # a user closes the engine's eventfd: nothing may crash
    try:
        data = await asyncio.wait_for(ringlet.read_file("file.bin"), 20)
        assert data == b"0123456789" * 100
    except (OSError, RuntimeError, asyncio.TimeoutError):
        pass
try:
    run(main())
except (OSError, RuntimeError, ValueError):
    pass
print("OK")
""",
    "garbage-everywhere-gc-while-in-flight": """
import weakref
async def main():
    engine = ringlet.get_engine()
    fd = os.open(fifo, os.O_RDWR)
    for _ in range(200):
        engine.read(fd, 1)               # futures dropped at once
        engine.readinto(fd, bytearray(1))
    gc.collect()
    await asyncio.sleep(0.01)
    os.write(fd, b"y" * 400)
    for _ in range(500):
        if engine.stats()["in_flight"] == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.stats()["in_flight"] == 0, engine.stats()
    os.close(fd)
run(main())
print("OK")
""",
}


# Hang guards only, generous: a sanitizer build on a loaded machine is slow.
@pytest.mark.timeout(660)
@pytest.mark.parametrize("name", sorted(RISKY))
def test_risky_in_a_subprocess(run_python, name):
    proc = run_python(PRELUDE + RISKY[name], timeout=600)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "OK" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
