"""The contract both backends keep (python/ringlet/_contract.py): the
methods of the Engine protocol, the keys of stats and trace records, and
the error messages, word for word.  Every check runs on the C engine and
on the thread engine directly, in every pass, so the strings in
csrc/py/*.c cannot drift from the contract's."""

import asyncio
import gc
import inspect
import os
import sys
import threading

import pytest

from ringlet import _contract as contract
from ringlet import _ringlet
from ringlet._threads import OPCODES, ThreadEngine

from conftest import watched


def _c_engine_or_skip(loop):
    try:
        return _ringlet.Engine(loop)
    except OSError as exc:  # e.g. the seccomp pass: io_uring_setup refused
        pytest.skip(f"the C engine cannot be made here: {exc}")


def make_engine(backend, loop):
    return ThreadEngine(loop) if backend == "threads" else _c_engine_or_skip(loop)


def engine_on_loop(backend):
    """An engine of the given backend on the running loop, watched."""
    return watched(make_engine(backend, asyncio.get_running_loop()))


# --------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------


def _protocol_members():
    """The names Engine declares (typing.get_protocol_members from Python 3.13)."""
    own = set(vars(contract.Engine)) | set(contract.Engine.__annotations__)
    return {name for name in own if not name.startswith("__") and not name.startswith(("_abc_", "_is_"))}


def test_protocol_lists_what_the_front_end_calls():
    members = _protocol_members()
    for name in ("read", "readinto", "write", "open", "close", "fsync", "statx", "rename", "unlink", "mkdir",
                 "symlink", "link", "ftruncate", "copy", "read_many", "_read", "_readinto", "_write", "_open",
                 "_close", "_adopt", "_read_many", "drain", "shutdown", "stats", "fileno", "supports", "tracer", "loop",
                 "setup_flags", "closed"):
        assert name in members, name


@pytest.mark.parametrize("engine_type", [_ringlet.Engine, ThreadEngine], ids=["C", "threads"])
def test_both_engine_types_have_every_member(engine_type):
    missing = [name for name in _protocol_members() if not hasattr(engine_type, name)]
    assert missing == []
    for name in _protocol_members():
        if name == "tracer":
            continue  # a data member
        member = inspect.getattr_static(engine_type, name)
        is_property = isinstance(member, property) or inspect.isgetsetdescriptor(member)
        assert is_property == (name in ("loop", "setup_flags", "closed")), name


def test_engines_are_instances_of_the_protocol(run, backend):
    async def main():
        async with engine_on_loop(backend) as engine:
            return isinstance(engine, contract.Engine)

    assert run(main()) is True


def test_thread_backend_does_the_work_of_every_opcode():
    assert OPCODES == frozenset(contract.Opcode)
    assert contract.NEEDED_OPCODES <= OPCODES


def test_opcode_names_agree_with_the_kernel_table():
    for op in contract.Opcode:
        assert contract.opcode_name(op) == op.name
    assert contract.opcode_name(10_000) == "op10000"


def test_limits_come_from_the_c_module():
    assert (contract.MAX_RW, contract.MAX_DIRECT, contract.COPY_MAX_SLOTS) == (
        _ringlet.MAX_RW, _ringlet.MAX_DIRECT, _ringlet.COPY_MAX_SLOTS)


# --------------------------------------------------------------------------
# stats and trace records
# --------------------------------------------------------------------------


def test_stats_and_trace_records_have_the_contract_keys(run, backend, make_file):
    path, data = make_file(5000)
    records = []

    async def main():
        async with engine_on_loop(backend) as engine:
            engine.tracer = records.append
            fd = await engine.open(os.fsencode(path), os.O_RDONLY)
            assert await engine.read(fd, 100, 0) == data[:100]
            await engine.close(fd)
            await asyncio.sleep(0)  # the last record is made once its task resumed
            engine.tracer = None
            return engine.stats()

    stats = run(main())
    assert sorted(stats) == sorted(contract.STATS_KEYS)
    assert [r["op"] for r in records] == ["open", "read", "close"]
    for record in records:
        assert sorted(record) == sorted(contract.TRACE_KEYS)


