"""Lines and the rest of the file API on binary files: readline, readlines,
writelines, async iteration, truncate, flush, and how the read-ahead of
readline() stays invisible to tell/seek/read/write/pread/pwrite.  Built-in
open() in binary mode is the reference throughout."""

import asyncio
import io
import os
import pickle
import random
import sys
import threading
import warnings
import weakref

import pytest

from conftest import open_fifo_writer, read_os, write_os
from test_text import _builtin_readlines_and_tells, _readlines_and_tells

# Empty lines, CR and CRLF (bytes are not translated), no final newline,
# and a line longer than the 64 KiB read-ahead.
CONTENTS = {
    "empty": b"",
    "one-no-newline": b"abc",
    "only-newlines": b"\n\n\n",
    "mixed": b"first\r\nsecond\rthird\n\nfifth",
    "long-line": b"short\n" + b"L" * 200_000 + b"\nafter\n",
    "many": b"".join(b"line %d %s\n" % (i, b"x" * (i % 97)) for i in range(20_000)),
}


@pytest.fixture(params=sorted(CONTENTS))
def lines_file(request, make_file):
    return make_file(CONTENTS[request.param])


def builtin(path, fn, mode="rb"):
    with open(path, mode) as f:
        return fn(f)


def test_readline_and_tell_like_builtin(ringlet, run, lines_file):
    path, data = lines_file

    async def main():
        async with ringlet.open(path, "rb") as f:
            return await _readlines_and_tells(f)

    got = run(main())
    assert got == builtin(path, _builtin_readlines_and_tells)
    assert b"".join(line for _, line in got) == data


def test_async_for_like_builtin_iteration(ringlet, run, lines_file):
    path, data = lines_file

    async def main():
        async with ringlet.open(path, "rb") as f:
            return [line async for line in f]

    got = run(main())
    assert got == builtin(path, list)
    assert all(type(line) is bytes for line in got)


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_a_line_read_ahead_comes_from_a_coroutine_that_works_every_way(ringlet, run, make_file, mode):
    """A line already read ahead comes from readline() and __anext__ at
    once, without the call's turn; they are still coroutines everywhere:
    create_task, anext(), ensure_future, wait_for, iscoroutine(function),
    and StopAsyncIteration at the end."""
    path, data = make_file(b"".join(b"line %d\n" % i for i in range(9)))

    async def main():
        async with ringlet.open(path, mode) as f:
            assert asyncio.iscoroutinefunction(f.readline)
            got = [await f.readline()]
            ahead = f.readline()
            assert asyncio.iscoroutine(ahead)
            got += [await ahead, await asyncio.create_task(f.readline()), await f.readline(-1),
                    await f.__anext__(), await anext(f), await asyncio.create_task(anext(f)),
                    await asyncio.wait_for(f.__anext__(), 10)]
            got += [line async for line in f]
            with pytest.raises(StopAsyncIteration):
                await f.__anext__()
            return got

    got = run(main())
    assert got == builtin(path, list, mode)
    assert len(got) == 9


@pytest.mark.parametrize("mode", ["rb", "r"])
@pytest.mark.parametrize("how", ["readline", "anext", "read"])
def test_a_line_call_cancelled_before_it_ran_takes_no_line(ringlet, run, make_file, mode, how):
    """readline(), __anext__() or read(3) made but cancelled before its task
    ran (as wait_for with no time left, or gather when a sibling fails first,
    do): what is read ahead stays for the next call."""
    path, data = make_file(b"one\ntwo\nthree\n")

    async def main():
        async with ringlet.open(path, mode) as f:
            got = [await f.readline()]
            call = {"readline": f.readline, "anext": f.__anext__, "read": lambda: f.read(3)}[how]
            task = asyncio.ensure_future(call())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            unawaited = call()
            unawaited.close()  # made, never awaited
            got += [line async for line in f]
            return got

    assert run(main()) == builtin(path, list, mode)


def _step(call, value=None):
    """One send(value) into a readline() or __anext__() call: its line, or its error."""
    try:
        call.send(value)
    except StopIteration as done:
        return done.value
    except Exception as exc:  # noqa: BLE001 - the error is the outcome compared
        return type(exc).__name__, str(exc)
    raise AssertionError("a line read ahead made the call wait")


def _thrown(call, *args):
    try:
        call.throw(*args)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__, str(exc)
    raise AssertionError("throw() returned")


