"""Older kernels, emulated: ringlet decides per opcode what goes through the
ring, so on a kernel without IORING_OP_RENAMEAT (before 5.11), MKDIRAT,
SYMLINKAT, LINKAT (before 5.15) or FTRUNCATE (before 6.9) that work must be
done outside the ring, with os's results, and backend()/engine_info() must
say what is missing.  A kernel lacking an opcode ringlet cannot do without
(NEEDED_OPCODES) must hand everything to the thread backend.

The emulation (ringlet._ringlet._restrict_opcodes): every ring set up from
then on reports only the release's opcodes (ringlet._kernels), and an SQE of
any other reaches the kernel as an unknown opcode, which it fails with
EINVAL, as the old kernel would.  So a path that forgot to ask
engine.supports() fails here instead of passing by luck.

The whole os and file suites also run under one emulated release in
``make test`` (RINGLET_TEST_KERNEL, see tests/conftest.py).
"""

import errno
import os
import stat

import pytest

from conftest import TEST_KERNEL, emulate_kernel
from ringlet import _engine, _kernels
from ringlet._contract import NEEDED_OPCODES, Opcode, opcode_name

# The engine's name of each operation (trace records' "op") that uses an
# opcode some supported kernel lacks.
OPTIONAL_OPS = {"rename": Opcode.RENAMEAT, "unlink": Opcode.UNLINKAT, "mkdir": Opcode.MKDIRAT,
                "symlink": Opcode.SYMLINKAT, "link": Opcode.LINKAT, "ftruncate": Opcode.FTRUNCATE}


@pytest.mark.own_backend
def test_the_table_follows_the_kernels_history():
    # The last opcode of each release (include/uapi/linux/io_uring.h at that tag).
    last = {kernel: opcode_name(count - 1) for kernel, count in _kernels.KERNEL_OPCODE_COUNTS.items()}
    assert last == {"5.6": "EPOLL_CTL", "5.11": "UNLINKAT", "5.15": "LINKAT", "6.1": "SENDMSG_ZC", "6.9": "FTRUNCATE"}
    since = {op.name: _kernels.introduced_in(op) for op in Opcode}
    assert since == {"FSYNC": "5.6", "ASYNC_CANCEL": "5.6", "OPENAT": "5.6", "CLOSE": "5.6", "STATX": "5.6",
                     "READ": "5.6", "WRITE": "5.6", "RENAMEAT": "5.11", "UNLINKAT": "5.11", "MKDIRAT": "5.15",
                     "SYMLINKAT": "5.15", "LINKAT": "5.15", "FTRUNCATE": "6.9"}
    for kernel in _kernels.EMULATED_KERNELS:  # each lacks something ringlet uses, none what it needs
        ops = _kernels.opcodes_of(kernel)
        assert NEEDED_OPCODES <= ops and not set(Opcode) <= ops, kernel
    with pytest.raises(ValueError, match="no opcode table for Linux '4.19'"):
        _kernels.opcodes_of("4.19")
    assert _kernels.describe([Opcode.FTRUNCATE, Opcode.LINKAT]) == \
        "IORING_OP_FTRUNCATE (Linux 6.9+), IORING_OP_LINKAT (Linux 5.15+)"


@pytest.fixture
def restore_kernel():
    """Undo what a test emulated: back to RINGLET_TEST_KERNEL's release (or this kernel)."""
    yield emulate_kernel
    emulate_kernel(TEST_KERNEL)


@pytest.fixture(params=_kernels.EMULATED_KERNELS)
def kernel(request, restore_kernel, backend):
    """An older release, emulated for this test (io_uring chosen afresh on it)."""
    restore_kernel(request.param)
    _engine._choice = None  # the backend fixture restores the real choice afterwards
    assert _engine._choose()[0] == "io_uring", _engine._choose()
    return request.param


def missing_of(kernel):
    return [op for op in Opcode if op not in _kernels.opcodes_of(kernel)]


