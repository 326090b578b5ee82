"""Content and mode tests: every byte read or written by ringlet is compared
with what plain os calls see, on sizes around the page boundary."""

import array
import asyncio
import os
import pathlib

import pytest

from conftest import read_os, write_os

# --------------------------------------------------------------------------
# whole-file helpers
# --------------------------------------------------------------------------


def test_read_file(ringlet, run, sized_file):
    path, data = sized_file
    got = run(ringlet.read_file(path))
    assert type(got) is bytes
    assert got == data


@pytest.mark.parametrize("kind", ["bytes", "pathlike"])
def test_read_file_path_types(ringlet, run, make_file, kind):
    path, data = make_file(5000)
    p = os.fsencode(path) if kind == "bytes" else pathlib.Path(path)
    assert run(ringlet.read_file(p)) == data


def test_write_file(ringlet, run, tmp_path, size):
    data = os.urandom(size)
    path = str(tmp_path / "out.bin")
    n = run(ringlet.write_file(path, data))
    assert n == size
    assert read_os(path) == data


def test_write_file_truncates(ringlet, run, make_file):
    path, _ = make_file(100_000)
    data = os.urandom(10)
    assert run(ringlet.write_file(path, data)) == 10
    assert read_os(path) == data
    assert os.path.getsize(path) == 10


@pytest.mark.parametrize("kind", ["bytes", "pathlike"])
def test_write_file_path_types(ringlet, run, tmp_path, kind):
    data = os.urandom(4097)
    path = str(tmp_path / "out.bin")
    p = os.fsencode(path) if kind == "bytes" else pathlib.Path(path)
    assert run(ringlet.write_file(p, data)) == len(data)
    assert read_os(path) == data


def test_copy_file(ringlet, run, sized_file, tmp_path):
    src, data = sized_file
    dst = str(tmp_path / "copy.bin")
    n = run(ringlet.copy_file(src, dst))
    assert n == len(data)
    assert read_os(dst) == data
    assert read_os(src) == data  # source untouched


def test_copy_file_truncates_destination(ringlet, run, make_file):
    src, data = make_file(4097)
    dst, _ = make_file(3 * 4096 + 123)
    assert run(ringlet.copy_file(pathlib.Path(src), os.fsencode(dst))) == 4097
    assert read_os(dst) == data


# --------------------------------------------------------------------------
# AsyncFile reads
# --------------------------------------------------------------------------


def test_read_all(ringlet, run, sized_file):
    path, data = sized_file

    async def main():
        async with ringlet.open(path, "rb") as f:
            whole = await f.read()
            again = await f.read()
            return whole, again

    whole, again = run(main())
    assert type(whole) is bytes
    assert whole == data
    assert again == b""


@pytest.mark.parametrize("arg", [-1, None])
def test_read_default_arguments_to_eof(ringlet, run, make_file, arg):
    path, data = make_file(10_000)

    async def main():
        async with ringlet.open(path, "rb") as f:
            return await f.read(arg)

    assert run(main()) == data


@pytest.mark.parametrize("chunk", [1000, 4096, 65536])
def test_read_n_chunks(ringlet, run, sized_file, chunk):
    path, data = sized_file
    if len(data) > 100_000 and chunk < 4096:
        chunk = 4096 * 7 + 1  # keep the number of awaits bounded

    async def main():
        parts = []
        async with ringlet.open(path, "rb") as f:
            while True:
                part = await f.read(chunk)
                assert type(part) is bytes
                assert len(part) <= chunk
                if not part:
                    break
                parts.append(part)
            assert await f.read(chunk) == b""  # still EOF
        return parts

    parts = run(main())
    assert b"".join(parts) == data
    # a regular file returns full chunks until the last one
    assert all(len(p) == chunk for p in parts[:-1])


def test_read_rest_after_partial_reads(ringlet, run, sized_file):
    path, data = sized_file

    async def main():
        async with ringlet.open(path, "rb") as f:
            a = await f.read(10)
            b = await f.read(4000)
            rest = await f.read()
            eof = await f.read()
            eof_n = await f.read(100)
            return a, b, rest, eof, eof_n

    a, b, rest, eof, eof_n = run(main())
    assert a == data[:10]
    assert b == data[10:4010]
    assert rest == data[4010:]
    assert eof == b""
    assert eof_n == b""


def test_read_zero_bytes(ringlet, run, make_file):
    path, data = make_file(100)

    async def main():
        async with ringlet.open(path, "rb") as f:
            z = await f.read(0)
            rest = await f.read()
            return z, rest

    z, rest = run(main())
    assert z == b""
    assert rest == data  # read(0) did not move the position


