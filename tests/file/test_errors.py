"""Error behaviour: the same exception classes, errno, strerror and filename
as built-in open()/os, TypeError/ValueError for bad arguments,
io.UnsupportedOperation for the wrong mode, ValueError on closed files."""

import array
import errno
import inspect
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import pytest

from conftest import child_env, fd_count, read_os


def builtin_error(path, mode):
    """The exception built-in open() raises for (path, mode), or None."""
    try:
        with open(path, mode):
            pass
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def ringlet_error(ringlet, run, path, mode):
    async def main():
        f = await ringlet.open(path, mode)
        await f.close()

    try:
        run(main())
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def assert_same_oserror(got, ref):
    assert ref is not None, "built-in open() did not fail: bad test input"
    assert got is not None, f"ringlet did not raise; built-in open() raised {ref!r}"
    assert type(got) is type(ref), f"ringlet raised {got!r}, built-in open() raised {ref!r}"
    assert got.errno == ref.errno
    assert got.strerror == ref.strerror
    assert got.filename == ref.filename


# --------------------------------------------------------------------------
# FileNotFoundError
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["str", "bytes", "pathlike"])
def test_file_not_found(ringlet, run, tmp_path, kind):
    missing = str(tmp_path / "nope" / "missing.bin")
    p = {"str": missing, "bytes": os.fsencode(missing), "pathlike": pathlib.Path(missing)}[kind]

    got = ringlet_error(ringlet, run, p, "rb")
    assert isinstance(got, FileNotFoundError)
    assert got.errno == errno.ENOENT
    assert got.strerror == os.strerror(errno.ENOENT)
    assert_same_oserror(got, builtin_error(p, "rb"))
    if kind != "pathlike":
        assert got.filename == p  # as given


def test_file_not_found_filename_exact(ringlet, run, tmp_path):
    missing = str(tmp_path / "missing.bin")
    with pytest.raises(FileNotFoundError) as ei:
        run(ringlet.read_file(missing))
    assert ei.value.errno == errno.ENOENT
    assert ei.value.strerror == os.strerror(errno.ENOENT)
    assert ei.value.filename == missing
    assert missing in str(ei.value)


def test_copy_file_missing_source(ringlet, run, tmp_path):
    src = str(tmp_path / "missing.bin")
    dst = str(tmp_path / "dst.bin")
    with pytest.raises(FileNotFoundError) as ei:
        run(ringlet.copy_file(src, dst))
    assert ei.value.errno == errno.ENOENT
    assert ei.value.filename == src


def test_copy_file_missing_destination_dir(ringlet, run, make_file, tmp_path):
    src, _ = make_file(100)
    dst = str(tmp_path / "no-such-dir" / "dst.bin")
    with pytest.raises(FileNotFoundError) as ei:
        run(ringlet.copy_file(src, dst))
    assert ei.value.errno == errno.ENOENT
    assert ei.value.filename == dst


def test_write_file_missing_dir(ringlet, run, tmp_path):
    dst = str(tmp_path / "no-such-dir" / "x.bin")
    with pytest.raises(FileNotFoundError) as ei:
        run(ringlet.write_file(dst, b"data"))
    assert ei.value.filename == dst


@pytest.mark.parametrize("mode", ["rb", "r+b", "wb", "ab", "xb"])
def test_missing_dir_all_modes_like_builtin(ringlet, run, tmp_path, mode):
    path = str(tmp_path / "no-such-dir" / "f.bin")
    assert_same_oserror(ringlet_error(ringlet, run, path, mode), builtin_error(path, mode))


# --------------------------------------------------------------------------
# IsADirectoryError / NotADirectoryError
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["wb", "ab", "r+b", "w+b"])
def test_directory_for_writing(ringlet, run, tmp_path, mode):
    d = str(tmp_path)
    got = ringlet_error(ringlet, run, d, mode)
    assert isinstance(got, IsADirectoryError)
    assert got.errno == errno.EISDIR
    assert_same_oserror(got, builtin_error(d, mode))


def test_directory_for_reading_like_builtin(ringlet, run, tmp_path):
    # built-in open(dir, "rb") raises IsADirectoryError (it fstat()s after open)
    d = str(tmp_path)
    assert_same_oserror(ringlet_error(ringlet, run, d, "rb"), builtin_error(d, "rb"))