def with_os(root):
    """The scenario with os and built-in open(): its results."""
    out = []
    os.mkdir(root / "d")
    os.makedirs(root / "d" / "e" / "f")
    os.symlink("d", root / "ln")
    out.append(os.readlink(root / "ln"))
    with open(root / "d" / "a", "wb") as f:
        out.append(f.write(b"hello world"))
        out.append(f.truncate(5))
        f.flush()
        os.fsync(f.fileno())
    with open(root / "d" / "a", "r+b") as f:
        out.append(f.read())
        f.seek(2)
        out.append(f.truncate())
    with open(root / "d" / "t", "w+", encoding="utf-8") as f:
        out.append(f.write("one\ntwo\n"))
        out.append(f.truncate(4))
        f.seek(0)
        out.append(f.read())
    os.link(root / "d" / "a", root / "d" / "hard")
    out.append(os.stat(root / "d" / "hard").st_nlink)
    out.append(stat.S_IFMT(os.lstat(root / "ln").st_mode))
    os.rename(root / "d" / "hard", root / "d" / "moved")
    os.replace(root / "d" / "moved", root / "d" / "a2")
    out.append(open(root / "d" / "a2", "rb").read())
    with open(root / "d" / "copy", "wb") as dst:
        dst.write(open(root / "d" / "a2", "rb").read())
    os.unlink(root / "d" / "a2")
    os.remove(root / "d" / "copy")
    os.rmdir(root / "d" / "e" / "f")
    os.removedirs(root / "d" / "e")
    out.append(sorted(os.listdir(root / "d")))
    out.append(os.path.exists(root / "d" / "e"))
    for call in (lambda: os.rmdir(root / "missing"), lambda: os.mkdir(root / "d"),
                 lambda: os.rename(root / "missing", root / "x"), lambda: os.link(root / "missing", root / "x"),
                 lambda: os.symlink("x", root / "ln")):
        try:
            call()
        except OSError as exc:
            out.append((type(exc).__name__, exc.errno))
    return out


async def with_ringlet(ringlet, root):
    """The same scenario with ringlet.os and ringlet.open."""
    ros = ringlet.os
    out = []
    await ros.mkdir(root / "d")
    await ros.makedirs(root / "d" / "e" / "f")
    await ros.symlink("d", root / "ln")
    out.append(await ros.readlink(root / "ln"))
    async with ringlet.open(root / "d" / "a", "wb") as f:
        out.append(await f.write(b"hello world"))
        out.append(await f.truncate(5))
        await f.flush()
        await f.fsync()
    async with ringlet.open(root / "d" / "a", "r+b") as f:
        out.append(await f.read())
        await f.seek(2)
        out.append(await f.truncate())
    async with ringlet.open(root / "d" / "t", "w+", encoding="utf-8") as f:
        out.append(await f.write("one\ntwo\n"))
        out.append(await f.truncate(4))
        await f.seek(0)
        out.append(await f.read())
    await ros.link(root / "d" / "a", root / "d" / "hard")
    out.append((await ros.stat(root / "d" / "hard")).st_nlink)
    out.append(stat.S_IFMT((await ros.lstat(root / "ln")).st_mode))
    await ros.rename(root / "d" / "hard", root / "d" / "moved")
    await ros.replace(root / "d" / "moved", root / "d" / "a2")
    out.append(await ringlet.read_file(root / "d" / "a2"))
    await ringlet.copy_file(root / "d" / "a2", root / "d" / "copy")
    await ros.unlink(root / "d" / "a2")
    await ros.remove(root / "d" / "copy")
    await ros.rmdir(root / "d" / "e" / "f")
    await ros.removedirs(root / "d" / "e")
    out.append(sorted(await ros.listdir(root / "d")))
    out.append(await ros.path.exists(root / "d" / "e"))
    for call in (lambda: ros.rmdir(root / "missing"), lambda: ros.mkdir(root / "d"),
                 lambda: ros.rename(root / "missing", root / "x"), lambda: ros.link(root / "missing", root / "x"),
                 lambda: ros.symlink("x", root / "ln")):
        try:
            await call()
        except OSError as exc:
            out.append((type(exc).__name__, exc.errno))
    return out


