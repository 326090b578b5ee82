"""Text mode: ringlet.open(path, "r"/"w"/..., encoding=, errors=, newline=)
compared with built-in open() on the same files: the same strings, the same
bytes on disk, the same tell() values where CPython's are byte offsets, and
the same exceptions."""

import asyncio
import gc
import io
import locale
import os
import random
import sys
import tracemalloc
import warnings

import pytest

from conftest import read_os, write_os

NEWLINES = [None, "", "\n", "\r", "\r\n"]
NEWLINE_IDS = ["None", "empty", "LF", "CR", "CRLF"]
ENCODINGS = ["utf-8", "latin-1", "utf-16", "utf-8-sig", "utf-32", "cp1252"]
# Every kind of line ending, non-ASCII text, a line longer than the 8 KiB decode chunk.
SAMPLE = "héllo\r\nwörld\rthird\n\nno end €" + "x" * 9000 + "\r\n" + "last\r"


def _encodable(text, encoding):
    return text.encode(encoding, "replace").decode(encoding, "replace")


def builtin_result(fn, path, mode, **kw):
    """fn(file) on a built-in open(); the exception type if anything raises."""
    try:
        with open(path, mode, **kw) as f:
            return fn(f)
    except Exception as exc:  # noqa: BLE001 - the type is the result compared
        return type(exc)


def ringlet_result(ringlet, run, afn, path, mode, **kw):
    async def main():
        async with ringlet.open(path, mode, **kw) as f:
            return await afn(f)

    try:
        return run(main())
    except Exception as exc:  # noqa: BLE001
        return type(exc)


async def _alines(f):
    return [line async for line in f]


async def _readlines_and_tells(f):
    out = []
    while True:
        tell = await f.tell()
        line = await f.readline()
        out.append((tell, line))
        if not line:
            return out


def _builtin_readlines_and_tells(f):
    out = []
    while True:
        tell = f.tell()
        line = f.readline()
        out.append((tell, line))
        if not line:
            return out


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("newline", NEWLINES, ids=NEWLINE_IDS)
def test_read_all_and_lines_and_tell_like_builtin(ringlet, run, tmp_path, encoding, newline):
    path = tmp_path / "t.txt"
    path.write_bytes(_encodable(SAMPLE, encoding).encode(encoding))
    kw = dict(encoding=encoding, newline=newline)
    text = ringlet_result(ringlet, run, lambda f: f.read(), path, "r", **kw)
    assert text == builtin_result(lambda f: f.read(), path, "r", **kw)
    assert isinstance(text, str) and text
    got = ringlet_result(ringlet, run, _readlines_and_tells, path, "r", **kw)
    ref = builtin_result(_builtin_readlines_and_tells, path, "r", **kw)
    assert [line for _, line in got] == [line for _, line in ref]
    assert "".join(line for _, line in got) == text
    for (tell, _), (ref_tell, _) in zip(got, ref):
        if ref_tell < 2**64:  # CPython's cookie is a byte offset there: ours must be the same
            assert tell == ref_tell


@pytest.mark.parametrize("newline", NEWLINES, ids=NEWLINE_IDS)
def test_async_for_and_newlines_attribute(ringlet, run, tmp_path, newline):
    path = tmp_path / "t.txt"
    path.write_bytes(SAMPLE.encode())

    async def lines_and_newlines(f):
        return await _alines(f), f.newlines

    got = ringlet_result(ringlet, run, lines_and_newlines, path, "r", encoding="utf-8", newline=newline)
    ref = builtin_result(lambda f: (list(f), f.newlines), path, "r", encoding="utf-8", newline=newline)
    assert got == ref
    assert len(got[0]) >= 3


@pytest.mark.parametrize("sizes", [[1, 1, 1, 5, 100, 9000, -1], [0, 3, 8192, 1, 7, None]], ids=["small-first", "chunk"])
def test_read_n_characters_like_builtin(ringlet, run, tmp_path, sizes):
    path = tmp_path / "t.txt"
    path.write_bytes(SAMPLE.encode("utf-8"))

    async def reads(f):
        return [await f.read(n) for n in sizes] + [await f.read()]

    got = ringlet_result(ringlet, run, reads, path, "r", encoding="utf-8")
    assert got == builtin_result(lambda f: [f.read(n) for n in sizes] + [f.read()], path, "r", encoding="utf-8")
    assert got[-1] == ""


