"""ringlet: real asynchronous file I/O for asyncio, on Linux io_uring.

A call fills a submission in C, the kernel does the waiting, and the
completion is reaped in C, where it resolves the asyncio future you await.
No thread pool, no thread parked on the disk.

    data = await ringlet.read_file(path)
    async with ringlet.open(path, "rb") as f:
        head = await f.read(100)
    async with ringlet.open(path, encoding="utf-8") as f:   # text, lines
        async for line in f: ...
    await ringlet.os.rename(path, other)                # ringlet.os, ringlet.os.path
"""

from . import os
from ._engine import backend, get_engine
from ._binary import AsyncFile
from ._oneshot import copy_file, read_file, write_file
from ._open import open
from ._text import AsyncTextFile
from ._trace import Timeline, trace
from ._view import EngineView, Stats, engine_info, stats

__all__ = ["AsyncFile", "AsyncTextFile", "EngineView", "Stats", "Timeline", "backend", "copy_file", "engine_info", "get_engine",
           "open", "os", "read_file", "stats", "trace", "write_file"]
__version__ = "0.1.0"
