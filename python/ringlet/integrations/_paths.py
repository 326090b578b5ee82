"""Path lookups through the ring that the framework integrations share: a
served folder's file found by the kernel (an O_PATH open), and when the
kernel finds nothing, whether a symbolic link lies on the way."""

from __future__ import annotations

import os
import stat
from typing import Optional, Tuple

from .. import os as ringlet_os
from .._engine import get_engine

# Where the kernel names an open descriptor's file by its real path.
PROC_FD_LINKS = os.path.isdir("/proc/self/fd")


async def look_up(path: "str | os.PathLike[str]", real: bool = False
                  ) -> Optional[Tuple[str, os.stat_result]]:
    """(path as given, or with real=True its real path; os.stat(path)), or
    None where nothing is found (as a stat's FileNotFoundError and
    NotADirectoryError); other errors are raised.

    path is opened with O_PATH through the ring, symlinks followed: a cached
    path's open completes at once, and nothing is opened for reading,
    whatever path names.  Its real path is the descriptor's link in /proc and
    its stat is fstat(2), neither of which waits for a device; an O_PATH
    descriptor has no open file to flush or release, so it is closed here."""
    try:
        # O_NONBLOCK changes nothing with O_PATH; it keeps the thread backend from setting it.
        fd = await get_engine()._open(os.fsencode(path), os.O_PATH | os.O_NONBLOCK, 0, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return (os.readlink(f"/proc/self/fd/{fd}") if real else os.fspath(path)), os.fstat(fd)
    finally:
        os.close(fd)


async def symlink_on_the_way(real_directory: str, path: str) -> bool:
    """After the kernel found nothing at real_directory/path (path as
    get_path normalises it: no "." and ".." only in front): whether a
    symbolic link lies on the way there, before the first name that is
    missing or not a directory.  The stock lookup reads a link's target as
    text (os.path.realpath): to it "page.txt/", or "missing/../page.txt",
    names page.txt, where the kernel finds nothing (ENOTDIR, ENOENT).  With
    no link on the way both find nothing.  Each name is looked at with
    lstat through the ring; an error other than "nothing there" says yes:
    the stock lookup raises it, as it does."""
    here = real_directory
    for name in path.split(os.sep):
        here = os.path.dirname(here) if name == ".." else os.path.join(here, name)
        try:
            mode = (await ringlet_os.lstat(here)).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True
        if stat.S_ISLNK(mode):
            return True
        if not stat.S_ISDIR(mode):
            return False
    return False