def test_read_file_on_directory(ringlet, run, tmp_path):
    with pytest.raises(IsADirectoryError) as ei:
        run(ringlet.read_file(str(tmp_path)))
    assert ei.value.errno == errno.EISDIR


def test_copy_file_onto_directory(ringlet, run, make_file, tmp_path):
    src, _ = make_file(10)
    with pytest.raises(IsADirectoryError):
        run(ringlet.copy_file(src, str(tmp_path)))


def test_not_a_directory(ringlet, run, make_file):
    path, _ = make_file(10)
    bad = path + "/child"
    got = ringlet_error(ringlet, run, bad, "rb")
    assert isinstance(got, NotADirectoryError)
    assert_same_oserror(got, builtin_error(bad, "rb"))


def test_x_on_directory_like_builtin(ringlet, run, tmp_path):
    d = str(tmp_path)
    assert_same_oserror(ringlet_error(ringlet, run, d, "xb"), builtin_error(d, "xb"))


# --------------------------------------------------------------------------
# FileExistsError
# --------------------------------------------------------------------------


def test_file_exists(ringlet, run, make_file):
    path, data = make_file(b"original")
    got = ringlet_error(ringlet, run, path, "xb")
    assert isinstance(got, FileExistsError)
    assert got.errno == errno.EEXIST
    assert got.filename == path
    assert_same_oserror(got, builtin_error(path, "xb"))
    assert read_os(path) == b"original"


# --------------------------------------------------------------------------
# PermissionError
# --------------------------------------------------------------------------