@pytest.mark.backends("io_uring")
def test_os_and_file_operations_give_os_results(ringlet, run, tmp_path, kernel):
    (tmp_path / "os").mkdir()
    (tmp_path / "ringlet").mkdir()
    want = with_os(tmp_path / "os")
    ring_ops = set()

    async def main():
        engine = ringlet.get_engine()
        assert [op for op in Opcode if not engine.supports(op)] == missing_of(kernel)
        engine.tracer = lambda record: ring_ops.add(record["op"])
        try:
            return await with_ringlet(ringlet, tmp_path / "ringlet")
        finally:
            engine.tracer = None

    got = run(main())
    assert got == want
    assert len(want) == 13 + 5  # every step reported: 13 results, then the 5 errors
    # What went through the ring: each optional operation exactly when the release has its opcode.
    used = {name for name, op in OPTIONAL_OPS.items() if name in ring_ops}
    assert used == {name for name, op in OPTIONAL_OPS.items() if op in _kernels.opcodes_of(kernel)}, ring_ops
    assert {"open", "read", "write", "close", "statx"} <= ring_ops  # the needed ones always do


@pytest.mark.backends("io_uring")
def test_backend_and_info_name_what_is_missing(ringlet, run, capsys, kernel):
    missing = missing_of(kernel)
    said = _kernels.describe(missing)
    assert f"; lacks {said}, done outside the ring)" in ringlet.backend()

    async def main():
        return ringlet.engine_info()

    view = run(main())
    assert view.missing == missing
    assert f"missing:     {said}: done outside the ring" in str(view).splitlines()
    from ringlet.__main__ import info  # python -m ringlet info

    info()
    assert f"missing:     {said}: done outside the ring" in capsys.readouterr().out.splitlines()
    offline = ringlet.engine_info()  # no running loop: the probe's rings are emulated too
    assert offline.missing == missing
    assert all(opcode_name(op) not in offline.opcodes for op in missing)


@pytest.mark.backends("io_uring")
def test_a_hidden_opcode_fails_in_the_kernel_as_on_the_old_release(ringlet, run, tmp_path, kernel):
    # What an unguarded path would meet: the old kernel's EINVAL for an opcode it does not know.
    path = tmp_path / "f"
    path.write_bytes(b"12345")

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(OSError) as info:
                await engine.ftruncate(fd, 1)
            return info.value.errno, os.fstat(fd).st_size
        finally:
            os.close(fd)

    assert run(main()) == (errno.EINVAL, 5)


@pytest.mark.own_backend
@pytest.mark.parametrize("forced", [False, True], ids=["chosen", "forced"])
def test_a_kernel_without_a_needed_opcode_gets_the_thread_backend(ringlet, run, tmp_path, restore_kernel,
                                                                 monkeypatch, forced):
    # Every release ringlet emulates has NEEDED_OPCODES; a synthetic one lacks
    # STATX and CLOSE (as on 5.5, which has no OPENAT either).
    restore_kernel(None)
    if "error" in _engine.probe():
        pytest.skip(f"{_engine._io_uring_problem(_engine.probe())[0]}: no ring whose opcodes to restrict")
    synthetic = _kernels.opcodes_of("5.6") - {Opcode.STATX, Opcode.CLOSE}
    ringlet._ringlet._restrict_opcodes(synthetic)
    _engine.probe.cache_clear()
    monkeypatch.setattr(_engine, "_choice", None)
    if forced:
        monkeypatch.setenv("RINGLET_BACKEND", "io_uring")
    else:
        monkeypatch.delenv("RINGLET_BACKEND", raising=False)
    said = f"this kernel's io_uring lacks IORING_OP_CLOSE, IORING_OP_STATX (Linux {os.uname().release})"
    path = tmp_path / "f"
    path.write_bytes(b"data")

    async def main():
        return await ringlet.read_file(path)

    if forced:
        assert ringlet.backend() == f"unavailable: RINGLET_BACKEND=io_uring, but {said}"
        with pytest.raises(OSError) as info:
            run(main())
        assert info.value.errno == errno.ENOSYS and said in str(info.value)
    else:
        assert ringlet.backend() == f"threads: {said}"
        assert run(main()) == b"data"
