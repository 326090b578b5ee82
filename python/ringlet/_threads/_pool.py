"""The worker pool: a few daemon threads making the system calls that
always finish (regular files, directories, paths)."""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Generic, Protocol, TypeVar

from .. import _contract as contract

_IDLE_SECONDS = 5.0  # a worker with nothing to do for this long exits


class Job(Protocol):
    """What the pool runs: run() in a worker; key is the pool's to set."""

    key: Any

    def run(self) -> None: ...


J = TypeVar("J", bound=Job)


def default_max_workers() -> int:
    """The pool size when none is given: as concurrent.futures' default."""
    return min(32, (os.cpu_count() or 1) + 4)


class WorkerPool(Generic[J]):
    """At most max_workers daemon threads running jobs in order.  Threads are
    started on demand and exit after _IDLE_SECONDS without work, or at
    stop().  Only work that always finishes is given to it.

    Jobs submitted with the same key run one after the other, in the order
    they were submitted (as io_uring's io-wq does with writes to one file):
    the first waits in the queue, the others in its chain."""

    def __init__(self, max_workers: int, name: str = "ringlet-worker") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers
        self._name = name
        self._cv = threading.Condition(threading.Lock())
        self._queue: collections.deque[J] = collections.deque()
        self._chains: dict[Any, collections.deque[J]] = {}  # key -> jobs waiting for the one ahead
        self._threads: set[threading.Thread] = set()
        self._idle = 0  # threads waiting for work
        self._stopping = False
        self._count = 0
        self.busy = 0  # threads running a job right now

    @property
    def size(self) -> int:
        """Threads alive right now."""
        return len(self._threads)

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker."""
        with self._cv:
            return len(self._queue) + sum(len(chain) for chain in self._chains.values())

    def waiting(self) -> list[J]:
        """The jobs not started yet."""
        with self._cv:
            return [*self._queue, *(job for chain in self._chains.values() for job in chain)]

    def threads(self) -> list[threading.Thread]:
        with self._cv:
            return list(self._threads)

    def submit(self, job: J, key: Any = None) -> bool:
        """Queue job; True if it has to wait for a busy worker (overflow)."""
        with self._cv:
            if self._stopping:
                raise RuntimeError(contract.ENGINE_CLOSED)
            job.key = key
            if key is not None:
                chain = self._chains.get(key)
                if chain is not None:  # one with this key is queued or running: after it
                    chain.append(job)
                    return False
                self._chains[key] = collections.deque()
            self._queue.append(job)
            waits = False
            if len(self._queue) > self._idle:
                if len(self._threads) < self.max_workers:
                    self._count += 1
                    thread = threading.Thread(target=self._work, name=f"{self._name}-{self._count}", daemon=True)
                    self._threads.add(thread)
                    thread.start()
                else:
                    waits = True
            self._cv.notify()
            return waits

    def remove(self, job: J) -> bool:
        """Take a job that has not started out of the queue; False if it has."""
        with self._cv:
            chain = self._chains.get(job.key) if job.key is not None else None
            if chain is not None and job in chain:
                chain.remove(job)
                return True
            try:
                self._queue.remove(job)
            except ValueError:
                return False
            if chain is not None:
                self._next_in_chain(job.key, chain)
            return True

    def _next_in_chain(self, key: Any, chain: collections.deque[J]) -> None:
        """The job ahead with this key is over: queue the next one, first in line."""
        if chain:
            self._queue.appendleft(chain.popleft())
            self._cv.notify()
        else:
            del self._chains[key]

    def _work(self) -> None:
        me = threading.current_thread()
        cv = self._cv
        while True:
            with cv:
                while not self._queue and not self._stopping:
                    self._idle += 1
                    try:
                        woken = cv.wait(_IDLE_SECONDS)
                    finally:
                        self._idle -= 1
                    if not woken and not self._queue:
                        self._threads.discard(me)
                        return
                if not self._queue:  # stopping
                    self._threads.discard(me)
                    cv.notify_all()
                    return
                job = self._queue.popleft()
                self.busy += 1
            try:
                job.run()
            finally:
                with cv:
                    self.busy -= 1
                    chain = self._chains.get(job.key) if job.key is not None else None
                    if chain is not None:
                        self._next_in_chain(job.key, chain)
                    if self._stopping:
                        cv.notify_all()

    def stop(self, timeout: float) -> tuple[list[J], int]:
        """Refuse new work, take back what has not started, wait up to
        timeout for the running jobs; return (jobs not started, jobs still running)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cv:
            self._stopping = True
            dropped = list(self._queue)
            for chain in self._chains.values():
                dropped.extend(chain)
            self._queue.clear()
            self._chains.clear()
            self._cv.notify_all()
            while self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            return dropped, self.busy