@pytest.mark.parametrize("hint", [-1, 0, 1, 5, 6, 7, 20, 10_000])
def test_readline_size_and_readlines_hint_like_builtin(ringlet, run, tmp_path, hint):
    path = tmp_path / "t.txt"
    path.write_bytes(SAMPLE.encode())

    async def both(f):
        return [await f.readline(3), await f.readline(0), await f.readline(100)], await f.readlines(hint)

    got = ringlet_result(ringlet, run, both, path, "r", encoding="utf-8")
    assert got == builtin_result(lambda f: ([f.readline(3), f.readline(0), f.readline(100)], f.readlines(hint)),
                                 path, "r", encoding="utf-8")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "cp1252"])
@pytest.mark.parametrize("newline", NEWLINES, ids=NEWLINE_IDS)
def test_readlines_like_builtin(ringlet, run, tmp_path, encoding, newline):
    """readlines() with every line ending (a CR alone, CR LF, an empty line,
    none at the end) and lines longer than the decode chunk; from the start,
    after a readline (read-ahead left), then tell() and a read at the end."""
    path = tmp_path / "t.txt"
    text = _encodable(SAMPLE + "\r\n" + "y" * 20_000 + "\n\r\n\rz", encoding)
    path.write_bytes(text.encode(encoding))
    kw = dict(encoding=encoding, newline=newline)

    async def twice(f):
        first = await f.readlines()
        await f.seek(0)
        return first, await f.readline(), await f.readlines(), await f.tell(), await f.read()

    got = ringlet_result(ringlet, run, twice, path, "r", **kw)
    ref = builtin_result(lambda f: (f.readlines(), f.seek(0) and None or f.readline(), f.readlines(), f.tell(),
                                    f.read()), path, "r", **kw)
    assert got == ref
    assert len(got[0]) >= 4


@pytest.mark.parametrize("call", ["read(n)", "readline", "readlines", "readlines(hint)", "async for"])
def test_long_text_takes_few_reads(ringlet, run, tmp_path, call):
    """Text that the read-ahead lacks is read in doubling reads, not in
    8 KiB chunks: each read appends to the decoded text (a copy of it), so
    4 MiB in 8 KiB reads copied gigabytes (text read(16 MiB) took 5 s, a
    64 MiB readlines() 114 s).  Counted: the engine's reads."""
    path = tmp_path / "t.txt"
    line = "é" * (2 << 20) + "\n"  # one line of 4 MiB (two bytes a character)
    path.write_bytes((line + "short\n" * 1000 + line).encode())

    async def main():
        engine = ringlet.get_engine()
        async with ringlet.open(path, encoding="utf-8") as f:
            before = engine.stats()["submitted"]
            if call == "read(n)":
                got = [await f.read(len(line) + 3)]
            elif call == "readline":
                got = [await f.readline() for _ in range(1002)]
            elif call == "readlines":
                got = await f.readlines()
            elif call == "readlines(hint)":
                got = await f.readlines(len(line) + 1)
            else:
                got = [line async for line in f]
            return got, engine.stats()["submitted"] - before

    got, reads = run(main())
    assert "".join(got) == path.read_text(encoding="utf-8")[:len("".join(got))]
    assert len("".join(got)) > len(line)
    assert reads <= 24, f"{reads} reads"