def test_permission_denied_chmod_000(ringlet, run, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not deny root (see the unprivileged subprocess test)")
    path = str(tmp_path / "secret.bin")
    with open(path, "wb") as f:
        f.write(b"x")
    os.chmod(path, 0)
    for mode in ("rb", "wb", "r+b", "ab"):
        got = ringlet_error(ringlet, run, path, mode)
        assert isinstance(got, PermissionError), mode
        assert got.errno == errno.EACCES
        assert_same_oserror(got, builtin_error(path, mode))


def test_permission_denied_unprivileged_subprocess(ringlet):
    """As root, drop to 'nobody' in a child process and open a chmod-000 file."""
    if os.geteuid() != 0:
        pytest.skip("not root: covered by test_permission_denied_chmod_000")
    d = tempfile.mkdtemp(prefix="ringlet-perm-")
    try:
        os.chmod(d, 0o755)
        path = os.path.join(d, "secret.bin")
        with open(path, "wb") as f:
            f.write(b"secret")
        os.chmod(path, 0)
        code = textwrap.dedent(
            """
            import asyncio, errno, sys, os
            import ringlet
            path = sys.argv[1]
            os.setgid(65534); os.setuid(65534)
            out = []
            for mode in ("rb", "wb", "r+b", "ab"):
                async def main():
                    f = await ringlet.open(path, mode)
                    await f.close()
                try:
                    asyncio.run(main())
                    out.append(mode + ":no-error")
                except PermissionError as e:
                    ok = e.errno == errno.EACCES and e.filename == path
                    out.append(mode + (":ok" if ok else ":bad-attrs %r" % (e,)))
                except BaseException as e:
                    out.append(mode + ":other %r" % (e,))
            try:
                asyncio.run(ringlet.read_file(path))
                out.append("read_file:no-error")
            except PermissionError as e:
                out.append("read_file:ok" if e.filename == path else "read_file:bad %r" % (e,))
            print("|".join(out))
            """
        )
        env = child_env()  # the ringlet under test, readable by 'nobody' where it is
        proc = subprocess.run(
            [sys.executable, "-c", code, path],
            capture_output=True,
            text=True,
            timeout=20,
            cwd="/",
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "rb:ok|wb:ok|r+b:ok|ab:ok|read_file:ok", proc.stdout + proc.stderr
    finally:
        try:
            os.chmod(path, 0o600)
        except Exception:  # noqa: BLE001
            pass
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_permission_error_like_builtin_proc(ringlet, run):
    """/proc/1/mem is refused even to root in most containers: compare with builtin."""
    ref = builtin_error("/proc/1/mem", "rb")
    if not isinstance(ref, PermissionError):
        pytest.skip(f"built-in open('/proc/1/mem') gave {ref!r}, not PermissionError")
    assert_same_oserror(ringlet_error(ringlet, run, "/proc/1/mem", "rb"), ref)


# --------------------------------------------------------------------------
# failed opens do not leak descriptors
# --------------------------------------------------------------------------


def test_failed_opens_do_not_leak_fds(ringlet, run, make_file, tmp_path):
    path, _ = make_file(10)

    async def main():
        await ringlet.read_file(path)  # engine exists
        before = fd_count()
        for _ in range(50):
            for p, m in ((str(tmp_path / "missing"), "rb"), (str(tmp_path), "wb"), (path, "xb")):
                with pytest.raises(OSError):
                    await ringlet.open(p, m)
            with pytest.raises(OSError):
                await ringlet.read_file(str(tmp_path / "missing"))
        return before, fd_count()

    before, after = run(main())
    assert after == before


# --------------------------------------------------------------------------
# TypeError
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [3.5, None, object(), ["a"]], ids=["float", "None", "object", "list"])
def test_open_bad_path_type(ringlet, run, bad):
    with pytest.raises(TypeError):
        open(bad, "rb")  # reference behaviour

    async def main():
        await ringlet.open(bad, "rb")

    with pytest.raises(TypeError):
        run(main())


@pytest.mark.parametrize("bad", [3.5, None, object()], ids=["float", "None", "object"])
def test_whole_file_helpers_bad_path_type(ringlet, run, make_file, tmp_path, bad):
    src, _ = make_file(10)
    with pytest.raises(TypeError):
        run(ringlet.read_file(bad))
    with pytest.raises(TypeError):
        run(ringlet.write_file(bad, b"x"))
    with pytest.raises(TypeError):
        run(ringlet.copy_file(bad, str(tmp_path / "d")))
    with pytest.raises(TypeError):
        run(ringlet.copy_file(src, bad))


def test_open_bad_mode_type(ringlet, run, make_file):
    path, _ = make_file(10)
    with pytest.raises(TypeError):
        open(path, 5)

    async def main():
        await ringlet.open(path, 5)

    with pytest.raises(TypeError):
        run(main())


@pytest.mark.parametrize("bad", ["str", 123, None, 1.5, ["x"]], ids=["str", "int", "None", "float", "list"])
def test_write_file_bad_data_type(ringlet, run, tmp_path, bad):
    with pytest.raises(TypeError):
        run(ringlet.write_file(str(tmp_path / "x.bin"), bad))


def _on_file(ringlet, run, path, mode, op):
    async def main():
        async with ringlet.open(path, mode) as f:
            await op(f)

    run(main())


@pytest.mark.parametrize(
    "name,op",
    [
        ("read-str", lambda f: f.read("10")),
        ("read-float", lambda f: f.read(1.5)),
        ("pread-size-str", lambda f: f.pread("10", 0)),
        ("pread-offset-str", lambda f: f.pread(10, "0")),
        ("pread-offset-float", lambda f: f.pread(10, 0.5)),
        ("readinto-bytes", lambda f: f.readinto(b"immutable")),
        ("readinto-str", lambda f: f.readinto("text")),
        ("readinto-int", lambda f: f.readinto(10)),
    ],
)
def test_read_side_type_errors(ringlet, run, make_file, name, op):
    path, _ = make_file(100)
    with pytest.raises(TypeError):
        _on_file(ringlet, run, path, "r+b", op)


@pytest.mark.parametrize(
    "name,op",
    [
        ("write-str", lambda f: f.write("text")),
        ("write-int", lambda f: f.write(123)),
        ("write-None", lambda f: f.write(None)),
        ("pwrite-int", lambda f: f.pwrite(123, 0)),
        ("pwrite-str", lambda f: f.pwrite("text", 0)),
        ("pwrite-offset-str", lambda f: f.pwrite(b"x", "0")),
    ],
)
def test_write_side_type_errors(ringlet, run, make_file, name, op):
    path, data = make_file(100)
    with pytest.raises(TypeError):
        _on_file(ringlet, run, path, "r+b", op)
    assert read_os(path) == data  # nothing written


def test_builtin_reference_type_errors(tmp_path):
    """The reference: built-in binary files raise TypeError for the same inputs."""
    path = tmp_path / "ref.bin"
    path.write_bytes(b"x" * 100)
    with open(path, "r+b") as f:
        with pytest.raises(TypeError):
            f.read("10")
        with pytest.raises(TypeError):
            f.write("text")
        with pytest.raises(TypeError):
            f.readinto(b"immutable")
        with pytest.raises(TypeError):
            os.pwrite(f.fileno(), 123, 0)


# --------------------------------------------------------------------------
# ValueError
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,op",
    [
        ("pread-neg-offset", lambda f: f.pread(10, -1)),
        ("pread-very-neg-offset", lambda f: f.pread(10, -(2**40))),
        ("pread-neg-size", lambda f: f.pread(-1, 0)),
        ("pwrite-neg-offset", lambda f: f.pwrite(b"x", -1)),
        ("pwrite-very-neg-offset", lambda f: f.pwrite(b"x", -(2**40))),
    ],
)
def test_negative_values(ringlet, run, make_file, name, op):
    path, data = make_file(100)
    with pytest.raises(ValueError):
        _on_file(ringlet, run, path, "r+b", op)
    assert read_os(path) == data