@pytest.mark.parametrize("mode", ["rb", "r"])
@pytest.mark.parametrize("made_in", ["C", "Python"])
def test_a_line_call_driven_by_hand_is_a_coroutine(ringlet, run, make_file, mode, made_in):
    """readline() and __anext__() are made in C; driven by hand (send,
    throw, close) they behave as the Python methods they wrap (__wrapped__),
    which are plain coroutines: a throw or close before the first send takes
    no line, nor does a first send of a value, and a call cannot run twice."""
    path, data = make_file(b"".join(b"line %d\n" % i for i in range(8)))

    async def main():
        async with ringlet.open(path, mode) as f:
            first = await f.readline()  # the rest is read ahead
            if made_in == "C":
                readline, anext_ = f.readline, f.__anext__
            else:
                readline = lambda: type(f).readline.__wrapped__(f)  # noqa: E731
                anext_ = lambda: type(f).__anext__.__wrapped__(f)  # noqa: E731
            got = [first]
            thrown = readline()
            outcomes = [_thrown(thrown, ValueError("into a call that never ran")), _step(thrown)]
            closed = anext_()
            outcomes += [closed.close(), _step(closed)]
            sent = readline()
            outcomes += [_thrown(sent)[0], _step(sent, 1)]  # the TypeError's wording is CPython's
            got.append(_step(sent))  # refused a value, it still gives its line
            outcomes.append(_step(sent))
            ran = anext_()
            got.append(_step(ran))
            outcomes.append(_thrown(ran, KeyError("into a call that ran")))
            got += await f.readlines()
            return got, outcomes

    got, outcomes = run(main())
    assert got == builtin(path, list, mode)
    reuse = ("RuntimeError", "cannot reuse already awaited coroutine")
    assert outcomes == [("ValueError", "into a call that never ran"), reuse, None, reuse,
                        "TypeError", ("TypeError", "can't send non-None value to a just-started coroutine"), reuse,
                        reuse]


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_a_line_call_is_made_anew_while_the_last_one_is_held(ringlet, run, make_file, mode):
    """A line call that gave its line is handed out again by the next call
    (no allocation a line) only once nobody holds it: one still held is not
    the next call, and still refuses to run twice."""
    path, data = make_file(b"".join(b"line %d\n" % i for i in range(6)))

    async def main():
        async with ringlet.open(path, mode) as f:
            got = [await f.readline()]  # the rest is read ahead
            first = f.readline()
            got.append(await first)
            second = f.__anext__()
            assert second is not first
            got.append(await second)
            outcomes = [_step(first), _step(second)]
            del first, second
            got += [await f.readline(), await f.readline(), await f.__anext__()]
            return got, outcomes

    got, outcomes = run(main())
    assert got == builtin(path, list, mode)
    assert outcomes == [("RuntimeError", "cannot reuse already awaited coroutine")] * 2


@pytest.mark.parametrize("mode", ["rb", "r"])
@pytest.mark.parametrize("calls", ["awaited", "dropped"])
def test_line_calls_do_not_keep_their_file_alive(ringlet, run, make_file, mode, calls):
    """Neither line calls that gave their lines nor ones dropped before they
    ran keep their file: once the program lets go of the file, it is freed."""
    path, data = make_file(b"".join(b"line %d\n" % i for i in range(6)))

    async def main():
        f = await ringlet.open(path, mode)
        lines = [await f.readline(), await f.__anext__()]
        if calls == "dropped":
            for call in (f.readline(), f.__anext__(), f.read(2)):  # made, never awaited
                del call
        await f.close()
        ref = weakref.ref(f)
        del f
        return lines, ref

    lines, ref = run(main())
    assert lines == builtin(path, list, mode)[:2]
    assert ref() is None


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_lines_read_ahead_run_no_python_frame(ringlet, run, make_file, mode):
    """A line read ahead is given by C: async for and readline() over 2000
    short lines run a Python frame of FileBase's line methods only when they
    read more (about every 64 KiB), not once a line.
    Counted with sys.setprofile."""
    path, data = make_file(b"".join(b"line %04d\n" % i for i in range(2000)))
    names = {"readline", "__anext__", "_buffered_line"}

    async def main():
        calls = []

        def profile(frame, event, arg):
            if event == "call" and frame.f_code.co_name in names:
                calls.append(frame.f_code.co_name)

        async with ringlet.open(path, mode) as f:
            sys.setprofile(profile)
            try:
                got = [line async for line in f]
                await f.seek(0)
                while line := await f.readline():
                    got.append(line)
            finally:
                sys.setprofile(None)
        return got, calls

    got, calls = run(main())
    assert got == builtin(path, list, mode) * 2
    assert len(calls) < 60, calls