@pytest.mark.parametrize("call", ["read", "readlines"])
def test_a_read_to_the_end_keeps_no_copy_of_the_text(ringlet, run, tmp_path, call):
    """A text read() or readlines() of the whole file keeps neither its text
    nor its bytes once returned (both were kept until the next call: twice
    the file's size for ASCII text), and a write after it still adds no second
    byte order mark.  Counted: memory allocated by Python and not freed."""
    path = tmp_path / "t.txt"
    content = "line of text\n" * (1 << 18)
    path.write_text(content, encoding="utf-8-sig")

    async def main():
        async with ringlet.open(path, "r+", encoding="utf-8-sig") as f:
            tracemalloc.start()
            try:
                got = "".join(await (f.read() if call == "read" else f.readlines()))
                kept = tracemalloc.get_traced_memory()[0] - len(got)  # the result is an ASCII str
            finally:
                tracemalloc.stop()
            await f.write("end\n")
            return got, kept

    got, kept = run(main())
    assert got == content
    assert kept < 1 << 20, f"{kept} bytes kept"
    assert path.read_bytes() == (content + "end\n").encode("utf-8-sig")


@pytest.mark.parametrize("newline", [None, "", "\r\n"])
def test_small_text_reads_come_from_the_decoded_read_ahead(ringlet, run, tmp_path, newline):
    """read(7) after read(7) gives the characters io gives, from what is
    decoded ahead, without a Python frame each (C, as lines): the Python
    read runs once a refill (8 KiB after the open, then 64 KiB).  Counted
    with sys.setprofile."""
    path = tmp_path / "t.txt"
    path.write_bytes("".join(f"é ligne {i}\r\n" if i % 3 else f"line {i}\n" for i in range(3000)).encode())

    async def main():
        frames = []

        def profile(frame, event, arg):
            if event == "call" and frame.f_code.co_name == "read":
                frames.append(frame)

        async with ringlet.open(path, encoding="utf-8", newline=newline) as f:
            got = []
            sys.setprofile(profile)
            try:
                while piece := await f.read(7):
                    got.append(piece)
            finally:
                sys.setprofile(None)
            return got, len(frames)

    got, frames = run(main())
    with open(path, encoding="utf-8", newline=newline) as g:
        expected = list(iter(lambda: g.read(7), ""))
    assert got == expected
    assert frames < len(got) // 20, (frames, len(got))


@pytest.mark.parametrize("hint", [-1, 0, 100])
def test_readlines_at_end_of_file_is_empty_like_builtin(ringlet, run, tmp_path, hint):
    """At the end of the file readlines() has no line to give, however the
    read-ahead came to be used up (a read-ahead used up entirely is dropped
    by the next read of the file, which finds its end)."""
    path = tmp_path / "t.txt"
    path.write_bytes(SAMPLE.encode())

    async def at_end(f):
        first = [await f.readlines(), await f.readlines(hint)]
        await f.seek(0)
        return first + [await f.read(), await f.readlines(hint), await f.readline(), await f.readlines(hint)]

    got = ringlet_result(ringlet, run, at_end, path, "r", encoding="utf-8")
    assert got == builtin_result(lambda f: [f.readlines(), f.readlines(hint), f.seek(0) and None or f.read(),
                                            f.readlines(hint), f.readline(), f.readlines(hint)],
                                 path, "r", encoding="utf-8")
    assert got[1] == got[3] == got[5] == []


@pytest.mark.parametrize("errors", ["strict", "replace", "ignore", "surrogateescape", "backslashreplace"])
def test_decode_errors_like_builtin(ringlet, run, tmp_path, errors):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\n\xff\xfe bad \xc3\n" + b"tail\xe2\x82")
    got = ringlet_result(ringlet, run, lambda f: f.read(), path, "r", encoding="utf-8", errors=errors)
    assert got == builtin_result(lambda f: f.read(), path, "r", encoding="utf-8", errors=errors)
    if errors == "strict":
        assert got is UnicodeDecodeError


def test_default_encoding_is_the_locale_one(ringlet, run, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"plain ascii\n")

    async def attributes(f):
        return f.encoding, f.errors, f.line_buffering, f.newlines, f.mode, await f.read()

    got = ringlet_result(ringlet, run, attributes, path, "r")
    assert got == builtin_result(lambda f: (f.encoding, f.errors, f.line_buffering, f.newlines, f.mode, f.read()),
                                 path, "r")
    assert got[0] == locale.getpreferredencoding(False)