@pytest.mark.parametrize("mode", ["", "z", "rw", "rbb", "r+b+", "wa", "rx", "bb", "b", "+", "rbz", "rU"])
def test_invalid_mode(ringlet, run, make_file, mode):
    path, data = make_file(100)
    with pytest.raises(ValueError):
        open(path, mode)  # reference behaviour

    async def main():
        await ringlet.open(path, mode)

    with pytest.raises(ValueError):
        run(main())
    assert read_os(path) == data


def test_invalid_mode_creates_nothing(ringlet, run, tmp_path):
    path = tmp_path / "never.bin"

    async def main():
        await ringlet.open(str(path), "wz")

    with pytest.raises(ValueError):
        run(main())
    assert not path.exists()


def test_embedded_null_in_path(ringlet, run, tmp_path):
    bad = str(tmp_path) + "/a\0b"
    with pytest.raises(ValueError):
        open(bad, "rb")  # reference behaviour
    with pytest.raises(ValueError):
        run(ringlet.read_file(bad))

    async def main():
        await ringlet.open(bad, "rb")

    with pytest.raises(ValueError):
        run(main())


@pytest.mark.parametrize(
    "name,op",
    [
        ("read", lambda f: f.read()),
        ("read-n", lambda f: f.read(10)),
        ("readinto", lambda f: f.readinto(bytearray(10))),
        ("pread", lambda f: f.pread(10, 0)),
        ("write", lambda f: f.write(b"x")),
        ("pwrite", lambda f: f.pwrite(b"x", 0)),
        ("fsync", lambda f: f.fsync()),
        ("fdatasync", lambda f: f.fdatasync()),
    ],
)
def test_closed_file(ringlet, run, make_file, name, op):
    path, data = make_file(100)

    async def main():
        f = await ringlet.open(path, "r+b")
        await f.close()
        await op(f)

    with pytest.raises(ValueError, match="closed file"):
        run(main())
    assert read_os(path) == data


def test_closed_file_fileno(ringlet, run, make_file):
    path, _ = make_file(10)
    ref = open(path, "rb")
    ref.close()
    with pytest.raises(ValueError):
        ref.fileno()  # reference behaviour

    async def main():
        f = await ringlet.open(path, "rb")
        await f.close()
        f.fileno()

    with pytest.raises(ValueError):
        run(main())


# --------------------------------------------------------------------------
# io.UnsupportedOperation
# --------------------------------------------------------------------------


