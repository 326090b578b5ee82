"""Smoke test of an installed ringlet: run it with the interpreter of the
environment it was installed into, from a directory outside the checkout.

    VENV/bin/python tools/smoke_installed.py EXPECTED_VERSION [BACKEND_PREFIX]

Checks that ringlet is imported from that environment (not from a source
tree), has the expected version, picks the expected backend (default
"io_uring") and reads back what it wrote. Exits 1 on any mismatch.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile


def fail(message: str) -> None:
    print(f"smoke test FAILED: {message}")
    sys.exit(1)


async def round_trip(path: str, data: bytes) -> tuple[int, bytes]:
    import ringlet

    written = await ringlet.write_file(path, data)
    return written, await ringlet.read_file(path)


def main() -> None:
    expected_version = sys.argv[1]
    expected_backend = sys.argv[2] if len(sys.argv) > 2 else "io_uring"

    import ringlet
    import ringlet._ringlet

    for module in (ringlet, ringlet._ringlet):
        where = os.path.realpath(module.__file__ or "")
        if not where.startswith(os.path.realpath(sys.prefix) + os.sep):
            fail(f"{module.__name__} comes from {where}, not from the environment {sys.prefix}")
    print(f"ringlet {ringlet.__version__} from {os.path.dirname(ringlet.__file__ or '')}")
    if ringlet.__version__ != expected_version:
        fail(f"ringlet.__version__ is {ringlet.__version__}, expected {expected_version}")

    backend = ringlet.backend()
    print(f"ringlet.backend(): {backend}")
    if not backend.startswith(expected_backend):
        fail(f"backend is {backend!r}, expected {expected_backend}")

    data = os.urandom(1 << 20) + b"ringlet"
    with tempfile.TemporaryDirectory() as tmp:
        written, back = asyncio.run(round_trip(os.path.join(tmp, "round-trip.bin"), data))
    if written != len(data) or back != data:
        fail(f"wrote {written} of {len(data)} bytes, read back {len(back)} bytes, equal: {back == data}")
    print(f"write_file + read_file round trip: {len(data)} bytes, identical")


if __name__ == "__main__":
    main()
