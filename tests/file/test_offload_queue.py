"""Large reads at an offset made once a loop turn's inline budget is spent go
to io_uring's workers, at most two per CPU at once; the others wait in the
engine's queue in call order (csrc/py/op_io.c).  (AsyncFile.pread of a cached
file waits for a turn of the loop instead, within a limit: see the last
tests.)  A stream's read never goes there.  Checked with counts: how many the
kernel holds, what a cancelled waiting read leaves behind (nothing: it never
reaches the kernel, holds no op), and that every read still gets its bytes.
The queue is the ring engine's: io_uring only."""

import asyncio
import os
import time
import types

import pytest

from conftest import wait_until

LARGE = 64 * 1024  # RL_OFFLOAD_MIN: reads from this size on may be offloaded
PLACES = 2 * os.sysconf("SC_NPROCESSORS_ONLN")


@pytest.fixture
def live(ringlet, require_io_uring):
    from ringlet import _ringlet

    return lambda: _ringlet._live()["ops"]


async def _spend_the_budget(f):
    """An inline completion starts this turn's budget (1 ms; 2 ms when small
    reads spend it); sleeping 3 ms without yielding spends it, so the large
    reads made next in the same turn are offloaded."""
    assert len(await f.pread(4096, 0)) == 4096  # the loop has not turned since: the budget runs
    time.sleep(0.003)


def test_offloaded_reads_beyond_the_places_wait_in_the_engine(ringlet, run, live, make_file):
    path, data = make_file(8 * 1024 * 1024)
    count = PLACES + 12

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        try:
            async with ringlet.open(path, "rb") as f:
                await asyncio.sleep(0)
                before = engine.stats()["in_flight"]
                await _spend_the_budget(f)
                reads = [engine.read(fd, LARGE, i * LARGE) for i in range(count)]  # made now, in this turn
                held_by_kernel = engine.stats()["in_flight"] - before
                results = await asyncio.gather(*reads)
        finally:
            os.close(fd)
        return held_by_kernel, results

    held, results = run(main())
    assert held == PLACES
    assert results == [data[i * LARGE:(i + 1) * LARGE] for i in range(count)]