WRONG_MODE_CALLS = {
    # name: (mode, ringlet's call, the built-in file's, or None for a method of ringlet's own)
    "read": ("wb", lambda f: f.read(), lambda f: f.read()),
    "read-n": ("wb", lambda f: f.read(5), lambda f: f.read(5)),
    "read-on-ab": ("ab", lambda f: f.read(), lambda f: f.read()),
    "read1": ("wb", lambda f: f.read1(5), lambda f: f.read1(5)),
    "readinto": ("wb", lambda f: f.readinto(bytearray(5)), lambda f: f.readinto(bytearray(5))),
    "readline": ("wb", lambda f: f.readline(), lambda f: f.readline()),
    "readlines": ("wb", lambda f: f.readlines(), lambda f: f.readlines()),
    "write": ("rb", lambda f: f.write(b"x"), lambda f: f.write(b"x")),
    "writelines": ("rb", lambda f: f.writelines([b"x"]), lambda f: f.writelines([b"x"])),
    "truncate": ("rb", lambda f: f.truncate(0), lambda f: f.truncate(0)),
    "text-truncate": ("r", lambda f: f.truncate(0), lambda f: f.truncate(0)),
    "text-write": ("r", lambda f: f.write("x"), lambda f: f.write("x")),
    "text-read": ("w", lambda f: f.read(), lambda f: f.read()),
    "text-readline": ("w", lambda f: f.readline(), lambda f: f.readline()),
    "pread": ("wb", lambda f: f.pread(5, 0), None),
    "pwrite": ("rb", lambda f: f.pwrite(b"x", 0), None),
}


@pytest.mark.parametrize("name,buffering", [(name, buffering) for name, (mode, _, _) in WRONG_MODE_CALLS.items()
                                             for buffering in ((-1, 0) if "b" in mode else (-1,))])
def test_wrong_mode_like_builtin(ringlet, run, make_file, name, buffering):
    """The built-in file's UnsupportedOperation, message included: a
    buffered file names the method (BufferedWriter.readinto and readline
    read by read()), a FileIO (buffering=0) says "File not open for ...", as
    ringlet's own positional methods do.  Nothing is written."""
    mode, op, builtin_op = WRONG_MODE_CALLS[name]
    if buffering == 0 and name == "read1":
        builtin_op = None  # FileIO has no read1
    path, data = make_file(b"0123456789")
    if builtin_op is None:
        want = f"File not open for {'reading' if 'w' in mode or 'a' in mode else 'writing'}"
    else:
        with open(path + ".ref", "wb") as w:
            w.write(data)
        with open(path + ".ref", mode, buffering=buffering) as ref:
            with pytest.raises(io.UnsupportedOperation) as builtin:
                builtin_op(ref)
        want = str(builtin.value)

    async def main():
        async with ringlet.open(path, mode, buffering=buffering) as f:
            await op(f)

    with pytest.raises(io.UnsupportedOperation) as got:
        run(main())
    assert str(got.value) == want
    if "r" in mode:
        assert read_os(path) == data


def test_unsupported_operation_is_oserror_and_valueerror():
    # sanity: this is what lets callers catch it either way
    assert issubclass(io.UnsupportedOperation, OSError)
    assert issubclass(io.UnsupportedOperation, ValueError)


# --------------------------------------------------------------------------
# errors leave the loop and the engine usable
# --------------------------------------------------------------------------


def test_engine_usable_after_errors(ringlet, run, make_file, tmp_path):
    path, data = make_file(4097)

    async def main():
        for _ in range(20):
            with pytest.raises(FileNotFoundError):
                await ringlet.read_file(str(tmp_path / "missing"))
            with pytest.raises(TypeError):
                await ringlet.read_file(1.5)
        return await ringlet.read_file(path)

    assert run(main()) == data


@pytest.mark.parametrize("mode,buffering", [("rb", -1), ("wb", -1), ("r+b", -1), ("ab", -1), ("rb", 0), ("wb", 0),
                                            ("r", -1), ("w", -1), ("r+", -1), ("a", -1)])
def test_readable_and_writable_of_a_closed_file_like_builtin(ringlet, run, tmp_path, mode, buffering):
    """Closed, a FileIO or a buffered file of both directions raises for
    both; a buffered reader's writable() (and a writer's readable()) is
    io.IOBase's, which says False without looking at the file."""
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with open(path, mode, buffering=buffering) as builtin_file:
        pass

    def outcome_of(method):
        try:
            return method()
        except ValueError as exc:
            return type(exc)

    async def async_outcome_of(method):
        try:
            return await method()
        except ValueError as exc:
            return type(exc)

    async def main():
        f = await ringlet.open(path, mode, buffering=buffering)
        await f.close()
        return [await async_outcome_of(getattr(f, name)) for name in ("readable", "writable")]

    assert run(main()) == [outcome_of(builtin_file.readable), outcome_of(builtin_file.writable)]