def test_text_lines_read_ahead_as_much_as_binary_ones(ringlet, run, make_file):
    """A text file's line calls refill what is decoded with the binary
    file's read-ahead (64 KiB), decoded in 8 KiB pieces (tell() decodes one
    again): `async for` over 768 KiB of short lines refills ~12 times, not
    ~100 (at 8 KiB a refill).  Counted with sys.setprofile."""
    from ringlet._fdio import READ_CHUNK

    path, data = make_file(b"".join(b"line %06d\n" % i for i in range(64 * 1024)))

    async def main():
        refills = []

        def profile(frame, event, arg):
            if event == "call" and frame.f_code.co_name == "_read_chunk":
                refills.append(frame.f_code.co_name)

        async with ringlet.open(path, "r") as f:
            sys.setprofile(profile)
            try:
                got = [line async for line in f]
            finally:
                sys.setprofile(None)
        return got, len(refills)

    got, refills = run(main())
    assert got == builtin(path, list, "r")
    # A coroutine's frame is "called" again at each resume: a refill that waited counts twice.
    assert len(data) // READ_CHUNK <= refills <= 2 * (len(data) // READ_CHUNK + 2), refills


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_a_bad_size_with_a_line_read_ahead_takes_no_line(ringlet, run, make_file, mode):
    """A size io refuses (past a C ssize_t, not an integer) is refused with
    a line read ahead too, and takes nothing (the fast path is for -1, and
    None in binary: io.TextIOWrapper.readline refuses None)."""
    path, data = make_file(b"one\ntwo\nthree\n")
    bad_sizes = [(-(2**63) - 1, OverflowError), (2**64, OverflowError), (-1.0, TypeError)]
    with open(path, mode) as f:
        for bad, error in bad_sizes + [(None, TypeError)] * (mode == "r"):
            with pytest.raises(error):
                f.readline(bad)

    async def main():
        async with ringlet.open(path, mode) as f:
            got = [await f.readline()]
            for bad, error in bad_sizes + [(None, TypeError)] * (mode == "r"):
                with pytest.raises(error):
                    await f.readline(bad)
            got += [await f.readline(None if mode == "rb" else -1), await f.readline(-5)]
            return got

    assert run(main()) == builtin(path, list, mode)


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_a_line_read_ahead_is_refused_to_another_thread(ringlet, make_file, mode):
    """readline() and async for give a line read ahead without asking the
    engine, but only on the file's thread: from another one they raise as
    any call does, and take nothing."""
    path, data = make_file(b"one\ntwo\nthree\n")
    home = asyncio.new_event_loop()
    try:
        f = home.run_until_complete(ringlet.open(path, mode))
        first = home.run_until_complete(f.readline())
        errors = []

        def elsewhere():
            async def calls():
                for call in (f.readline, f.__anext__):
                    try:
                        await call()
                    except RuntimeError as exc:
                        errors.append(str(exc))

            asyncio.run(calls())

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        rest = home.run_until_complete(f.readlines())
        home.run_until_complete(f.close())
    finally:
        home.close()
    assert len(errors) == 2 and all("thread" in e for e in errors), errors
    assert [first] + rest == builtin(path, list, mode)


@pytest.mark.parametrize("hint", [-1, 0, 1, 10, 5000, 10**9])
def test_readlines_hint_like_builtin(ringlet, run, lines_file, hint):
    path, _ = lines_file

    async def main():
        async with ringlet.open(path, "rb") as f:
            return await f.readlines(hint), await f.read()

    assert run(main()) == builtin(path, lambda f: (f.readlines(hint), f.read()))


@pytest.mark.parametrize("mode,newline", [("rb", None), ("r", None), ("r", "\n"), ("r", ""), ("r", "\r\n")])
def test_readlines_hint_in_a_loop_like_builtin(ringlet, run, make_file, mode, newline):
    """readlines(hint) called until the file ends, with hints that fall on
    line ends, just before and after them, and past the read-ahead: the same
    lists as the built-in file's.  The lines read ahead are cut in bulk (up to
    the line that holds the byte or character past hint), the rest one by one."""
    rng = random.Random(5)
    pieces = []
    for _ in range(3000):
        pieces.append(b"x" * rng.choice([0, 1, 5, 79, 80, 81, 300, 70_000 if rng.random() < 0.01 else 3]))
        pieces.append(rng.choice([b"\n", b"\n", b"\r\n", b"\r"]))
    path, data = make_file(b"".join(pieces) + b"tail")
    hints = [rng.choice([1, 2, 80, 81, 82, 4096, 65_535, 65_536, 65_537, 200_000]) for _ in range(400)]
    kw = {} if mode == "rb" else {"newline": newline, "encoding": "ascii"}

    async def main():
        got = []
        async with ringlet.open(path, mode, **kw) as f:
            for hint in hints:
                got.append(await f.readlines(hint))
                if not got[-1]:
                    break
        return got

    def reference(f):
        got = []
        for hint in hints:
            got.append(f.readlines(hint))
            if not got[-1]:
                break
        return got

    with open(path, mode, **kw) as f:
        expected = reference(f)
    assert run(main()) == expected
    assert not expected[-1]  # the hints reached the end of the file


