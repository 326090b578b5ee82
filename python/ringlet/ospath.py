"""ringlet.os.path (also ringlet.ospath, as aiofiles.ospath): coroutine
versions of the os.path functions that ask the file system.

They are built on ringlet.os.stat and ringlet.os.lstat, so they go through
io_uring statx where the kernel has it, and give the results and errors of
the os.path functions (exists() is False for a broken link or a path with a
NUL byte; getsize() raises FileNotFoundError; and so on).
"""

from __future__ import annotations

import asyncio
import os
import stat as _stat
from typing import Any, Union

from .os import _in_thread, lstat, stat

__all__ = [
    "abspath", "exists", "getatime", "getctime", "getmtime", "getsize", "isdir", "isfile", "islink",
    "ismount", "lexists", "samefile", "sameopenfile",
]

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


async def _stat_or_none(path: Any, follow_symlinks: bool = True) -> Any:
    """stat(path), or None where os.path would answer False (OSError, ValueError)."""
    try:
        return await (stat(path) if follow_symlinks else lstat(path))
    except (OSError, ValueError):
        return None


async def exists(path: Union[PathArg, int]) -> bool:
    """os.path.exists(): True if path (or descriptor) names an existing file;
    False for a broken symbolic link."""
    return await _stat_or_none(path) is not None


async def lexists(path: PathArg) -> bool:
    """os.path.lexists(): True for a broken symbolic link too."""
    return await _stat_or_none(path, follow_symlinks=False) is not None


async def _mode_is(path: Any, test: Any, follow_symlinks: bool = True) -> bool:
    st = await _stat_or_none(path, follow_symlinks)
    return st is not None and test(st.st_mode)


async def isfile(path: Union[PathArg, int]) -> bool:
    """os.path.isfile(): True for a regular file (following symbolic links)."""
    return await _mode_is(path, _stat.S_ISREG)


async def isdir(path: Union[PathArg, int]) -> bool:
    """os.path.isdir(): True for a directory (following symbolic links)."""
    return await _mode_is(path, _stat.S_ISDIR)


async def islink(path: PathArg) -> bool:
    """os.path.islink(): True for a symbolic link."""
    return await _mode_is(path, _stat.S_ISLNK, follow_symlinks=False)


async def getsize(path: Union[PathArg, int]) -> int:
    """os.path.getsize(): the size in bytes; OSError if path does not exist."""
    return (await stat(path)).st_size


async def getmtime(path: Union[PathArg, int]) -> float:
    """os.path.getmtime(): the last modification time, in seconds since the epoch."""
    return (await stat(path)).st_mtime


async def getatime(path: Union[PathArg, int]) -> float:
    """os.path.getatime(): the last access time, in seconds since the epoch."""
    return (await stat(path)).st_atime


async def getctime(path: Union[PathArg, int]) -> float:
    """os.path.getctime(): the last metadata change time, in seconds since the epoch."""
    return (await stat(path)).st_ctime


async def samefile(path1: Union[PathArg, int], path2: Union[PathArg, int]) -> bool:
    """os.path.samefile(): True if both name the same file (device and inode)."""
    s1, s2 = await asyncio.gather(stat(path1), stat(path2))
    return os.path.samestat(s1, s2)


async def sameopenfile(fd1: int, fd2: int) -> bool:
    """os.path.sameopenfile(): True if both descriptors refer to the same file."""
    s1, s2 = await asyncio.gather(stat(fd1), stat(fd2))
    return os.path.samestat(s1, s2)


async def ismount(path: PathArg) -> bool:
    """os.path.ismount() in the executor (it compares a path with its parent)."""
    return await _in_thread(os.path.ismount, path)


async def abspath(path: PathArg) -> Union[str, bytes]:
    """os.path.abspath() (no disk access: only the working directory)."""
    return os.path.abspath(path)