def test_readinto_bytearray(ringlet, run, sized_file):
    path, data = sized_file

    async def main():
        buf = bytearray(len(data) + 10)
        async with ringlet.open(path, "rb") as f:
            n = await f.readinto(buf)
            n_eof = await f.readinto(bytearray(10))
        return n, buf, n_eof

    n, buf, n_eof = run(main())
    assert n == len(data)
    assert bytes(buf[:n]) == data
    assert bytes(buf[n:]) == bytes(10)  # untouched tail
    assert n_eof == 0


def test_readinto_memoryview_chunks(ringlet, run, sized_file):
    path, data = sized_file

    async def main():
        buf = bytearray(len(data))
        view = memoryview(buf)
        pos = 0
        async with ringlet.open(path, "rb") as f:
            while True:
                n = await f.readinto(view[pos : pos + 4096] if pos < len(buf) else bytearray(1))
                assert isinstance(n, int)
                if n == 0:
                    break
                pos += n
        return bytes(buf), pos

    got, pos = run(main())
    assert pos == len(data)
    assert got == data


def test_readinto_array(ringlet, run, make_file):
    path, data = make_file(4097)

    async def main():
        arr = array.array("B", bytes(5000))
        async with ringlet.open(path, "rb") as f:
            n = await f.readinto(arr)
        return n, arr

    n, arr = run(main())
    assert n == 4097
    assert arr.tobytes()[:n] == data