def test_default_mode_is_text_read(ringlet, run, make_file):
    path, _ = make_file(b"abc\n")

    async def main():
        async with ringlet.open(path) as f:
            return type(f).__name__, f.mode, await f.read()

    assert run(main()) == ("AsyncTextFile", "r", "abc\n")


def test_text_file_attributes(ringlet, run, tmp_path):
    path = str(tmp_path / "a.txt")

    async def main():
        async with ringlet.open(path, "w+", encoding="utf-16", errors="replace", newline="\r\n") as f:
            closed_before = f.closed
            info = (f.name, f.mode, f.encoding, f.errors, f.newlines, f.buffer.mode, f.fileno() == f.buffer.fileno(),
                    await f.readable(), await f.writable(), await f.seekable(), await f.isatty())
        return closed_before, info, f.closed

    closed_before, info, closed_after = run(main())
    assert (closed_before, closed_after) == (False, True)
    assert info == (path, "w+", "utf-16", "replace", None, "w+b", True, True, True, True, False)


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("newline", NEWLINES, ids=NEWLINE_IDS)
def test_write_bytes_on_disk_like_builtin(ringlet, run, tmp_path, encoding, newline):
    text = _encodable(SAMPLE, encoding)
    ours, ref = tmp_path / "ours.txt", tmp_path / "ref.txt"

    async def main():
        async with ringlet.open(ours, "w", encoding=encoding, newline=newline) as f:
            counts = [await f.write(text[:10]), await f.write(text[10:]), await f.write("")]
            await f.writelines(["a\n", "b\r\n", "c"])
        return counts

    with open(ref, "w", encoding=encoding, newline=newline) as g:
        ref_counts = [g.write(text[:10]), g.write(text[10:]), g.write("")]
        g.writelines(["a\n", "b\r\n", "c"])
    assert run(main()) == ref_counts
    assert read_os(ours) == read_os(ref)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-8-sig", "utf-32"])
def test_append_adds_no_second_bom_like_builtin(ringlet, run, tmp_path, encoding):
    ours, ref = tmp_path / "ours.txt", tmp_path / "ref.txt"

    async def main():
        for part in ("first\n", "second\n"):
            async with ringlet.open(ours, "a", encoding=encoding) as f:
                assert await f.tell() == os.path.getsize(ours)
                await f.write(part)
        async with ringlet.open(ours, "r", encoding=encoding) as f:
            return await f.read()

    for part in ("first\n", "second\n"):
        with open(ref, "a", encoding=encoding) as g:
            g.write(part)
    assert run(main()) == "first\nsecond\n"
    assert read_os(ours) == read_os(ref)


def test_write_wrong_type_and_modes_like_builtin(ringlet, run, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"abc\n")
    for mode, fn in [("w", lambda f: f.write(b"bytes")), ("w", lambda f: f.write(5)), ("r", lambda f: f.write("x")),
                     ("w", lambda f: f.read()), ("w", lambda f: f.readline()), ("r", lambda f: f.truncate()),
                     ("r", lambda f: f.seek(1, 1)), ("r", lambda f: f.seek(1, 2)), ("r", lambda f: f.seek(-1)),
                     ("r", lambda f: f.seek(0, 7)), ("r", lambda f: f.readline(1.5))]:
        want = builtin_result(fn, path, mode, encoding="utf-8")
        got = ringlet_result(ringlet, run, fn, path, mode, encoding="utf-8")
        assert isinstance(want, type) and issubclass(want, Exception)
        assert got is want, (mode, want)


def test_closed_text_file_raises_value_error(ringlet, run, make_file):
    path, _ = make_file(b"abc\n")

    async def main():
        f = await ringlet.open(path, "r+", encoding="utf-8")
        await f.close()
        await f.close()  # idempotent
        errors = []
        for call in (f.read, f.readline, lambda: f.write("x"), f.tell, lambda: f.seek(0), f.flush, f.truncate,
                     f.readlines, lambda: f.writelines([]), lambda: f.writelines(None)):
            try:
                await call()
            except ValueError as exc:
                errors.append(type(exc))
        return errors

    # (writelines as io's: the closed file first, before the lines; an empty list was taken)
    assert run(main()) == [ValueError] * 10