@pytest.mark.parametrize("sizes", [[0, 1, 2, 3, 100], [5, -1, None, 70_000, 7]])
def test_readline_size_like_builtin(ringlet, run, lines_file, sizes):
    path, _ = lines_file

    async def main():
        async with ringlet.open(path, "rb") as f:
            return [await f.readline(n) for n in sizes] + [await f.read()]

    assert run(main()) == builtin(path, lambda f: [f.readline(n) for n in sizes] + [f.read()])


@pytest.mark.parametrize("buffering, reads", [(-1, 1 + 8), (16384, 1 + 4), (0, 4096)])
def test_small_reads_read_ahead_as_io_buffers(ringlet, run, make_file, buffering, reads):
    """A read() of fewer bytes than io.BufferedReader's buffer (8 KiB, or
    buffering=) reads the buffer's size and keeps the rest for the next reads,
    given by C without a Python frame, except the first after the open (or a
    seek), which reads what it asks; unbuffered (buffering=0), each goes to
    the kernel.  Counted: the engine's reads, and Python frames of read."""
    path, data = make_file(os.urandom(64 * 1024))

    async def main():
        engine = ringlet.get_engine()
        frames = []

        def profile(frame, event, arg):
            if event == "call" and frame.f_code.co_name == "read":
                frames.append(frame)

        async with ringlet.open(path, "rb", buffering=buffering) as f:
            before = engine.stats()["submitted"]
            sys.setprofile(profile)
            try:
                got = [await f.read(16) for _ in range(4096)]
            finally:
                sys.setprofile(None)
            return got, engine.stats()["submitted"] - before, len(frames), await f.tell(), await f.read()

    got, submitted, frames, position, rest = run(main())
    assert b"".join(got) == data and position == len(data) and rest == b""
    assert submitted == reads
    # A coroutine's frame is "called" again at each resume: a few a kernel read, never one a call.
    assert frames >= 4096 if buffering == 0 else frames <= 4 * reads, frames


def test_seeks_and_small_reads_in_turn_read_what_they_ask(ringlet, run, make_file):
    """Random access (a seek, then a small read) reads the bytes asked for,
    not a buffer's worth: bytes written after them behind the file's back
    are what the next read gives (io.BufferedReader would give its buffer's
    older copy).  The reads that go on from there read ahead."""
    path, data = make_file(os.urandom(64 * 1024))
    offsets = [random.Random(7).randrange(len(data) - 64) for _ in range(50)]

    async def main():
        got, expected = [], []
        fd = os.open(path, os.O_WRONLY)
        try:
            async with ringlet.open(path, "rb") as f:
                for n, where in enumerate(offsets):
                    await f.seek(where)
                    got.append(await f.read(16))
                    fresh = n.to_bytes(16, "little")
                    os.pwrite(fd, fresh, where + 16)
                    got += [await f.read(16), await f.read(16)]
                    expected += [read_os(path)[where:where + 16], fresh, read_os(path)[where + 32:where + 48]]
        finally:
            os.close(fd)
        return got, expected

    got, expected = run(main())
    assert got == expected


def test_text_seeks_and_small_reads_read_one_text_chunk(ringlet, run, make_file):
    """Random access in a text file (a seek, then a small read) reads and
    decodes one 8 KiB chunk, as io.TextIOWrapper does, not the 64 KiB that
    refills line iteration: what is written past that chunk behind the
    file's back is what the reads that go on past it give."""
    from ringlet._cookie import TEXT_CHUNK

    rng = random.Random(11)
    path, data = make_file(bytes(rng.choice(b"abcdefgh \n") for _ in range(256 * 1024)))
    offsets = [rng.randrange(len(data) - 4 * TEXT_CHUNK) for _ in range(20)]

    async def main():
        got, expected = [], []
        fd = os.open(path, os.O_WRONLY)
        try:
            async with ringlet.open(path, "r", newline="") as f:
                for n, where in enumerate(offsets):
                    await f.seek(where)
                    got.append(await f.read(16))
                    os.pwrite(fd, b"%016d" % n, where + TEXT_CHUNK + 16)
                    got.append(await f.read(TEXT_CHUNK + 32))
                    now = read_os(path)
                    expected += [now[where:where + 16].decode(), now[where + 16:where + TEXT_CHUNK + 48].decode()]
        finally:
            os.close(fd)
        return got, expected

    got, expected = run(main())
    assert got == expected