def test_reads_fill_only_bytes_nobody_holds(ringlet, run, make_file, require_io_uring):
    """The bytes the kernel's workers and the non-blocking attempt fill are
    the engine's spares once nobody holds them (engine_read_bytes): results
    kept from earlier batches never change, and a read cut short by the end
    of the file gets bytes of its own length."""
    size = 1 << 20
    blocks = 7  # the last one half a block
    path, data = make_file((blocks - 1) * size + size // 2)

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        kept, offloaded, short = [], 0, []
        try:
            async with ringlet.open(path, "rb") as f:
                for batch in range(4):
                    await asyncio.sleep(0)
                    short.append(await engine.read(fd, size, (blocks - 1) * size))  # at once: budget left
                    await _spend_the_budget(f)
                    before = engine.stats()["in_flight"]
                    starts = [((batch + i) % blocks) * size for i in range(blocks)]
                    reads = [engine.read(fd, size, start) for start in starts]  # the workers'
                    offloaded += engine.stats()["in_flight"] - before
                    got = await asyncio.gather(*reads)
                    kept += list(zip(starts, got))[batch % 2::2]  # every other one kept, the rest dropped
        finally:
            os.close(fd)
        return kept, offloaded, short

    kept, offloaded, short = run(main())
    assert offloaded == 4 * PLACES
    assert len(kept) == 14 and all(got == data[start:start + size] for start, got in kept)
    assert short == [data[(blocks - 1) * size:]] * 4


def test_a_cancelled_waiting_read_leaves_the_queue_and_reaches_no_kernel(ringlet, run, live, make_file):
    """The first PLACES offloaded reads go to the kernel's workers, the rest
    wait in the engine.  Cancelling waiting reads drops them at once (their
    ops go; they are never submitted), and the others get their bytes.  The
    cancels run in the loop iteration that submits the first reads, before
    any completion can be reaped: no place frees up before them.  The file
    is out of the page cache, so the loop's thread serves none of the
    waiting reads itself either (engine_offload_serve)."""
    waiting_cancelled, waiting_kept = 4, 3
    count = PLACES + waiting_cancelled + waiting_kept
    path, data = make_file(count * LARGE)
    small, _ = make_file(4096)

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            async with ringlet.open(small, "rb") as f:
                await asyncio.sleep(0)
                ops_before = live()
                in_flight_before = engine.stats()["in_flight"]
                await _spend_the_budget(f)
                submitted_before = engine.stats()["submitted"]
                reads = [engine.read(fd, LARGE, i * LARGE) for i in range(count)]
                assert engine.stats()["in_flight"] - in_flight_before == PLACES
                cancelled = reads[PLACES:PLACES + waiting_cancelled]
                for r in cancelled:
                    r.cancel()
                await asyncio.sleep(0)  # the flush, then the futures' done callbacks
                ops_after_cancel = live() - ops_before
                in_flight_after_cancel = engine.stats()["in_flight"] - in_flight_before
                kept = [(i, r) for i, r in enumerate(reads) if r not in cancelled]
                got = await asyncio.gather(*(r for _, r in kept))
                submitted = engine.stats()["submitted"] - submitted_before
        finally:
            os.close(fd)
        await wait_until(lambda: engine.stats()["in_flight"] == in_flight_before, timeout=5)
        return (ops_after_cancel, in_flight_after_cancel, [r.cancelled() for r in cancelled], submitted,
                [(i, g) for (i, _), g in zip(kept, got)], live() - ops_before)

    ops_after_cancel, in_flight_after_cancel, cancelled, submitted, got, ops_left = run(main())
    assert cancelled == [True] * waiting_cancelled
    # the cancelled reads are gone; the running and the kept waiting ones remain
    assert ops_after_cancel == PLACES + waiting_kept, (in_flight_after_cancel, submitted, ops_left)
    assert in_flight_after_cancel == PLACES
    assert submitted == PLACES + waiting_kept  # each read the kernel (or the page cache) served, once
    assert got == [(i, data[i * LARGE:(i + 1) * LARGE]) for i, _ in got]
    assert len(got) == PLACES + waiting_kept
    assert ops_left == 0


def test_a_streams_large_read_goes_to_the_kernel_at_once_and_holds_up_no_close(ringlet, run, make_file, fifo):
    """Once the budget is spent, large reads of a FIFO are not offloaded: all
    of them are with the kernel at once (none waits in the engine's queue,
    none is left to a worker that would look its number up later), and a
    close of the FIFO does not wait for their data (they hold no number)."""
    small, _ = make_file(4096)
    count = PLACES + 3

    async def main():
        engine = ringlet.get_engine()
        rfd = os.open(fifo, os.O_RDWR)  # no data until someone writes
        async with ringlet.open(small, "rb") as f:
            await asyncio.sleep(0)
            in_flight_before = engine.stats()["in_flight"]
            await _spend_the_budget(f)
            reads = [engine.read(rfd, LARGE) for _ in range(count)]
            in_flight = engine.stats()["in_flight"] - in_flight_before
            await engine.close(rfd)
            closed = [r.done() for r in reads]
            for r in reads:
                r.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            await wait_until(lambda: engine.stats()["in_flight"] == in_flight_before, timeout=5)
        return in_flight, closed

    in_flight, pending_at_close = run(main())
    assert in_flight == count
    assert pending_at_close == [False] * count  # closed while every read still waited


def test_shutdown_drops_the_waiting_reads(ringlet, run, live, make_file):
    path, _ = make_file((PLACES + 5) * LARGE)

    async def main():
        engine = ringlet.get_engine()
        fd = os.open(path, os.O_RDONLY)
        try:
            async with ringlet.open(path, "rb") as f:
                await asyncio.sleep(0)
                ops_before = live()
                await _spend_the_budget(f)
                reads = [engine.read(fd, LARGE, i * LARGE) for i in range(PLACES + 5)]
                left = engine.shutdown(timeout=5.0)
            done = [r.done() for r in reads]
            del reads  # each future holds its op as a done callback
            return left, done, live() - ops_before
        finally:
            os.close(fd)

    left, done, ops_left = run(main())
    assert left == 0  # the running reads came back from the kernel, the waiting ones never got there
    assert done == [False] * len(done)  # shutdown resolves no future, as for reads in flight
    assert ops_left == 0


def test_small_reads_once_the_budget_is_spent_read_when_resumed(ringlet, run, live, make_file):
    """Once the turn's budget is spent, a pread under RL_OFFLOAD_MIN yields
    first and reads when its task is resumed (its bytes are not held across
    the turn); one never resumed never reads.  Counted, not clocked."""
    path, data = make_file(1 << 20)
    with open(path, "rb") as f:
        f.read()  # in the page cache

    async def main():
        engine = ringlet.get_engine()
        async with ringlet.open(path, "rb") as f:
            await _spend_the_budget(f)
            # Reads made (not awaited) in this turn are read at once until the
            # clock is next read (every few small reads) and finds the budget spent.
            made, n0 = [], engine.stats()["completed_nowait"]
            while len(made) < 100 and engine.stats()["completed_nowait"] - n0 == len(made):
                made.append(f.pread(4096, 4096 * len(made)))
            before = engine.stats()["completed_nowait"]
            later = [f.pread(4096, 4096 * i) for i in range(1, 5)]
            read_at_call = engine.stats()["completed_nowait"] - before
            never = f.pread(4096, 0)
            never.close()
            got = await asyncio.gather(*made, *later)
            read = engine.stats()["completed_nowait"] - before
        return len(made), read_at_call, got, read

    n, read_at_call, got, read = run(main())
    assert 1 < n < 100  # the last of them was the first left for later
    assert read_at_call == 0 and read == 1 + 4
    assert got == [data[4096 * i:4096 * (i + 1)] for i in range(n)] + [data[4096 * i:4096 * (i + 1)] for i in range(1, 5)]


MIB = 1 << 20
TURN_BYTES = 16 * MIB  # RL_DEFER_BYTES_MAX: bytes of 64-256 KiB cached preads read inline in one turn


def test_large_preads_once_the_budget_is_spent_read_when_resumed(ringlet, run, make_file, require_io_uring):
    """64 KiB preads of a cached file made once the turn's budget is spent are
    read inline when their tasks are resumed, TURN_BYTES of them a turn; those
    beyond go to the kernel's workers.  Counted, not clocked."""
    beyond = PLACES + 2
    count = TURN_BYTES // LARGE + beyond
    path, data = make_file(count * LARGE)
    with open(path, "rb") as f:
        f.read()  # in the page cache

    async def main():
        engine = ringlet.get_engine()
        async with ringlet.open(path, "rb") as f:
            await asyncio.sleep(0)
            await _spend_the_budget(f)
            s0 = engine.stats()
            reads = [f.pread(LARGE, i * LARGE) for i in range(count)]
            s1 = engine.stats()
            got = await asyncio.gather(*reads)
            s2 = engine.stats()
        return s0, s1, s2, got

    s0, s1, s2, got = run(main())
    assert s1["completed_nowait"] == s0["completed_nowait"]  # none read at the call
    assert s1["submitted"] - s0["submitted"] == PLACES  # those beyond: the workers' (the rest queued)
    assert s2["completed"] - s1["completed"] == count
    assert s2["deferred"] - s1["deferred"] == beyond  # ... delivered through their futures
    assert got == [data[i * LARGE:(i + 1) * LARGE] for i in range(count)]



@types.coroutine
def _counting(awaitable, yields):
    """Awaits awaitable, appending to yields what it yields to the loop (each a turn it waits)."""
    it = awaitable.__await__()
    value = None
    while True:
        try:
            got = it.send(value)
        except StopIteration as stop:
            return stop.value
        yields.append(got)
        value = yield got


def _cached_file(make_file, size):
    path, data = make_file(size)
    with open(path, "rb") as f:
        f.read()  # in the page cache
    return path, data


async def _nothing_else_ready():
    """Two turns of the loop: the open's completion woke the engine's reader
    callback, which runs in the first; after the second nothing else is ready."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_a_lone_task_reads_1mib_at_the_call_and_yields_only_once_the_budget_is_spent(ringlet, run, make_file,
                                                                                     require_io_uring):
    """With nothing else ready, a cached 1 MiB pread is read at the call
    (never handed to the workers: the turn's budget was not found spent by a
    call) and its task does not yield after each read, only once the turn's
    budget (1 ms) is spent.  Counted: eight reads, each read at its call, and
    fewer than eight yields.  On a loop whose ready queue ringlet cannot see
    (uvloop), every such read yields first and reads when resumed, once each."""
    count = 8
    path, data = _cached_file(make_file, count * MIB)

    async def main():
        engine = ringlet.get_engine()
        async with ringlet.open(path, "rb") as f:
            await _nothing_else_ready()
            yields, read_at_call, got = [], [], []
            for i in range(count):
                n0 = engine.stats()["completed_nowait"]
                pending = f.pread(MIB, i * MIB)
                read_at_call.append(engine.stats()["completed_nowait"] - n0)
                got.append(await _counting(pending, yields))
            sees_ready = hasattr(asyncio.get_running_loop(), "_ready")  # asyncio's loops
        return sees_ready, read_at_call, len(yields), got

    sees_ready, read_at_call, yields, got = run(main())
    if sees_ready:
        assert read_at_call == [1] * count
        assert yields < count  # one a read before
    else:
        assert read_at_call == [0] * count
        assert yields == count
    assert got == [data[i * MIB:(i + 1) * MIB] for i in range(count)]


async def _spend_the_budget_in_turns(f, turns):
    """_spend_the_budget in each of turns turns of the loop, from the next (0: a bare turn)."""
    if turns == 0:
        await asyncio.sleep(0)
    for turn in range(turns):
        if turn:
            await asyncio.sleep(0)
        await _spend_the_budget(f)


@pytest.mark.parametrize("turns_spent", [0, 1, 2], ids=["budget left", "budget spent once", "budget spent twice"])
def test_a_1mib_pread_with_another_task_ready_yields_first_and_reads_when_resumed(ringlet, run, make_file,
                                                                                 require_io_uring, turns_spent):
    """With another task ready, a cached 1 MiB pread yields first and reads
    when its task is resumed (on the loop's thread, without the ring): its
    bytes are not held across the turn.  If that other task spent the new
    turn's budget before it was resumed, it waits one more turn (a yield) and
    reads then; spent again, the kernel's workers read it (delivered through
    a future: one more yield), so that no task waits turn after turn."""
    path, data = _cached_file(make_file, 2 * MIB)

    async def main():
        engine = ringlet.get_engine()
        async with ringlet.open(path, "rb") as f:
            await _nothing_else_ready()
            assert len(await f.pread(4096, 0)) == 4096  # inline: this turn's budget runs (its tick is queued)
            # ready to run, and run in each next turn before the pread's task is resumed
            other = asyncio.ensure_future(_spend_the_budget_in_turns(f, turns_spent))
            s0 = engine.stats()
            pending = f.pread(MIB, MIB)
            at_call = engine.stats()["completed_nowait"] - s0["completed_nowait"]
            yields = []
            got = await _counting(pending, yields)
            s1 = engine.stats()
            await other
        return at_call, len(yields), got, s1["completed_nowait"] - s0["completed_nowait"], s1["deferred"] - s0["deferred"]

    at_call, yields, got, nowait, deferred = run(main())
    # nowait counts the other task's 4 KiB reads (one a turn it spends) and the 1 MiB read when inline
    assert (at_call, yields, nowait, deferred) == {0: (0, 1, 1, 0), 1: (0, 2, 2, 0), 2: (0, 3, 2, 1)}[turns_spent]
    assert got == data[MIB:]


def _read_at_call(engine, f, count=100):
    """Small preads made (not awaited) in this turn until one is left for
    later: how many were read at once (count: none was)."""
    made, n0 = [], engine.stats()["completed_nowait"]
    while len(made) < count and engine.stats()["completed_nowait"] - n0 == len(made):
        made.append(f.pread(4096, 4096 * len(made)))
    return made


# loop.c: a spent budget of small reads (RL_SMALL_BUDGET_NS, 2 ms) is renewed
# only while the turn is no older than RL_SMALL_TURN_MAX_NS (8 ms) less one budget.
LAST_RENEWAL_NS = 6_000_000
ATTEMPTS = 20


def test_small_reads_go_on_past_the_budget_while_nothing_else_waits(ringlet, run, live, make_file):
    """A turn of small reads whose budget is spent goes on (up to 8 ms) while
    only the engine's own parked tasks wait; another handle in the ready queue,
    a timer due or a turn past 8 ms ends it (on asyncio's own loops: on
    another kind the budget ends the turn as before).  The count of parked tasks is
    right after 64 readers, some cancelled while parked (were it too high,
    the waiting handle would not be seen).  Counted, not clocked: the clock
    only tells which "alone" turns to repeat, those the ceiling may have ended."""
    path, data = make_file(1 << 20)
    with open(path, "rb") as f:
        f.read()  # in the page cache

    async def quiet():  # the open's completion delivered, the engine's _tick run
        for _ in range(3):
            await asyncio.sleep(0)

    async def main():
        engine = ringlet.get_engine()
        loop = asyncio.get_running_loop()
        counts = {}
        async with ringlet.open(path, "rb") as f:

            async def reader(i):
                for k in range(400):
                    assert await f.pread(4096, 4096 * ((i + k) % 256)) == data[4096 * ((i + k) % 256):][:4096]

            tasks = [asyncio.ensure_future(reader(i)) for i in range(64)]
            for _ in range(2):  # the readers parked behind one another
                await asyncio.sleep(0)
            for t in tasks[::3]:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for case in ("alone", "handle", "timer", "long turn"):
                # "alone" is repeated while the turn outlived the last renewal
                # (a preempted sleep or read on a loaded machine): then the
                # 8 ms ceiling, not what waits, may have ended it.
                for _ in range(ATTEMPTS if case == "alone" else 1):
                    await quiet()
                    start = time.monotonic_ns()
                    await _spend_the_budget(f)
                    if case == "handle":
                        loop.call_soon(lambda: None)
                    elif case == "timer":
                        timer = loop.call_later(0.001, lambda: None)
                    elif case == "long turn":
                        time.sleep(0.008)
                    made = _read_at_call(engine, f)
                    turn_ns = time.monotonic_ns() - start
                    counts[case] = len(made)
                    got = await asyncio.gather(*made)
                    assert got == [data[4096 * i:4096 * (i + 1)] for i in range(len(made))]
                    if case != "alone" or turn_ns <= LAST_RENEWAL_NS:
                        break
                else:
                    pytest.fail(f"every one of {ATTEMPTS} turns outlived {LAST_RENEWAL_NS} ns (machine too loaded)")
            timer.cancel()
        stock = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        return counts, sum(t.cancelled() for t in tasks), stock

    counts, cancelled, stock = run(main())
    if stock:
        assert counts["alone"] == 100
    else:  # uvloop: what waits cannot be looked at, so the turn ends at its budget
        assert 1 < counts["alone"] < 100
    assert 1 < counts["handle"] < 100 and 1 < counts["timer"] < 100 and 1 < counts["long turn"] < 100
    assert cancelled > 0  # some were cancelled while parked (the others finished first)


async def _readers_offloaded(f, reader, count):
    """Tasks running reader(i) for i in range(count), started as another task
    spends the budget in three turns in a row: their 1 MiB preads wait a
    turn, then one more, then are offloaded.  Returned once that task is done."""
    spender = asyncio.ensure_future(_spend_the_budget_in_turns(f, 3))
    readers = [asyncio.ensure_future(reader(i)) for i in range(count)]
    await spender
    return readers


def test_the_loop_wakes_each_waiting_read_it_serves_before_the_next(ringlet, run, make_file, require_io_uring):
    """The loop's thread serves the waiting reads the page cache holds
    (engine_offload_serve) one at a time: each read's task runs before the
    next read, so that a task that drops its bytes leaves the same spare,
    still in the core's cache, to the next (served in a row, each into a
    spare of its own, 1 MiB reads cost a third more).  Each task notes how
    many reads the loop had served when it ran.  Counted, not clocked: a run
    in which the kernel's workers took some of the waiting reads (a place
    came free while the loop's thread was preempted) is repeated."""
    waiting = 6
    count = PLACES + waiting
    path, data = _cached_file(make_file, count * MIB)

    async def attempt(f, engine):
        seen = []

        async def reader(i):
            got = await f.pread(MIB, i * MIB)
            seen.append((i, engine.stats()["completed_nowait"]))
            return got

        readers = await _readers_offloaded(f, reader, count)
        before = engine.stats()["completed_nowait"]
        got = await asyncio.gather(*readers)
        assert got == [data[i * MIB:(i + 1) * MIB] for i in range(count)]
        return engine.stats()["completed_nowait"] - before, [(i, n - before) for i, n in seen]

    async def main():
        engine = ringlet.get_engine()
        async with ringlet.open(path, "rb") as f:
            for _ in range(ATTEMPTS):
                await asyncio.sleep(0)
                served, seen = await attempt(f, engine)
                if served == waiting:
                    return seen
        pytest.fail(f"in every one of {ATTEMPTS} runs the workers took some of the waiting reads (machine too loaded)")

    seen = run(main())
    # the first PLACES went to the workers (submitted after the loop's
    # share); the waiting ones, in queue order, each with its task run at once
    assert seen[:waiting] == [(PLACES + k, k + 1) for k in range(waiting)]
    assert sorted(i for i, _ in seen[waiting:]) == list(range(PLACES))