@pytest.mark.parametrize("call, arg", [("read", "3"), ("readline", 1.5), ("readlines", b"1"), ("read", 2**64)])
@pytest.mark.parametrize("state", ["write-only", "closed"])
def test_a_bad_size_is_refused_before_the_files_state(ringlet, run, make_file, call, arg, state):
    """As io.TextIOWrapper's: the size is converted (TypeError, OverflowError)
    before the file is found closed or not readable."""
    path, _ = make_file(b"abc\n")
    want = builtin_result(lambda f: (f.close() if state == "closed" else None, getattr(f, call)(arg)), path, "a")

    async def ours(f):
        if state == "closed":
            await f.close()
        return await getattr(f, call)(arg)

    assert want in (TypeError, OverflowError)
    assert ringlet_result(ringlet, run, ours, path, "a") is want


def test_writes_are_buffered_until_flush(ringlet, run, tmp_path):
    path = tmp_path / "t.txt"

    async def main():
        async with ringlet.open(path, "w", encoding="utf-8") as f:
            await f.write("buffered\n")
            before = read_os(path)
            await f.flush()
            after_flush = read_os(path)
            await f.write("more")
        return before, after_flush

    assert run(main()) == (b"", b"buffered\n")
    assert read_os(path) == b"buffered\nmore"


@pytest.mark.parametrize("buffering, first, second, line_buffering", [
    (1, "no end yet", " now\n", True),  # line buffering: written at the line end
    (16, "12345", "x" * 20, False),     # written once 16 bytes are pending
])
def test_buffering_argument_decides_when_writes_go_out(ringlet, run, tmp_path, buffering, first, second,
                                                        line_buffering):
    path = tmp_path / "t.txt"

    async def main():
        async with ringlet.open(path, "w", buffering=buffering, encoding="utf-8") as f:
            await f.write(first)
            held = read_os(path)
            await f.write(second)
            return f.line_buffering, held, read_os(path)

    assert run(main()) == (line_buffering, b"", (first + second).encode())


def test_unclosed_text_file_keeps_its_writes(ringlet, run, tmp_path):
    path = tmp_path / "t.txt"

    async def main():
        f = await ringlet.open(path, "w", encoding="utf-8")
        await f.write("not flushed\n")
        del f

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(main())
        gc.collect()
    assert read_os(path) == b"not flushed\n"
    assert any(issubclass(w.category, ResourceWarning) for w in caught)


# --------------------------------------------------------------------------
# position: tell, seek, truncate; reads and writes mixed
# --------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-8-sig", "utf-32"])
def test_seek_to_every_tell_gives_the_rest(ringlet, run, tmp_path, encoding):
    path = tmp_path / "t.txt"
    text = "a€\r\nb\rc\n" * 50
    path.write_bytes(text.encode(encoding))

    async def main():
        async with ringlet.open(path, "r", encoding=encoding, newline="") as f:
            cookies = []
            while True:
                cookies.append((await f.tell(), len(await f.read(0)) + sum(len(c) for _, c in cookies)))
                chunk = await f.read(3)
                cookies[-1] = (cookies[-1][0], chunk)
                if not chunk:
                    break
            rests = []
            for cookie, _ in cookies:
                assert await f.seek(cookie) == cookie
                rests.append(await f.read())
            return [c for _, c in cookies], rests

    chunks, rests = run(main())
    assert "".join(chunks) == text
    for i, rest in enumerate(rests):
        assert rest == "".join(chunks[i:])


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_a_byte_order_mark_only_at_the_first_byte(ringlet, run, tmp_path, encoding):
    """A write after reads past byte 0 writes no byte order mark (CPython
    writes one in the middle: "ab\ufeffc"); one at byte 0 does."""
    path = tmp_path / "t.txt"

    async def main():
        async with ringlet.open(path, "w+", encoding=encoding) as f:
            await f.write("ab")
            await f.seek(0)
            got = await f.read()
            await f.write("c")
            await f.seek(0)
            await f.write("A")  # at byte 0 again: the mark, then "A" over "a"
            return got

    assert run(main()) == "ab"
    assert path.read_bytes() == "Abc".encode(encoding)