def test_a_small_read_after_other_calls_like_builtin(ringlet, run, make_file):
    """Small reads between readline, seek and write read and write where the
    built-in buffered file does (which is told to write at tell(): it
    would write after its read-ahead)."""
    path, data = make_file(b"".join(b"line %d\n" % i for i in range(3000)))
    calls = [("read", 5), ("readline",), ("read", 7), ("tell",), ("seek", 100), ("read", 3), ("tell",),
             ("write", b"XY"), ("read", 4), ("tell",), ("seek", -10, 2), ("read", 20), ("read", 1), ("tell",)]

    async def ours():
        async with ringlet.open(path, "r+b") as f:
            return [await getattr(f, name)(*args) for name, *args in calls]

    got = run(ours())
    ref_path = path + ".ref"
    write_os(ref_path, data)
    with open(ref_path, "r+b") as g:
        expected = []
        for name, *args in calls:
            if name == "write":
                g.seek(g.tell())
            expected.append(getattr(g, name)(*args))
    assert got == expected
    assert read_os(path) == read_os(ref_path)


def test_reads_after_readline_continue_where_lines_stopped(ringlet, run, make_file):
    path, data = make_file(CONTENTS["many"])

    async def main():
        async with ringlet.open(path, "rb") as f:
            first = await f.readline()
            chunk = await f.read(10)  # partly from the read-ahead
            line = await f.readline()
            buf = bytearray(20)
            n = await f.readinto(buf)
            one = await f.read1(5)
            again = await f.readline()
            big = await f.read(100_000)  # more than the read-ahead holds
            await f.readline()
            rest = await f.readall()
            return [first, chunk, line, bytes(buf[:n]), one, again, big], rest

    def ref(f):
        first, chunk, line = f.readline(), f.read(10), f.readline()
        buf = bytearray(20)
        n = f.readinto(buf)
        one, again, big = f.read(5), f.readline(), f.read(100_000)
        f.readline()
        return [first, chunk, line, bytes(buf[:n]), one, again, big], f.read()

    got = run(main())
    assert got == builtin(path, ref)
    assert got[1]


def test_seek_after_readline_like_builtin(ringlet, run, make_file):
    path, _ = make_file(CONTENTS["mixed"] * 100)

    async def main():
        async with ringlet.open(path, "rb") as f:
            out = [await f.readline(), await f.seek(0, os.SEEK_CUR), await f.readline()]
            out += [await f.seek(-3, os.SEEK_CUR), await f.readline(), await f.seek(2), await f.readline()]
            out += [await f.seek(-4, os.SEEK_END), await f.readline(), await f.tell()]
            return out

    def ref(f):
        out = [f.readline(), f.seek(0, 1), f.readline(), f.seek(-3, 1), f.readline(), f.seek(2), f.readline()]
        return out + [f.seek(-4, 2), f.readline(), f.tell()]

    assert run(main()) == builtin(path, ref)


def test_write_after_readline_goes_at_tell_like_builtin(ringlet, run, make_file, tmp_path):
    """Built-in BufferedRandom also writes where the reads reached."""
    content = CONTENTS["many"][:5000]
    path, _ = make_file(content)
    ref = str(tmp_path / "ref.bin")
    write_os(ref, content)

    async def main():
        async with ringlet.open(path, "r+b") as f:
            line = await f.readline()
            written = await f.write(b"OVERWRITTEN")
            after = await f.readline()
            await f.writelines([b"<", bytearray(b"mid"), memoryview(b">")])
            return line, written, after, await f.tell()

    def reference(f):
        line = f.readline()
        written = f.write(b"OVERWRITTEN")
        after = f.readline()
        f.writelines([b"<", bytearray(b"mid"), memoryview(b">")])
        return line, written, after, f.tell()

    assert run(main()) == builtin(ref, reference, "r+b")
    assert read_os(path) == read_os(ref)


def test_pwrite_drops_a_stale_read_ahead(ringlet, run, make_file):
    path, _ = make_file(b"aaaa\nbbbb\ncccc\n")

    async def main():
        async with ringlet.open(path, "r+b") as f:
            first = await f.readline()  # the read-ahead now holds "bbbb\ncccc\n"
            await f.pwrite(b"BBBB", 5)
            return first, await f.readline(), await f.pread(4, 10), await f.tell()

    assert run(main()) == (b"aaaa\n", b"BBBB\n", b"cccc", 10)