def test_what_the_tracer_raises_goes_to_the_loops_exception_handler(run, backend, make_file, monkeypatch):
    """As asyncio reports what a callback raises: once a record, on both
    engines, and nothing is left unraisable; the operations go on."""
    path, data = make_file(5000)
    reported, unraisable = [], []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def tracer(record):
        raise ValueError(record["op"])

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        async with engine_on_loop(backend) as engine:
            engine.tracer = tracer
            fd = await engine.open(os.fsencode(path), os.O_RDONLY)
            got = await engine.read(fd, 100, 0)
            await engine.close(fd)
            await asyncio.sleep(0)  # the last record is made once its task resumed
            engine.tracer = None
            return got

    assert run(main()) == data[:100]
    assert [str(c["exception"]) for c in reported] == ["open", "read", "close"]
    assert all(isinstance(c["exception"], ValueError) and "raised" in c["message"] for c in reported)
    assert unraisable == []


# --------------------------------------------------------------------------
# the error messages, word for word, on both engines
# --------------------------------------------------------------------------


def _cases(fd, pipe_r):
    """(name, call(engine), exception type, message) for the errors raised on
    the spot (the engine is open and used from its loop's thread)."""
    big = 2 ** 40
    return [
        ("fd out of range", lambda e: e.read(big, 1), OverflowError, contract.OUT_OF_RANGE.format(what="fd")),
        ("opcode out of range", lambda e: e.supports(big), OverflowError,
         contract.OUT_OF_RANGE.format(what="opcode")),
        ("chunk_size not an int", lambda e: e.copy(fd, fd, chunk_size="1"), TypeError,
         contract.NOT_AN_INT.format(what="chunk_size", type="str")),
        ("rename flags not an int", lambda e: e.rename(b"a", b"b", 1.5), TypeError,
         contract.NOT_AN_INT.format(what="flags", type="float")),
        ("depth too large", lambda e: e.copy(fd, fd, depth=2 ** 32), OverflowError,
         contract.TOO_LARGE.format(what="depth", max=2 ** 32 - 1)),
        ("negative offset", lambda e: e.read(fd, 1, -2), ValueError, contract.NEGATIVE_OFFSET),
        ("negative size", lambda e: e.read(fd, -1), ValueError, contract.NEGATIVE_SIZE),
        ("negative length", lambda e: e.ftruncate(fd, -1), ValueError, contract.NEGATIVE_LENGTH),
        ("bad align", lambda e: e.read(fd, 1, 0, 100), ValueError, contract.BAD_ALIGN),
        ("O_DIRECT on a pipe", lambda e: e.read(pipe_r, 1, -1, 512), ValueError, contract.DIRECT_NEEDS_OFFSET),
        ("unaligned O_DIRECT write", lambda e: e.write(fd, b"x" * 100, 0, 512), ValueError,
         contract.DIRECT_WRITE_UNALIGNED.format(align=512)),
        ("write of an int", lambda e: e.write(fd, 5), TypeError, contract.NOT_A_BUFFER.format(type="int")),
        ("write of a strided view", lambda e: e.write(fd, memoryview(b"abcd")[::2]), BufferError,
         contract.NOT_CONTIGUOUS),
        ("readinto bytes", lambda e: e.readinto(fd, b"abc"), TypeError,
         contract.NOT_WRITABLE_BUFFER.format(method="readinto", type="bytes")),
        ("path not bytes", lambda e: e.open("name", os.O_RDONLY), TypeError,
         contract.PATH_NOT_BYTES.format(type="str")),
        ("embedded null", lambda e: e.open(b"a\0b", os.O_RDONLY), ValueError, contract.EMBEDDED_NULL),
        ("copy chunk 0", lambda e: e.copy(fd, fd, chunk_size=0), ValueError,
         contract.COPY_LIMITS.format(max_rw=contract.MAX_RW, max_slots=contract.COPY_MAX_SLOTS)),
        ("requests not a sequence", lambda e: e.read_many(fd, 5), TypeError, contract.REQUESTS_NOT_SEQUENCE),
        ("request not a tuple", lambda e: e.read_many(fd, [(1, 0), [1, 0]]), TypeError,
         contract.REQUEST_NOT_TUPLE.format(index=1)),
        ("request negative", lambda e: e.read_many(fd, [(1, 0), (-1, 0)]), ValueError,
         contract.REQUEST_NEGATIVE.format(index=1)),
        ("tracer not callable", lambda e: setattr(e, "tracer", 5), TypeError, contract.TRACER_NOT_CALLABLE),
        ("shutdown timeout NaN", lambda e: e.shutdown(float("nan")), ValueError, contract.TIMEOUT_NAN),
        ("read usage", lambda e: e.read(fd), TypeError, contract.USAGE_READ),
        ("readinto usage", lambda e: e.readinto(fd), TypeError, contract.USAGE_READINTO),
        ("write usage", lambda e: e.write(fd), TypeError, contract.USAGE_WRITE),
        ("fsync usage", lambda e: e.fsync(), TypeError, contract.USAGE_FSYNC),
        ("ftruncate usage", lambda e: e.ftruncate(fd), TypeError, contract.USAGE_FTRUNCATE),
        ("read_many usage", lambda e: e.read_many(fd), TypeError, contract.USAGE_READ_MANY),
    ]