def test_no_byte_order_mark_after_a_read_that_failed(ringlet, run, tmp_path):
    """A read that fails to decode leaves the position past what it read
    (tell() says so), and a write there writes no byte order mark, though
    nothing was decoded since the file opened at byte 0.  (CPython writes
    one there.)"""
    path = tmp_path / "t.txt"
    path.write_bytes(b"\0\0")  # no BOM: Python's UTF-16 decoder refuses it

    async def main():
        async with ringlet.open(path, "r+", encoding="utf-16") as f:
            with pytest.raises(UnicodeError, match="BOM"):
                await f.readline()
            where = await f.tell()
            await f.write("c")
            return where

    assert run(main()) == 2
    assert path.read_bytes() == b"\0\0" + "c".encode("utf-16-le" if sys.byteorder == "little" else "utf-16-be")


@pytest.mark.parametrize("mode", ["w+", "a+"])
@pytest.mark.parametrize("call", ["read", "readline", "readlines", "tell", "flush", "write"])
def test_buffered_text_outlives_a_cancelled_call(ringlet, run, tmp_path, mode, call):
    """Text that write() buffered is written by the next call that flushes
    (a read, tell, flush, or a write past the buffer's size).  Cancelled
    after 0-3 turns of the loop, that call must leave what it did not write
    buffered: the close writes it (it was lost: the buffer was emptied
    before the write, and a write stopped by the cancel wrote nothing)."""
    path = tmp_path / "t.txt"
    big = "x" * (64 * 1024)  # a write of it flushes what is buffered

    async def one(turns):
        path.write_bytes(b"")
        async with ringlet.open(path, mode, encoding="utf-8") as f:
            await f.write("hello")
            task = asyncio.ensure_future(f.write(big) if call == "write" else getattr(f, call)())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        return path.read_bytes()

    async def main():
        return [await one(turns) for turns in range(4) for _ in range(5)]

    for got in run(main()):
        assert got in (b"hello", b"hello" + big.encode()), got[:20]