def test_pread(ringlet, run, sized_file):
    path, data = sized_file
    size = len(data)
    offsets = sorted({0, 1, size // 2, max(size - 1, 0), size, size + 10})

    async def main():
        out = {}
        async with ringlet.open(path, "rb") as f:
            out["all"] = await f.pread(size, 0)
            out["over"] = await f.pread(size + 100, 0)
            for off in offsets:
                out[off] = await f.pread(100, off)
            # pread does not move the file position
            out["pos"] = await f.read()
        return out

    out = run(main())
    assert out["all"] == data
    assert out["over"] == data
    for off in offsets:
        assert out[off] == data[off : off + 100], off
    assert out["pos"] == data


def test_pread_zero_size(ringlet, run, make_file):
    path, _ = make_file(10)

    async def main():
        async with ringlet.open(path, "rb") as f:
            return await f.pread(0, 5)

    assert run(main()) == b""


# --------------------------------------------------------------------------
# AsyncFile writes
# --------------------------------------------------------------------------


def test_write(ringlet, run, tmp_path, size):
    data = os.urandom(size)
    path = str(tmp_path / "w.bin")

    async def main():
        async with ringlet.open(path, "wb") as f:
            return await f.write(data)

    assert run(main()) == size
    assert read_os(path) == data


def test_write_in_pieces_and_bytes_like(ringlet, run, tmp_path):
    path = str(tmp_path / "w.bin")
    pieces = [os.urandom(n) for n in (1, 4095, 4096, 4097, 100_000)]

    async def main():
        ns = []
        async with ringlet.open(path, "wb") as f:
            ns.append(await f.write(pieces[0]))
            ns.append(await f.write(bytearray(pieces[1])))
            ns.append(await f.write(memoryview(pieces[2])))
            ns.append(await f.write(array.array("B", pieces[3])))
            ns.append(await f.write(memoryview(b"xx" + pieces[4])[2:]))
        return ns

    assert run(main()) == [len(p) for p in pieces]
    assert read_os(path) == b"".join(pieces)


def test_pwrite(ringlet, run, make_file, size):
    base = os.urandom(size + 8192)
    path, _ = make_file(base)
    patch = os.urandom(size)

    async def main():
        async with ringlet.open(path, "r+b") as f:
            n = await f.pwrite(patch, 4096)
            # position untouched by pwrite
            head = await f.read(4096)
        return n, head

    n, head = run(main())
    assert n == size
    expected = base[:4096] + patch + base[4096 + size :]
    assert head == base[:4096]
    assert read_os(path) == expected


def test_pwrite_past_eof_makes_hole(ringlet, run, tmp_path):
    path = str(tmp_path / "hole.bin")

    async def main():
        async with ringlet.open(path, "wb") as f:
            return await f.pwrite(b"tail", 10_000)

    assert run(main()) == 4
    assert read_os(path) == bytes(10_000) + b"tail"


def test_fsync_and_fdatasync(ringlet, run, tmp_path):
    path = str(tmp_path / "sync.bin")
    data = os.urandom(5000)

    async def main():
        async with ringlet.open(path, "wb") as f:
            await f.write(data)
            r1 = await f.fsync()
            r2 = await f.fdatasync()
        return r1, r2

    assert run(main()) == (None, None)
    assert read_os(path) == data


def test_write_then_read_back_same_file(ringlet, run, tmp_path, size):
    path = str(tmp_path / "rw.bin")
    data = os.urandom(size)

    async def main():
        await ringlet.write_file(path, data)
        return await ringlet.read_file(path)

    assert run(main()) == data


# --------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------


def test_mode_a_appends(ringlet, run, make_file):
    path, data = make_file(b"abc")

    async def main():
        async with ringlet.open(path, "ab") as f:
            n1 = await f.write(b"def")
        f = await ringlet.open(path, "ab")
        try:
            n2 = await f.write(b"ghi")
        finally:
            await f.close()
        return n1, n2

    assert run(main()) == (3, 3)
    assert read_os(path) == b"abcdefghi"


def test_mode_a_creates(ringlet, run, tmp_path):
    path = str(tmp_path / "new.bin")

    async def main():
        async with ringlet.open(path, "ab") as f:
            await f.write(b"xyz")

    run(main())
    assert read_os(path) == b"xyz"


def test_mode_x_creates_new(ringlet, run, tmp_path):
    path = str(tmp_path / "x.bin")
    data = os.urandom(4097)

    async def main():
        async with ringlet.open(path, "xb") as f:
            return await f.write(data)

    assert run(main()) == len(data)
    assert read_os(path) == data


def test_mode_x_fails_on_existing(ringlet, run, make_file):
    path, data = make_file(b"keep me")

    async def main():
        await ringlet.open(path, "xb")

    with pytest.raises(FileExistsError):
        run(main())
    assert read_os(path) == b"keep me"  # not truncated


def test_mode_w_truncates(ringlet, run, make_file):
    path, _ = make_file(100_000)

    async def main():
        async with ringlet.open(path, "wb") as f:
            await f.write(b"short")

    run(main())
    assert read_os(path) == b"short"


def test_mode_w_truncates_even_without_writes(ringlet, run, make_file):
    path, _ = make_file(100_000)

    async def main():
        async with ringlet.open(path, "wb"):
            pass

    run(main())
    assert os.path.getsize(path) == 0


@pytest.mark.parametrize("mode", ["r+b", "rb+"])
def test_mode_r_plus_reads_and_writes(ringlet, run, make_file, mode):
    path, _ = make_file(b"0123456789")

    async def main():
        async with ringlet.open(path, mode) as f:
            head = await f.read(3)
            n = await f.write(b"XY")  # at the current position (3)
            rest = await f.read()
            whole = await f.pread(100, 0)
        return head, n, rest, whole

    head, n, rest, whole = run(main())
    assert head == b"012"
    assert n == 2
    assert rest == b"56789"
    assert whole == b"012XY56789"
    assert read_os(path) == b"012XY56789"


def test_mode_r_plus_does_not_truncate_or_create(ringlet, run, make_file, tmp_path):
    path, data = make_file(5000)

    async def main():
        async with ringlet.open(path, "r+b") as f:
            await f.write(b"!")
        await ringlet.open(str(tmp_path / "missing"), "r+b")

    with pytest.raises(FileNotFoundError):
        run(main())
    assert read_os(path) == b"!" + data[1:]
    assert not os.path.exists(tmp_path / "missing")


@pytest.mark.parametrize("mode", ["w+b", "wb+"])
def test_mode_w_plus(ringlet, run, make_file, mode):
    path, _ = make_file(50_000)
    data = os.urandom(4097)

    async def main():
        async with ringlet.open(path, mode) as f:
            await f.write(data)
            return await f.pread(10_000, 0)

    assert run(main()) == data
    assert read_os(path) == data


def test_mode_a_plus_reads(ringlet, run, make_file):
    path, _ = make_file(b"hello ")

    async def main():
        async with ringlet.open(path, "a+b") as f:
            await f.write(b"world")
            return await f.pread(100, 0)

    assert run(main()) == b"hello world"
    assert read_os(path) == b"hello world"


def test_mode_x_plus(ringlet, run, tmp_path):
    path = str(tmp_path / "xp.bin")

    async def main():
        async with ringlet.open(path, "x+b") as f:
            await f.write(b"abc")
            return await f.pread(3, 0)

    assert run(main()) == b"abc"


def test_new_file_permissions_follow_umask(ringlet, run, tmp_path):
    path = str(tmp_path / "perm.bin")
    old = os.umask(0o022)
    try:
        run(ringlet.write_file(path, b"x"))
    finally:
        os.umask(old)
    ref = str(tmp_path / "ref.bin")
    old = os.umask(0o022)
    try:
        with open(ref, "wb"):
            pass
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == os.stat(ref).st_mode & 0o777


# --------------------------------------------------------------------------
# attributes and lifecycle
# --------------------------------------------------------------------------


def test_attributes(ringlet, run, make_file):
    path, _ = make_file(10)

    async def main():
        f = await ringlet.open(path, "rb")
        name, mode, closed_before = f.name, f.mode, f.closed
        fd = f.fileno()
        st_fd = os.fstat(fd)
        await f.close()
        return name, mode, closed_before, fd, st_fd, f.closed

    name, mode, closed_before, fd, st_fd, closed_after = run(main())
    assert name == path
    assert mode == "rb"
    assert closed_before is False
    assert closed_after is True
    assert isinstance(fd, int) and fd >= 0
    st = os.stat(path)
    assert (st_fd.st_dev, st_fd.st_ino) == (st.st_dev, st.st_ino)


@pytest.mark.parametrize("mode", ["wb", "ab", "xb", "r+b", "rb+", "w+b"])
def test_mode_attribute(ringlet, run, tmp_path, mode):
    path = str(tmp_path / "m.bin")
    if not mode.startswith("x"):
        write_os(path, b"")

    async def main():
        async with ringlet.open(path, mode) as f:
            return f.mode

    got = run(main())
    with open(path + ".ref" if mode.startswith("x") else path, mode) as ref:
        builtin_mode = ref.mode
    # either the string as given or builtin open()'s normalised spelling
    assert got in (mode, builtin_mode)


def test_name_is_path_as_given(ringlet, run, make_file):
    path, _ = make_file(1)
    bpath = os.fsencode(path)

    async def main():
        async with ringlet.open(bpath, "rb") as f:
            return f.name

    assert run(main()) == bpath


def test_fileno_is_closed_after_close(ringlet, run, make_file):
    path, data = make_file(100)

    async def main():
        f = await ringlet.open(path, "rb")
        fd = f.fileno()
        assert os.fstat(fd).st_size == 100
        await f.close()
        return fd

    fd = run(main())
    # The fd number may only be reused by someone else; in this single
    # threaded test nothing else opens files, so it must be closed.
    with pytest.raises(OSError):
        os.fstat(fd)


def test_async_with_closes(ringlet, run, make_file):
    path, data = make_file(10)

    async def main():
        async with ringlet.open(path, "rb") as f:
            inside = f.closed
            got = await f.read()
        return inside, got, f.closed

    assert run(main()) == (False, data, True)


def test_async_with_on_awaited_file(ringlet, run, make_file):
    path, data = make_file(10)

    async def main():
        f = await ringlet.open(path, "rb")
        async with f as g:
            got = await g.read()
        return got, f.closed

    assert run(main()) == (data, True)


def test_async_with_closes_on_exception(ringlet, run, make_file):
    path, _ = make_file(10)
    holder = []

    async def main():
        async with ringlet.open(path, "rb") as f:
            holder.append(f)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        run(main())
    assert holder[0].closed is True


def test_close_idempotent(ringlet, run, make_file):
    path, _ = make_file(10)

    async def main():
        f = await ringlet.open(path, "rb")
        r1 = await f.close()
        r2 = await f.close()
        r3 = await f.close()
        return r1, r2, r3, f.closed

    assert run(main()) == (None, None, None, True)


def test_many_open_close_do_not_leak_fds(ringlet, run, make_file):
    from conftest import fd_count

    path, data = make_file(4096)

    async def main():
        await ringlet.read_file(path)  # engine created
        before = fd_count()
        for _ in range(200):
            async with ringlet.open(path, "rb") as f:
                assert await f.read(1) == data[:1]
        for _ in range(100):
            assert await ringlet.read_file(path) == data
        return before, fd_count()

    before, after = run(main())
    assert after == before


def test_file_usable_across_awaits_in_other_tasks(ringlet, run, make_file):
    path, data = make_file(10_000)

    async def main():
        f = await ringlet.open(path, "rb")
        try:
            # the file object is passed to other tasks
            parts = await asyncio.gather(*(asyncio.create_task(f.pread(1000, i * 1000)) for i in range(10)))
        finally:
            await f.close()
        return b"".join(parts)

    assert run(main()) == data