def test_pread_does_not_disturb_lines(ringlet, run, make_file):
    path, data = make_file(CONTENTS["mixed"])

    async def main():
        async with ringlet.open(path, "rb") as f:
            first = await f.readline()
            peek = await f.pread(6, 0)
            return first, peek, await f.readline(), await f.tell()

    assert run(main()) == builtin(path, lambda f: (f.readline(), data[:6], f.readline(), f.tell()))


def test_writelines_like_builtin(ringlet, run, tmp_path):
    ours, ref = tmp_path / "ours.bin", tmp_path / "ref.bin"
    lines = [b"%d\n" % i * (i % 50) for i in range(5000)]  # more than one batch

    async def main():
        async with ringlet.open(ours, "wb") as f:
            result = await f.writelines(iter(lines))
            await f.writelines([])
            return result, await f.tell()

    with open(ref, "wb") as g:
        expected = (g.writelines(iter(lines)), g.tell())
    assert run(main()) == expected
    assert read_os(ours) == read_os(ref) == b"".join(lines)


def test_writelines_wrong_type_like_builtin(ringlet, run, tmp_path):
    path = tmp_path / "w.bin"

    async def main():
        async with ringlet.open(path, "wb") as f:
            await f.writelines(["text"])

    with pytest.raises(TypeError):
        with open(tmp_path / "ref.bin", "wb") as g:
            g.writelines(["text"])
    with pytest.raises(TypeError):
        run(main())


def test_writelines_takes_a_buffer_without_len(ringlet, run, tmp_path):
    """pickle.PickleBuffer has the buffer protocol but no len(): written as
    built-in writelines writes it, and the lines after it too."""
    path = tmp_path / "ours"
    lines = [b"one\n", pickle.PickleBuffer(b"two\n"), b"three\n"]

    async def main():
        async with ringlet.open(path, "wb") as f:
            await f.writelines(lines)

    run(main())
    with open(tmp_path / "ref", "wb") as g:
        g.writelines(lines)
    assert read_os(path) == read_os(tmp_path / "ref") == b"one\ntwo\nthree\n"


def _lines_then_failure(bad):
    """Two lines, then bad: a line that cannot be written, or an exception
    the iterable raises."""
    yield from bad[:2]
    if isinstance(bad[2], Exception):
        raise bad[2]
    yield bad[2]


@pytest.mark.parametrize("mode, encoding, lines, error", [
    ("wb", None, [b"one\n", b"two\n", "three\n"], TypeError),  # str in a binary file
    ("wb", None, [b"one\n", b"two\n", 3], TypeError),
    ("wb", None, [b"one\n", b"two\n", ZeroDivisionError()], ZeroDivisionError),
    ("w", "latin-1", ["one\n", "two\n", "\N{EURO SIGN}\n"], UnicodeEncodeError),
    ("w", "utf-8", ["one\n", "two\n", b"three\n"], TypeError),
    ("w", "utf-8", ["one\n", "two\n", ZeroDivisionError()], ZeroDivisionError),
])
def test_writelines_writes_the_lines_before_a_failure(ringlet, run, tmp_path, mode, encoding, lines, error):
    """io's writelines writes line by line: the lines before one that cannot
    be written, or before an error of the iterable, are in the file, and the
    error is write()'s.  ringlet joins lines into batches and must not drop
    the batch that holds the failure."""
    ours, ref = tmp_path / "ours", tmp_path / "ref"

    async def main():
        async with ringlet.open(ours, mode, encoding=encoding) as f:
            with pytest.raises(error) as raised:
                await f.writelines(_lines_then_failure(lines))
            return raised.value, await f.tell()

    with open(ref, mode, encoding=encoding) as g:
        with pytest.raises(error) as expected:
            g.writelines(_lines_then_failure(lines))
        where = g.tell()
    got, got_where = run(main())
    assert read_os(ours) == read_os(ref) == b"one\ntwo\n"
    assert (type(got), got_where) == (type(expected.value), where)


# --------------------------------------------------------------------------
# truncate, flush, and the small methods
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [None, 0, 3, 10, 100_000])
def test_truncate_like_builtin(ringlet, run, make_file, tmp_path, size):
    content = b"0123456789\nabcdef\n"
    path, _ = make_file(content)
    ref = str(tmp_path / "ref.bin")
    write_os(ref, content)

    async def main():
        async with ringlet.open(path, "r+b") as f:
            await f.readline()
            result = await f.truncate(size)
            return result, await f.tell(), await f.read()

    assert run(main()) == builtin(ref, lambda f: (f.readline(), f.truncate(size), f.tell(), f.read())[1:], "r+b")
    assert read_os(path) == read_os(ref)