def test_an_interrupt_from_a_task_the_loop_woke_leaves_the_loop_and_loses_no_read(ringlet, make_file,
                                                                                   require_io_uring):
    """A KeyboardInterrupt raised by a task woken as the loop's thread serves
    the waiting reads leaves run_until_complete (as from any Handle); running
    the loop again, every other read gets its bytes, none lost or read twice."""
    from conftest import LOOP_FACTORY

    waiting = 6
    count = PLACES + waiting
    path, data = _cached_file(make_file, count * MIB)
    loop = LOOP_FACTORY() if LOOP_FACTORY else asyncio.new_event_loop()
    resumed, readers = [], []

    async def reader(f, i):
        got = await f.pread(MIB, i * MIB)
        resumed.append(i)
        if i == PLACES:  # the first waiting one
            raise KeyboardInterrupt
        return got

    async def main():
        async with ringlet.open(path, "rb") as f:
            readers.extend(await _readers_offloaded(f, lambda i: reader(f, i), count))
            return await asyncio.gather(*(r for i, r in enumerate(readers) if i != PLACES))

    try:
        task = loop.create_task(main())
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(task)
        got = loop.run_until_complete(task)
        assert got == [data[i * MIB:(i + 1) * MIB] for i in range(count) if i != PLACES]
        assert isinstance(readers[PLACES].exception(), KeyboardInterrupt)
        assert sorted(resumed) == list(range(count))
    finally:
        loop.close()
