"""Descriptor limits: with RLIMIT_NOFILE at 64, ringlet.open past the limit
raises OSError(EMFILE) as built-in open() does, nothing leaks, and the engine
works again once descriptors are freed.  In a subprocess (the limit is per
process), on the test's backend (its RINGLET_BACKEND is inherited)."""

from typing import Any, Callable

import pytest

LIMIT = 64

SCRIPT = f"""
import asyncio, errno, os, resource
import ringlet

resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
data = os.urandom(10_000)
with open("data.bin", "wb") as f:
    f.write(data)

def open_fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))  # includes listdir's own, closed after

def error(exc):
    return (type(exc).__name__, exc.errno, exc.strerror, exc.filename)

async def main():
    assert await ringlet.read_file("data.bin") == data  # the engine exists before the limit is reached
    before = open_fds()
    files = []
    while len(files) <= {LIMIT}:
        try:
            files.append(await ringlet.open("data.bin", "rb"))
        except OSError as exc:
            ours = exc
            break
    try:
        open("data.bin", "rb")
    except OSError as exc:
        builtin = exc
    else:
        raise AssertionError("built-in open() found a descriptor that ringlet.open did not")
    helpers = []
    for call in (lambda: ringlet.read_file("data.bin"), lambda: ringlet.copy_file("data.bin", "copy.bin"),
                 lambda: ringlet.write_file("new.bin", b"x")):
        try:
            await call()
            helpers.append("no error")
        except OSError as exc:
            helpers.append(exc.errno == errno.EMFILE)
    await files.pop().close()
    with open("data.bin", "rb"):  # one freed: one free for built-in open again
        pass
    for f in files:
        await f.close()
    after = open_fds()
    again = await ringlet.read_file("data.bin")
    async with ringlet.open("data.bin", "rb") as f:
        part = await f.pread(100, 50)
    print(ringlet.backend().split()[0].rstrip(":"))
    print(error(ours) == error(builtin), error(ours))
    print(ours.errno == errno.EMFILE, len(before) - 1 + len(files) + 1, helpers)  # the last was closed
    print(after == before, [fd for fd in after if fd not in before])
    print(again == data, part == data[50:150])

asyncio.run(main())
"""


@pytest.mark.timeout(120)
def test_open_past_the_descriptor_limit_is_emfile_and_recovers(run_python: Callable[[str], Any], backend: str) -> None:
    proc = run_python(SCRIPT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name, same, limit, leaks, works = proc.stdout.splitlines()
    assert name == backend
    assert same.startswith("True "), same  # type, errno, strerror, filename: as built-in open()
    assert limit == f"True {LIMIT} [True, True, True]", limit  # every descriptor used by an open file
    assert leaks == "True []", leaks
    assert works == "True True"
