"""The conversions of size, offset and whence arguments, against the built-in
file of the same layer: io's methods use several C converters, each with
its own errors (a buffered read's size takes None, its read1's does not; a
buffered seek's offset past off_t is a ValueError, FileIO's an
OverflowError; whence is a C int...).  The same value gives the same
outcome: the result, or the error's type and message.

Left out: a text file's seek cookie (CPython compares it with 0 before any
conversion: a float is taken, a str gives "'<' not supported"); ringlet's
is an __index__ or a TypeError."""

import os

import pytest

VALUES = ["x", 1.5, b"1", None, True, 3, 5, -1, -2, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64]

CALLS = {
    # name: (the modes it is called in, the call)
    "read": (["rb", "r+b", "r"], lambda f, v: f.read(v)),
    "read1": (["rb", "r+b"], lambda f, v: f.read1(v)),
    "peek": (["rb", "r+b"], lambda f, v: f.peek(v)),
    "readline": (["rb", "r+b", "r"], lambda f, v: f.readline(v)),
    "readlines": (["rb", "r+b", "r"], lambda f, v: f.readlines(v)),
    "truncate": (["r+b", "wb", "r+"], lambda f, v: f.truncate(v)),
    "seek": (["rb", "r+b", "wb"], lambda f, v: f.seek(v)),
    "seek-whence": (["rb", "r+b", "wb", "r"], lambda f, v: f.seek(0, v)),
}
CONTENT = b"abc\ndef\n"


def _outcome(call):
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - compared with the built-in file's
        return type(exc), str(exc)


def _state(path):
    """The file's size and head (truncate(2**31) makes a sparse 2 GiB file)."""
    with open(path, "rb") as f:
        return os.fstat(f.fileno()).st_size, f.read(64)


async def _async_outcome(call):
    try:
        return "ok", await call()
    except Exception as exc:  # noqa: BLE001
        return type(exc), str(exc)


@pytest.mark.parametrize("name,mode,buffering", [
    (name, mode, buffering) for name, (modes, _) in CALLS.items() for mode in modes
    for buffering in ((-1, 0) if "b" in mode else (-1,))
    if not (buffering == 0 and name in ("read1", "peek"))  # FileIO has neither
])
def test_same_conversion_as_the_builtin_file(ringlet, run, tmp_path, name, mode, buffering):
    path = tmp_path / "f"
    call = CALLS[name][1]
    builtin = []
    for value in VALUES:
        path.write_bytes(CONTENT)
        with open(path, mode, buffering=buffering) as f:
            outcome = _outcome(lambda: call(f, value))
        builtin.append((value, outcome, _state(path)))

    async def ours():
        results = []
        for value in VALUES:
            path.write_bytes(CONTENT)
            async with ringlet.open(path, mode, buffering=buffering) as f:
                outcome = await _async_outcome(lambda: call(f, value))
            results.append((value, outcome, _state(path)))
        return results

    differences = [(want, got) for want, got in zip(builtin, run(ours())) if want != got]
    assert not differences