def test_seek_end_and_cur_like_builtin(ringlet, run, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("één\ntwee\n".encode())

    async def main(f):
        return [await f.readline(), await f.seek(0, os.SEEK_CUR), await f.read(), await f.seek(0, os.SEEK_END),
                await f.read(), await f.seek(0), await f.read(2)]

    got = ringlet_result(ringlet, run, main, path, "r", encoding="utf-8")
    ref = builtin_result(lambda f: [f.readline(), f.seek(0, 1), f.read(), f.seek(0, 2), f.read(), f.seek(0), f.read(2)],
                         path, "r", encoding="utf-8")
    assert got == ref


@pytest.mark.parametrize("mode", ["r+", "w+", "a+"])
def test_write_after_read_goes_at_tell(ringlet, run, tmp_path, mode):
    """ringlet writes where the reads reached; CPython's TextIOWrapper writes
    after its read-ahead unless one seeks first, so the reference seeks to tell()."""
    ours, ref = tmp_path / "ours.txt", tmp_path / "ref.txt"
    for p in (ours, ref):
        p.write_bytes("première ligne\nsecond\nthird\n".encode())

    async def main():
        async with ringlet.open(ours, mode, encoding="utf-8") as f:
            await f.seek(0)
            first = await f.readline()
            position = await f.tell()
            await f.write("SECOND")
            after = await f.readline()
            await f.seek(0)
            return first, position, after, await f.read()

    with open(ref, mode, encoding="utf-8") as g:
        g.seek(0)
        first = g.readline()
        position = g.tell()
        g.seek(position)
        g.write("SECOND")
        g.seek(g.tell())
        after = g.readline()
        g.seek(0)
        expected = (first, position, after, g.read())
    assert run(main()) == expected
    assert read_os(ours) == read_os(ref)


def test_truncate_like_builtin(ringlet, run, tmp_path):
    ours, ref = tmp_path / "ours.txt", tmp_path / "ref.txt"
    for p in (ours, ref):
        p.write_bytes("ligne un\nligne deux\n".encode())

    async def main():
        async with ringlet.open(ours, "r+", encoding="utf-8") as f:
            line = await f.readline()
            size = await f.truncate()
            await f.write("tail")
            at_end = await f.tell()
            return line, size, at_end, await f.truncate(3), await f.tell()

    with open(ref, "r+", encoding="utf-8") as g:
        line = g.readline()
        g.seek(g.tell())
        size = g.truncate()
        g.write("tail")
        expected = (line, size, g.tell(), g.truncate(3), g.tell())
    assert run(main()) == expected
    assert read_os(ours) == read_os(ref) == b"lig"


def test_text_on_a_pipe(ringlet, run):
    """Lines through a pipe (no seeking): readline works, tell() fails as for built-in."""
    r, w = os.pipe()
    os.write(w, "un\ndeux\r\ntrois".encode())
    os.close(w)

    async def main():
        async with ringlet.open(r, "r", encoding="utf-8") as f:
            lines = await f.readlines()
            with pytest.raises(OSError):
                await f.tell()
            return lines, await f.seekable()

    assert run(main()) == (["un\n", "deux\n", "trois"], False)


# --------------------------------------------------------------------------
# open() arguments
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode, kw", [
    ("r", dict(encoding=5)), ("r", dict(errors=5)), ("r", dict(newline=5)), ("r", dict(newline="x")),
    ("r", dict(encoding="no-such-codec")), ("r", dict(encoding="hex")), ("r", dict(buffering=0)),
    ("r", dict(buffering="1")), ("rb", dict(encoding="utf-8")), ("rb", dict(errors="strict")),
    ("rb", dict(newline="")), ("rtb", {}), ("rU", {}),
], ids=lambda v: repr(v) if isinstance(v, dict) else v)
def test_bad_open_arguments_like_builtin(ringlet, run, make_file, mode, kw):
    path, data = make_file(b"abc")
    want = builtin_result(lambda f: None, path, mode, **kw)
    assert isinstance(want, type) and issubclass(want, Exception)
    assert ringlet_result(ringlet, run, lambda f: asyncio.sleep(0), path, mode, **kw) is want
    assert read_os(path) == data


def test_bad_encoding_refused_before_the_file_is_touched(ringlet, run, make_file):
    """A documented difference: built-in open() truncates first, then fails."""
    path, data = make_file(b"keep me")
    with pytest.raises(LookupError):
        run(ringlet.open(path, "w", encoding="no-such-codec"))
    assert read_os(path) == data


@pytest.mark.parametrize("mode", ["r", "rt", "w", "wt", "a", "x", "r+", "w+", "a+", "x+"])
def test_every_text_mode_opens_like_builtin(ringlet, run, tmp_path, mode):
    ours, ref = tmp_path / "ours.txt", tmp_path / "ref.txt"
    if not mode.startswith("x"):
        write_os(ours, b"old\n")
        write_os(ref, b"old\n")

    async def main():
        async with ringlet.open(ours, mode, encoding="utf-8") as f:
            if await f.writable():
                await f.write("new\n")
            if await f.readable():
                await f.seek(0)
                return await f.read()

    with open(ref, mode, encoding="utf-8") as g:
        if g.writable():
            g.write("new\n")
        if g.readable():
            g.seek(0)
            expected = g.read()
        else:
            expected = None
    assert run(main()) == expected
    assert read_os(ours) == read_os(ref)


# --------------------------------------------------------------------------
# seeded differential runs against built-in open()
# --------------------------------------------------------------------------

PIECES = ["a", "é", "€", "𝄞", "\n", "\r", "\r\n", " ", "xyz"]


def _readlines_by_readline(f, hint):
    """f.readlines(hint) as io.IOBase has it, made with readline(): the
    built-in one iterates, and a text file's tell() fails after a stopped
    iteration."""
    lines, total = [], 0
    while not 0 < hint < total:
        line = f.readline()
        if not line:
            break
        lines.append(line)
        total += len(line)
    return lines


