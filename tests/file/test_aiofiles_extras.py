"""The rest of io's file methods that aiofiles offers (issue 12, point 6,
file part): peek, read1 and readall on binary files, detach on text files,
each compared with built-in open()."""

import io

import pytest

SMALL = b"first line\nsecond line\nthird\n" + bytes(range(256)) + b"\nlast, no newline"


def test_peek_like_builtin(ringlet, run, make_file):
    """peek() shows what comes next without moving the position; how many
    bytes it shows is the buffer's business (io's too), so compare prefixes."""
    path, data = make_file(SMALL)
    steps = [("peek", 0), ("read", 3), ("peek", 1), ("peek", 100), ("readline", None), ("peek", 0),
             ("seek", 40), ("peek", 5), ("read", 10_000), ("peek", 1)]

    def builtin():
        out = []
        with open(path, "rb") as f:
            for name, arg in steps:
                if name == "peek":
                    out.append(("peek", f.tell(), f.peek(arg)))
                elif name == "readline":
                    out.append(f.readline())
                else:
                    out.append(getattr(f, name)(arg))
        return out

    async def main():
        out = []
        async with ringlet.open(path, "rb") as f:
            for name, arg in steps:
                if name == "peek":
                    position = await f.tell()
                    out.append(("peek", position, await f.peek(arg)))
                elif name == "readline":
                    out.append(await f.readline())
                else:
                    out.append(await getattr(f, name)(arg))
        return out

    got, want = run(main()), builtin()
    for have, expect in zip(got, want):
        if isinstance(expect, tuple):
            (_, position, peeked), (_, want_position, want_peeked) = have, expect
            assert position == want_position
            assert peeked == data[position:position + len(peeked)]  # what comes next
            assert bool(peeked) == bool(want_peeked)  # empty only at end of file, as io
        else:
            assert have == expect


def test_peek_on_a_fifo_keeps_the_bytes_for_the_next_read(ringlet, run, fifo):
    from conftest import write_fifo

    async def main():
        async with ringlet.open(fifo, "r+b") as f:
            write_fifo(fifo, b"hello")
            peeked = await f.peek()
            return peeked, await f.read(5)

    assert run(main()) == (b"hello", b"hello")


def test_peek_errors_like_builtin(ringlet, run, make_file, tmp_path):
    path, _ = make_file(SMALL)
    with open(path, "rb") as f, pytest.raises(TypeError):
        f.peek("1")

    async def main():
        async with ringlet.open(path, "rb") as f:
            with pytest.raises(TypeError):
                await f.peek("1")
        async with ringlet.open(tmp_path / "w.bin", "wb") as w:
            # io.BufferedWriter has no peek at all; ringlet's one class says the mode is wrong
            with pytest.raises(io.UnsupportedOperation):
                await w.peek()
        with pytest.raises(ValueError):
            await f.peek()

    run(main())


@pytest.mark.parametrize("mode", ["rb", "r+b"])
def test_read1_like_builtin_on_a_small_file(ringlet, run, make_file, mode):
    path, _ = make_file(SMALL)
    steps = [("read1", 5), ("readline", None), ("read1", 3), ("read1", 100), ("read1", -1), ("read1", 10)]

    def builtin():
        with open(path, mode) as f:
            return [f.readline() if name == "readline" else f.read1(arg) for name, arg in steps]

    async def main():
        async with ringlet.open(path, mode) as f:
            return [await f.readline() if name == "readline" else await f.read1(arg) for name, arg in steps]

    assert run(main()) == builtin()


def test_readall_like_builtin_raw_file(ringlet, run, make_file):
    path, data = make_file(SMALL * 1000)
    with open(path, "rb", buffering=0) as f:
        head = f.read(7)
        want = f.readall()
        want_again = f.readall()

    async def main():
        async with ringlet.open(path, "rb") as f:
            return await f.read(7), await f.readall(), await f.readall()

    assert run(main()) == (head, want, want_again)
    assert head + want == data


def test_detach_returns_the_binary_file_like_builtin(ringlet, run, make_file):
    path, data = make_file(SMALL)
    f = open(path, encoding="latin-1")
    line = f.readline()
    raw = f.detach()  # (the text file cannot be closed now: no "with")
    want = (line, type(raw).__name__, raw.tell(), raw.read())
    raw.close()

    async def main():
        f = await ringlet.open(path, encoding="latin-1")
        line = await f.readline()
        raw = f.detach()
        try:
            assert isinstance(raw, ringlet.AsyncFile)
            assert "detached" in repr(f)
            for call in (lambda: f.read(), lambda: f.readline(), lambda: f.__anext__(), lambda: f.tell(),
                         lambda: f.seek(0), lambda: f.write("x"), lambda: f.close()):
                with pytest.raises(ValueError, match="detached"):
                    await call()
            with pytest.raises(ValueError, match="detached"):
                f.detach()
            with pytest.raises(ValueError, match="detached"):
                f.closed
            return line, await raw.tell(), await raw.read()
        finally:
            await raw.close()

    line, position, rest = run(main())
    assert (line, position, rest) == (want[0], want[2], want[3])
    assert want[1] == "BufferedReader"


def test_detach_writes_what_was_buffered_like_builtin(ringlet, run, tmp_path):
    ours, theirs = tmp_path / "ours.txt", tmp_path / "theirs.txt"
    f = open(theirs, "w", encoding="utf-8")
    f.write("h\u00e9llo ")
    raw = f.detach()
    raw.write(b"bytes")
    raw.close()

    async def main():
        f = await ringlet.open(ours, "w", encoding="utf-8")
        await f.write("h\u00e9llo ")
        raw = f.detach()
        await raw.write(b"bytes")
        await raw.close()

    run(main())
    assert ours.read_bytes() == theirs.read_bytes() == "h\u00e9llo bytes".encode()


def test_detach_of_a_closed_text_file_like_builtin(ringlet, run, make_file):
    path, _ = make_file(SMALL)
    with open(path, encoding="latin-1") as f:
        pass
    with pytest.raises(ValueError):
        f.detach()

    async def main():
        async with ringlet.open(path, encoding="latin-1") as f:
            pass
        with pytest.raises(ValueError):
            f.detach()

    run(main())