def test_truncate_errors_like_builtin(ringlet, run, make_file):
    path, data = make_file(b"abc")

    async def on(mode, *args):
        async with ringlet.open(path, mode) as f:
            await f.truncate(*args)

    with pytest.raises(io.UnsupportedOperation):
        with open(path, "rb") as g:
            g.truncate()
    with pytest.raises(io.UnsupportedOperation):
        run(on("rb"))
    with pytest.raises(OSError) as ref_info:
        with open(path, "r+b") as g:
            g.truncate(-1)
    with pytest.raises(OSError) as info:
        run(on("r+b", -1))
    assert info.value.errno == ref_info.value.errno
    assert read_os(path) == data


def test_flush_is_a_no_op_that_checks_closed(ringlet, run, make_file):
    path, _ = make_file(b"abc")

    async def main():
        f = await ringlet.open(path, "r+b")
        result = await f.flush()
        await f.close()
        with pytest.raises(ValueError):
            await f.flush()
        return result

    assert run(main()) is None


def test_readable_writable_seekable_isatty_like_builtin(ringlet, run, make_file):
    path, _ = make_file(b"abc")
    for mode in ("rb", "wb", "ab", "r+b"):

        async def main():
            async with ringlet.open(path, mode) as f:
                return await f.readable(), await f.writable(), await f.seekable(), await f.isatty()

        assert run(main()) == builtin(path, lambda f: (f.readable(), f.writable(), f.seekable(), f.isatty()), mode)


def test_append_mode_starts_at_the_end_like_builtin(ringlet, run, make_file):
    path, data = make_file(b"12345")

    async def main():
        async with ringlet.open(path, "a+b") as f:
            return await f.tell(), await f.read()

    assert run(main()) == builtin(path, lambda f: (f.tell(), f.read()), "a+b") == (5, b"")


def test_lines_of_a_closed_file_raise_value_error(ringlet, run, make_file):
    path, _ = make_file(b"a\nb\n")

    async def main():
        f = await ringlet.open(path, "rb")
        await f.readline()
        await f.close()
        errors = []
        for call in (f.readline, f.readlines, lambda: f.writelines([b"x"]), f.truncate, f.__anext__):
            with pytest.raises(ValueError):
                await call()
            errors.append(True)
        with pytest.raises(ValueError):
            f.__aiter__()
        return errors

    assert run(main()) == [True] * 5


def test_lines_from_a_fifo(ringlet, run, fifo):
    """Lines arrive as the writer writes them: readline does not wait for more
    than one line, and ends at the writer's close."""

    async def main():
        opening = ringlet.open(fifo, "rb")
        import asyncio

        reader = asyncio.ensure_future(opening)
        writer = await open_fifo_writer(fifo)
        f = await reader
        try:
            os.write(writer, b"one\ntw")
            first = await f.readline()
            os.write(writer, b"o\nthree")
            second = await f.readline()
            os.close(writer)
            return first, second, await f.readline(), await f.readline()
        finally:
            await f.close()

    assert run(main()) == (b"one\n", b"two\n", b"three", b"")


def test_binary_open_arguments_like_builtin(ringlet, run, make_file):
    path, _ = make_file(b"abc\n")
    opened = []

    def opener(name, flags):
        opened.append(name)
        return os.open(name, flags)

    async def main():
        async with ringlet.open(path, "rb", 0, None, None, None, True, opener) as f:
            return await f.read()

    assert run(main()) == builtin(path, lambda f: f.read()) == b"abc\n"
    assert opened == [path]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(ringlet.open(path, "rb", buffering=1)).__del__()
    assert [w.category for w in caught if w.category is RuntimeWarning] == [RuntimeWarning]


def test_loop_and_executor_arguments_accepted_for_aiofiles(ringlet, run, make_file):
    import asyncio

    path, _ = make_file(b"abc")

    async def main():
        loop = asyncio.get_running_loop()
        async with ringlet.open(path, "rb", loop=loop, executor=None) as f:
            data = await f.read()
        with pytest.raises(ValueError):
            await ringlet.open(path, "rb", loop=asyncio.new_event_loop())
        return data

    assert run(main()) == b"abc"


def test_line_reading_uses_no_thread(ringlet, run, require_io_uring, make_file):
    path, data = make_file(CONTENTS["many"])
    before = set(threading.enumerate())  # an earlier test's thread may end meanwhile: none may start

    async def main():
        async with ringlet.open(path, "rb") as f:
            binary = [line async for line in f]
        async with ringlet.open(path, "r", encoding="ascii") as f:
            text = [line async for line in f]
        return binary, text, set(threading.enumerate())

    binary, text, during = run(main())
    assert b"".join(binary) == data and "".join(text) == data.decode()
    assert during <= before, during - before


