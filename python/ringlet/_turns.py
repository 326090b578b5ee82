"""Turns: the calls that use a file's position run one at a time, in call order."""

from __future__ import annotations

import asyncio
import collections
from typing import Deque


class Turns:
    """A lock for one file's position-using calls (read, readline, write,
    seek, tell ...), so that concurrent calls behave as if made one after
    another in call order, as built-in files (which lock) and aiofiles (one
    call at a time) do.

    It is on the hot path: taking a free turn is setting ``busy`` (no future,
    no await); only a call that finds the file busy waits, in a queue::

        if turns.busy:
            await turns.wait()
        else:
            turns.busy = True
        try:
            ...
        finally:
            turns.release()

    A turn is handed to the next waiter directly (busy stays True), so a call
    arriving meanwhile cannot jump the queue."""

    __slots__ = ("busy", "_waiting")

    def __init__(self) -> None:
        self.busy = False
        self._waiting: Deque["asyncio.Future[None]"] = collections.deque()

    async def wait(self) -> None:
        """Wait for the turn; on return it is this caller's (busy is True)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the turn was handed over as the cancel came: hand it on
            else:
                try:
                    self._waiting.remove(waiter)
                except ValueError:  # a release() already passed over it
                    pass
            raise

    async def __aenter__(self) -> None:
        # ``async with turns:`` where two more coroutine calls do not matter
        if self.busy:
            await self.wait()
        else:
            self.busy = True

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """End this turn: hand it to the first waiter, or leave the file free."""
        waiting = self._waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.busy = False