def test_argument_errors_say_the_contract_words(run, backend, make_file):
    path, _ = make_file(4096)

    async def main():
        fd = os.open(path, os.O_RDWR)
        pipe_r, pipe_w = os.pipe()
        said = {}
        try:
            async with engine_on_loop(backend) as engine:
                for name, call, kind, _ in _cases(fd, pipe_r):
                    with pytest.raises(kind) as info:
                        call(engine)
                    said[name] = str(info.value)
        finally:
            for n in (fd, pipe_r, pipe_w):
                os.close(n)
        return said

    said = run(main())
    want = {name: message for name, _, _, message in _cases(0, 0)}
    assert said == want


def test_closed_engine_says_so(run, backend):
    async def main():
        loop = asyncio.get_running_loop()
        engine = make_engine(backend, loop)
        engine.shutdown()
        with pytest.raises(RuntimeError) as used:
            engine.read(0, 1)
        with pytest.raises(ValueError) as fileno:
            engine.fileno()
        return str(used.value), str(fileno.value)

    assert run(main()) == (contract.ENGINE_CLOSED, contract.ENGINE_CLOSED)


def test_engine_from_another_thread_says_so(run, backend):
    async def main():
        async with engine_on_loop(backend) as engine:
            said = []

            def other():
                try:
                    engine.read(0, 1)
                except RuntimeError as exc:
                    said.append(str(exc))

            thread = threading.Thread(target=other)
            thread.start()
            thread.join(10)
            return said

    assert run(main()) == [contract.WRONG_THREAD]


def test_engine_without_its_loop_says_so(backend):
    loop = asyncio.new_event_loop()
    engine = make_engine(backend, loop)
    loop.close()
    del loop
    gc.collect()
    try:
        assert engine.loop is None
        with pytest.raises(RuntimeError) as info:
            engine.read(0, 0)  # answered without the kernel: only the future is missing
        assert str(info.value) == contract.LOOP_GONE
    finally:
        engine.shutdown()


def test_engine_in_a_forked_child_says_so(run, backend):
    async def main():
        async with engine_on_loop(backend) as engine:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: no loop, no pytest, just the message
                try:
                    os.close(r)
                    try:
                        engine.read(0, 1)
                        message = "no error"
                    except RuntimeError as exc:
                        message = str(exc)
                    os.write(w, message.encode())
                finally:
                    os._exit(0)
            os.close(w)
            chunks = []
            while chunk := os.read(r, 4096):
                chunks.append(chunk)
            os.close(r)
            os.waitpid(pid, 0)
            return b"".join(chunks).decode()

    assert run(main()) == contract.FORKED
