"""Which io_uring opcodes each Linux release has, for saying what an older
kernel lacks and for emulating one in tests.

Opcodes are numbered in the order they were added (include/uapi/linux/
io_uring.h appends each new one just before IORING_OP_LAST), so a release
has exactly the opcodes below its IORING_OP_LAST.  The counts, from the
kernel's history:

- 5.6:  30, through IORING_OP_EPOLL_CTL (io_uring_enter(2): OPENAT, CLOSE,
  STATX, READ, WRITE, EPOLL_CTL "Available since 5.6"; SPLICE is 5.7).
- 5.11: 37, through UNLINKAT (RENAMEAT: commit 80a261fd0032, UNLINKAT
  after it, both "Available since 5.11").
- 5.15: 40, through LINKAT (merge b91db6a0b52e, "for-5.15/io_uring-vfs":
  MKDIRAT, SYMLINKAT, LINKAT; MSG_RING is 5.18).
- 6.1:  49, through SENDMSG_ZC (commit 493108d95f14, 6.1 merge window;
  READ_MULTISHOT is 6.7).
- 6.9:  56, through FTRUNCATE (io_uring_prep_ftruncate(3), liburing 2.6).

Tests emulate these releases (tests/conftest.py, RINGLET_TEST_KERNEL) with
``ringlet._ringlet._restrict_opcodes``; ``engine_info()`` uses
``introduced_in`` to say since when a missing opcode exists.
"""

from __future__ import annotations

from typing import Callable, Iterable

from ._contract import Opcode

__all__ = ["KERNEL_OPCODE_COUNTS", "EMULATED_KERNELS", "opcodes_of", "introduced_in", "lacking", "describe"]

# Linux release -> how many IORING_OP_* it has (its IORING_OP_LAST), oldest first.
KERNEL_OPCODE_COUNTS: dict[str, int] = {"5.6": 30, "5.11": 37, "5.15": 40, "6.1": 49, "6.9": 56}

# The releases the test suite emulates: each lacks some opcode ringlet uses.
EMULATED_KERNELS = ("5.6", "5.11", "5.15", "6.1")


def opcodes_of(kernel: str) -> frozenset[int]:
    """The IORING_OP_* numbers Linux ``kernel`` (a key of KERNEL_OPCODE_COUNTS) has."""
    try:
        count = KERNEL_OPCODE_COUNTS[kernel]
    except KeyError:
        raise ValueError(f"no opcode table for Linux {kernel!r}; known: {', '.join(KERNEL_OPCODE_COUNTS)}") from None
    return frozenset(range(count))


def introduced_in(opcode: Opcode) -> str:
    """The first release in KERNEL_OPCODE_COUNTS that has ``opcode`` (e.g. '6.9')."""
    for kernel, count in KERNEL_OPCODE_COUNTS.items():
        if opcode < count:
            return kernel
    raise ValueError(f"IORING_OP_{opcode.name} is newer than every release in KERNEL_OPCODE_COUNTS")


def lacking(has: Callable[[int], bool]) -> list[Opcode]:
    """The opcodes ringlet uses for which ``has`` (e.g. ``engine.supports``) says no."""
    return [op for op in Opcode if not has(op)]


def describe(opcodes: Iterable[Opcode]) -> str:
    """'IORING_OP_FTRUNCATE (Linux 6.9+), ...': what is missing, and since when it exists."""
    return ", ".join(f"IORING_OP_{op.name} (Linux {introduced_in(op)}+)" for op in opcodes)