@pytest.mark.parametrize("seed", range(6))
def test_random_reads_match_builtin(ringlet, run, tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "t.txt"
    checked = 0

    async def one(encoding, newline):
        nonlocal checked
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3000)))
        path.write_bytes(text.encode(encoding))
        with open(path, "r", encoding=encoding, newline=newline) as ref:
            async with ringlet.open(path, "r", encoding=encoding, newline=newline) as f:
                for _ in range(40):
                    op = rng.choice(["read", "readline", "readlines", "tell"])
                    n = rng.choice([-1, 0, 1, 2, 5, 100, 9000])
                    if op == "read":
                        assert await f.read(n) == ref.read(n)
                    elif op == "readline":
                        assert await f.readline(n) == ref.readline(n)
                    elif op == "readlines":
                        assert await f.readlines(n) == _readlines_by_readline(ref, n)
                    else:
                        cookie, ref_cookie = await f.tell(), ref.tell()
                        if ref_cookie < 2**64:
                            assert cookie == ref_cookie
                        async with ringlet.open(path, "r", encoding=encoding, newline=newline) as g:
                            await g.seek(cookie)
                            rest = await g.read()
                        ref.seek(ref_cookie)
                        assert rest == ref.read()
                        ref.seek(ref_cookie)
                        await f.seek(cookie)
                    checked += 1

    async def main():
        for _ in range(12):
            await one(rng.choice(["utf-8", "utf-16", "utf-8-sig", "utf-32"]), rng.choice(NEWLINES))

    run(main())
    assert checked == 12 * 40


async def _or_error(aw):
    try:
        return await aw
    except UnicodeDecodeError as exc:
        return type(exc)


@pytest.mark.parametrize("seed", range(6))
def test_random_reads_and_writes_match_builtin(ringlet, run, tmp_path, seed):
    """Reads, writes, seeks and truncates in update modes; the reference seeks
    to tell() before each write (see test_write_after_read_goes_at_tell)."""
    rng = random.Random(seed)
    ours, ref_path = tmp_path / "ours.txt", tmp_path / "ref.txt"

    async def one(encoding, newline, mode):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 1500)))
        for p in (ours, ref_path):
            p.write_bytes(text.encode(encoding))
        with open(ref_path, mode, encoding=encoding, newline=newline) as ref:
            async with ringlet.open(ours, mode, encoding=encoding, newline=newline) as f:
                for _ in range(30):
                    op = rng.choice(["read", "readline", "readlines", "write", "write", "tell", "seekend", "seek0",
                                     "truncate"])
                    if op in ("write", "truncate") and ref.tell() >= 2**64:
                        continue  # CPython's cookie is no byte offset there: no reference
                    if op in ("read", "readline", "readlines"):
                        n = rng.choice([-1, 1, 7, 300])
                        got = await _or_error(f.read(n) if op == "read" else f.readline() if op == "readline"
                                              else f.readlines())
                        try:
                            want = ref.read(n) if op == "read" else ref.readline() if op == "readline" else (
                                _readlines_by_readline(ref, -1))
                        except UnicodeDecodeError as exc:
                            want = type(exc)
                        assert got == want
                        if want is UnicodeDecodeError:
                            break  # a write cut a character in two: both refuse to decode
                    elif op == "write":
                        piece = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 30)))
                        ref.seek(ref.tell())
                        assert await f.write(piece) == ref.write(piece)
                        ref.seek(ref.tell())
                    elif op == "tell":
                        cookie, ref_cookie = await f.tell(), ref.tell()
                        assert ref_cookie >= 2**64 or cookie == ref_cookie
                    elif op == "seekend":
                        assert await f.seek(0, os.SEEK_END) == ref.seek(0, os.SEEK_END)
                    elif op == "seek0":
                        assert await f.seek(0) == ref.seek(0)
                    else:
                        ref.seek(ref.tell())
                        assert await f.truncate() == ref.truncate()
        assert read_os(ours) == read_os(ref_path)

    async def main():
        for _ in range(10):
            await one(rng.choice(["utf-8", "utf-16", "utf-32"]), rng.choice(NEWLINES), rng.choice(["r+", "w+", "a+"]))

    run(main())