@pytest.mark.parametrize("seed", range(4))
def test_random_mixed_binary_operations_match_builtin(ringlet, run, make_file, tmp_path, seed):
    rng = random.Random(seed)
    content = b"".join(rng.choice([b"a", b"bb\n", b"\n", b"\r\n", b"x" * 300, b"\r"]) for _ in range(3000))
    path, _ = make_file(content)
    ref_path = str(tmp_path / "ref.bin")
    write_os(ref_path, content)

    async def main():
        with open(ref_path, "r+b") as ref:
            async with ringlet.open(path, "r+b") as f:
                for _ in range(300):
                    op = rng.choice(["readline", "read", "tell", "seek", "write", "truncate", "readlines"])
                    n = rng.choice([-1, 0, 1, 10, 1000, 100_000])
                    if op == "readline":
                        assert await f.readline(n) == ref.readline(n)
                    elif op == "read":
                        assert await f.read(n if n < 100_000 else 7) == ref.read(n if n < 100_000 else 7)
                    elif op == "tell":
                        assert await f.tell() == ref.tell()
                    elif op == "seek":
                        target = rng.randint(0, len(content))
                        assert await f.seek(target) == ref.seek(target)
                    elif op == "write":
                        piece = rng.choice([b"W", b"WW\n", b"\n" * 3])
                        assert await f.write(piece) == ref.write(piece)
                    elif op == "truncate":
                        size = rng.choice([None, rng.randint(0, len(content))])
                        assert await f.truncate(size) == ref.truncate(size)
                    else:
                        assert await f.readlines(50) == ref.readlines(50)

    run(main())
    assert read_os(path) == read_os(ref_path)


def test_readinto_a_read_only_buffer_after_readline_loses_nothing(ringlet, run, make_file):
    """The buffer's TypeError comes before the read-ahead is taken from (the
    same as with no read-ahead), and the next read starts where it did."""
    path, _ = make_file(b"12345678\nABCDEFGH\n")

    async def main():
        async with ringlet.open(path, "rb") as f:
            with pytest.raises(TypeError) as no_read_ahead:
                await f.readinto(b"x" * 8)
            first = await f.readline()
            with pytest.raises(TypeError) as after_readline:
                await f.readinto(b"x" * 8)
            return str(no_read_ahead.value), str(after_readline.value), first, await f.tell(), await f.read()

    no_read_ahead, after_readline, *rest = run(main())
    assert after_readline == no_read_ahead
    assert rest == [b"12345678\n", 9, b"ABCDEFGH\n"]


@pytest.mark.parametrize("mode", ["rb", "r"])
@pytest.mark.parametrize("hint", [-1, 10**9])
def test_a_cancelled_readlines_consumes_nothing(ringlet, run, make_file, mode, hint):
    """readlines cancelled after a few turns of the loop (its lines partly
    read): the position stays where it was, and the next readlines gives
    every line, as for any cancelled read of a regular file.  With a hint,
    lines are cut from each read-ahead chunk as it comes."""
    data = b"".join(b"%099d\n" % i for i in range(20_000))  # 2 MB: many read-ahead chunks
    path, _ = make_file(data)
    expected = builtin(path, lambda f: f.readlines(), mode)

    async def main():
        cancelled = 0
        for turns in range(1, 30):
            async with ringlet.open(path, mode) as f:
                task = asyncio.ensure_future(f.readlines(hint))
                for _ in range(turns):
                    await asyncio.sleep(0)
                if task.done():
                    assert task.result() == expected
                    continue
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                cancelled += 1
                assert await f.tell() == 0, turns
                assert await f.readlines() == expected, turns
        return cancelled

    assert run(main()) > 0, "readlines always finished before its cancel: the case is not exercised"


def test_readlines_takes_one_turn_for_all_its_lines(ringlet, run, make_file):
    """A read made while readlines runs comes after all of its lines (call
    order, as one locked call of a built-in file), not between two of them."""
    data = b"".join(b"%099d\n" % i for i in range(20_000))
    path, _ = make_file(data)

    async def main():
        async with ringlet.open(path, "rb") as f:
            lines = asyncio.ensure_future(f.readlines())
            await asyncio.sleep(0)
            return await asyncio.gather(lines, f.read(100))

    lines, after = run(main())
    assert b"".join(lines) == data
    assert after == b""