STATE_CALLS = {
    "read": lambda f: f.read(), "read-n": lambda f: f.read(1), "read1": lambda f: f.read1(1),
    "readinto": lambda f: f.readinto(bytearray(2)), "readline": lambda f: f.readline(),
    "readlines": lambda f: f.readlines(), "readlines-hint": lambda f: f.readlines(1), "peek": lambda f: f.peek(),
    "write": lambda f: f.write(b"x" if "b" in f.mode else "x"), "writelines-none": lambda f: f.writelines([]),
    "writelines": lambda f: f.writelines([b"x" if "b" in f.mode else "x"]), "truncate": lambda f: f.truncate(0),
    "flush": lambda f: f.flush(), "seek": lambda f: f.seek(0), "tell": lambda f: f.tell(),
    "readable": lambda f: f.readable(), "writable": lambda f: f.writable(), "seekable": lambda f: f.seekable(),
    "isatty": lambda f: f.isatty(), "fileno": lambda f: f.fileno(),
    # a bad argument as well: which of the two faults is reported depends on the layer
    "read-bad": lambda f: f.read("1"), "read1-bad": lambda f: f.read1(None), "readline-bad": lambda f: f.readline(1.5),
    "readinto-bad": lambda f: f.readinto(b"read-only"), "write-bad": lambda f: f.write(3),
    "truncate-bad": lambda f: f.truncate("0"), "seek-bad": lambda f: f.seek(0, 2**40),
}
_ERRORS = (ValueError, OSError, TypeError, OverflowError, BufferError)


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "open"])
@pytest.mark.parametrize("mode,buffering", [("rb", -1), ("wb", -1), ("r+b", -1), ("ab", -1), ("rb", 0), ("wb", 0),
                                            ("r+b", 0), ("r", -1), ("w", -1), ("r+", -1), ("a", -1)])
def test_state_errors_like_builtin(ringlet, run, tmp_path, mode, buffering, closed):
    """Every call on a closed file, and every call the mode refuses, raises
    what the built-in file of the same layer raises, message included (each
    layer checks and words it its own way: "read of closed file" for a
    buffered file, FileIO's "I/O operation on closed file", io.IOBase's with
    a period; a buffered writer refuses read() before it looks at anything)."""
    path = tmp_path / "f"
    differences = []
    for name, call in STATE_CALLS.items():
        path.write_bytes(b"abc\n")
        builtin_file = open(path, mode, buffering=buffering)
        if not hasattr(builtin_file, name.split("-")[0]):  # FileIO has no read1 nor peek, text files no peek...
            builtin_file.close()
            continue
        if closed:
            builtin_file.close()
        try:
            want = _error_of(call, builtin_file)
        finally:
            builtin_file.close()
        path.write_bytes(b"abc\n")

        async def ours():
            f = await ringlet.open(path, mode, buffering=buffering)
            try:
                if closed:
                    await f.close()
                try:
                    result = call(f)
                    if inspect.isawaitable(result):  # fileno() is a plain method
                        await result
                except _ERRORS as exc:
                    return type(exc), str(exc)
                return None
            finally:
                await f.close()

        got = run(ours())
        if got != want:
            differences.append((name, want, got))
    assert differences == []


def _error_of(call, f):
    try:
        call(f)
    except _ERRORS as exc:
        return type(exc), str(exc)
    return None


class _Mine:
    """A class made in Python: CPython names it by its own name."""


@pytest.mark.parametrize("mode", ["w", "rb", "r+b"])
@pytest.mark.parametrize("argument", [None, 3, array.array("b", b"x"), b"ro", "s", memoryview(b"ro"), io.BytesIO(),
                                      _Mine()], ids=lambda a: type(a).__name__)
def test_a_refused_argument_names_its_type_as_builtin(ringlet, run, tmp_path, mode, argument):
    """A text write of a non-str and a readinto of a non-writable buffer:
    the built-in file's TypeError, the type named as CPython names it
    ("None", "array.array", "_io.BytesIO", a class's own name)."""
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    call = (lambda f: f.write(argument)) if mode == "w" else (lambda f: f.readinto(argument))
    with open(path, mode) as f:
        try:
            call(f)
            want = None
        except TypeError as exc:
            want = str(exc)
    path.write_bytes(b"abc")

    async def main():
        async with ringlet.open(path, mode) as f:
            try:
                await call(f)
            except TypeError as exc:
                return str(exc)
        return None

    assert run(main()) == want
